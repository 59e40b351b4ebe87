"""`goldloop score`: an LLM's answers on an export's split, scored with the loop's own metrics.

Predictions are JSON Lines ``{"id", "output"}``, ``output`` as the assistant writes it: a JSON answer object,
possibly inside text or a code fence. Parsing is lenient and never stops at a bad line; what could not be
used is counted. Each answer entity is aligned to the document by its text (the first occurrence not yet
taken by an earlier entity of the same answer); an entity whose text is not in the document counts as a
false positive and as ``entities_not_found``. The gold answers go through the same alignment, so a gold
answer file scored against itself gives 1.0 everywhere; ``gold_entities_realigned`` counts the gold entities
that alignment places on another occurrence than the annotated one (an answer by text cannot say which).
Metrics come from ml_backend.evaluation: strict entity P/R/F1 per label and micro per span control; per
Choices control accuracy, macro-F1 and per-label P/R/F1.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ml_backend.evaluation import evaluate_choices, evaluate_spans
from ml_backend.schema import Control, TaskSpec

from .errors import ScoreError
from .export.prompts import span_keys

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
COUNT_KEYS = ("examples", "predictions", "missing", "duplicates", "unknown_ids", "unparseable_lines",
              "unparseable_outputs", "entities_not_found", "malformed_entities", "invalid_choices",
              "gold_entities_realigned")


def parse_answer(output: Any) -> dict | None:
    """The answer object in an LLM output (a dict, or JSON possibly inside a code fence or text); None if none."""
    if isinstance(output, Mapping):
        return dict(output)
    if not isinstance(output, str):
        return None
    candidates = [m.group(1) for m in _FENCE.finditer(output)] + [output]
    decoder = json.JSONDecoder()
    for text in candidates:
        pos = text.find("{")
        while pos >= 0:
            try:
                obj, _ = decoder.raw_decode(text, pos)
            except ValueError:
                pos = text.find("{", pos + 1)
                continue
            if isinstance(obj, dict):
                return obj
            pos = text.find("{", pos + 1)
    return None


def align_entities(text: str, entities: Iterable[Any], counts: Counter) -> list[tuple[int, int, str]]:
    """Character spans of an answer's entities: each at the first occurrence of its text not taken yet.

    A malformed entity is counted and skipped; one whose text is not in ``text`` becomes a span at a negative
    offset that matches nothing (a false positive), and is counted.
    """
    taken: set[tuple[int, int]] = set()
    out: list[tuple[int, int, str]] = []
    for ent in entities if isinstance(entities, list) else ():
        if not isinstance(ent, Mapping) or not isinstance(ent.get("text"), str) or not isinstance(ent.get("label"), str) \
                or not ent["text"]:
            counts["malformed_entities"] += 1
            continue
        piece, label = ent["text"], ent["label"]
        pos = text.find(piece)
        while pos >= 0 and (pos, pos + len(piece)) in taken:
            pos = text.find(piece, pos + 1)
        if pos < 0:
            counts["entities_not_found"] += 1
            missing = -1 - len(out)
            out.append((missing, missing, label))
            continue
        taken.add((pos, pos + len(piece)))
        out.append((pos, pos + len(piece), label))
    return out


def load_export(export_dir: Path, split: str) -> tuple[TaskSpec, list[dict]]:
    """The labeling controls (from manifest.json) and the gold examples of one split (gold/<split>.jsonl)."""
    export_dir = Path(export_dir)
    try:
        manifest = json.loads((export_dir / "manifest.json").read_text(encoding="utf-8"))
        controls = tuple(
            Control(c["name"], c["to_name"], c["kind"], c["type"], tuple(c["labels"]), c["value_field"], bool(c["multi"]))
            for c in manifest["controls"]
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ScoreError(f"{export_dir} is not a goldloop export version (manifest.json: {exc})") from None
    gold_path = export_dir / "gold" / f"{split}.jsonl"
    if not gold_path.is_file():
        raise ScoreError(
            f"{gold_path} does not exist: export with --format chat, instruction or preference to score an LLM"
        )
    with open(gold_path, encoding="utf-8") as f:
        gold = [json.loads(line) for line in f if line.strip()]
    return TaskSpec(controls, manifest.get("label_config_hash", "")), gold


def read_predictions(path: Path, counts: Counter) -> dict[str, Any]:
    """``output`` by id (as a string) of a predictions file; bad lines and repeated ids counted, never fatal."""
    out: dict[str, Any] = {}
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ScoreError(f"cannot read predictions {path}: {exc.strerror or exc}") from None
    with f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, Mapping) or "id" not in row or "output" not in row:
                counts["unparseable_lines"] += 1
                continue
            key = str(row["id"])
            if key in out:
                counts["duplicates"] += 1
                continue
            out[key] = row["output"]
    counts["predictions"] = len(out)
    return out


def _answer_spans(spec: TaskSpec, text: str, answer: Mapping, counts: Counter) -> dict[str, list]:
    keys = span_keys(spec)
    return {c.name: align_entities(text, answer.get(keys[c.name]), counts) for c in spec.span_controls}


def _choice_of(ctrl: Control, answer: Mapping, counts: Counter) -> list[str]:
    v = answer.get(ctrl.name)
    got = v if isinstance(v, list) else ([] if v is None else [v])
    kept = [x for x in got if isinstance(x, str) and x in ctrl.labels]
    if len(kept) != len(got):
        counts["invalid_choices"] += 1
    return kept


def score_predictions(export_dir: Path, predictions: Path, split: str = "test") -> dict:
    """Scores of a predictions file on one split of an LLM export: counts, span and choice metrics."""
    counts: Counter = Counter()
    spec, gold = load_export(export_dir, split)
    preds = read_predictions(predictions, counts)
    keys = span_keys(spec)
    gold_spans: dict[str, list] = {c.name: [] for c in spec.span_controls}
    pred_spans: dict[str, list] = {c.name: [] for c in spec.span_controls}
    gold_choices: dict[str, list] = {c.name: [] for c in spec.choice_controls}
    pred_choices: dict[str, list] = {c.name: [] for c in spec.choice_controls}
    ids = set()
    for ex in gold:
        ids.add(str(ex["id"]))
        text = ex["text"]
        gold_answer = {keys[c.name]: [{"text": text[s["start"]:s["end"]], "label": s["label"]}
                                      for s in ex["spans"] if s["from_name"] == c.name] for c in spec.span_controls}
        aligned = _answer_spans(spec, text, gold_answer, Counter())
        for c in spec.span_controls:
            exact = sorted((s["start"], s["end"], s["label"]) for s in ex["spans"] if s["from_name"] == c.name)
            counts["gold_entities_realigned"] += sum((Counter(exact) - Counter(aligned[c.name])).values())
            gold_spans[c.name].append(aligned[c.name])
        output = preds.get(str(ex["id"]))
        if output is None:
            counts["missing"] += 1
        answer = parse_answer(output) if output is not None else None
        if output is not None and answer is None:
            counts["unparseable_outputs"] += 1
        answer = answer or {}
        got = _answer_spans(spec, text, answer, counts)
        for c in spec.span_controls:
            pred_spans[c.name].append(got[c.name])
        for c in spec.choice_controls:
            gold_choices[c.name].append(ex["choices"].get(c.name) or [])
            pred_choices[c.name].append(_choice_of(c, answer, counts))
    counts["examples"] = len(gold)
    counts["unknown_ids"] = len(set(preds) - ids)
    return {
        "export": str(export_dir), "split": split,
        "counts": {k: counts.get(k, 0) for k in COUNT_KEYS},
        "spans": {c.name: evaluate_spans(gold_spans[c.name], pred_spans[c.name]) for c in spec.span_controls},
        "choices": {c.name: _choice_metrics(c, gold_choices[c.name], pred_choices[c.name]) for c in spec.choice_controls},
    }


def _choice_metrics(ctrl: Control, gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Single choice: evaluate_choices over the documents with a gold label. Multiple: exact-set accuracy and
    per-label P/R/F1 (evaluate_spans over one pseudo-span per chosen label)."""
    pairs = [(g, p) for g, p in zip(gold, pred) if g]
    if not ctrl.multi:
        return evaluate_choices([g[0] for g, _ in pairs], [p[0] if p else "" for _, p in pairs], list(ctrl.labels))
    m = evaluate_spans([[(0, 0, x) for x in g] for g, _ in pairs], [[(0, 0, x) for x in p] for _, p in pairs])
    accuracy = sum(set(g) == set(p) for g, p in pairs) / len(pairs) if pairs else 0.0
    return {"n": len(pairs), "accuracy": accuracy, "macro_f1": m["macro_f1"], "micro_f1": m["micro_f1"],
            "per_label": m["per_label"]}


def markdown(result: Mapping) -> str:
    """The scores as Markdown: counts, then one table per control."""
    c = result["counts"]
    lines = [f"# Scores on `{result['split']}` of {result['export']}", "",
             ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in c.items()), ""]
    for name, m in result["spans"].items():
        lines += [f"## `{name}` (strict entity match)", "", "| label | precision | recall | F1 | support |",
                  "|---|---:|---:|---:|---:|"]
        for lbl, v in m["per_label"].items():
            lines.append(f"| {lbl} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
        lines += [f"| **micro** | {m['precision']:.3f} | {m['recall']:.3f} | {m['entity_f1']:.3f} | {m['n_gold']} |", ""]
    for name, m in result["choices"].items():
        lines += [f"## `{name}`: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f} over {m['n']} documents",
                  "", "| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        predicted = [sum(col) for col in zip(*m["confusion"])] if m.get("confusion") else None
        for j, (lbl, v) in enumerate(m["per_label"].items()):
            if predicted is not None and not v["support"] and not predicted[j]:
                continue  # a label neither in the gold nor in the answers: nothing to score
            lines.append(f"| {lbl} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
        lines.append("")
    return "\n".join(lines)
