"""What an export says about itself: manifest.json, the datasheet (README.md) and the Parquet dataset card."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ml_backend.schema import TaskSpec
from ml_backend.splits import SPLITS

from .options import ExportOptions, ProjectInfo
from .parse import ORIGINS, REVIEW_RULE, Problems, Stats
from .tokens import OVERLAP_RULE

RESOLUTION_RULES = {
    "majority": (
        "single choice: the most voted label, ties go to the label of the most recently updated annotation; "
        "multiple choice and spans: an item is kept if more than half of the annotations have it exactly, "
        "exactly half keeps it only if the most recent annotation has it; annotations that leave a choice "
        "control empty abstain for that control"
    ),
    "latest": "the most recently updated annotation (updated_at, then created_at, then annotation id)",
    "ground-truth": "the annotation marked ground_truth (most recent if several); none marked: latest, recorded",
}


@dataclass
class ExportFacts:
    """What one pass over the tasks found: counters, problems, agreement, the files of each format."""

    stats: Stats
    problems: Problems
    agreement: dict  # AgreementAccumulator.summary()
    formats: dict  # Writers.format_paths()
    check_notes: list[str]  # LabelCheck.notes
    llm: dict | None = None  # LLMOutputs.summary() when an LLM format is exported


def _nested(d: Mapping) -> dict:
    return {k: (_nested(v) if isinstance(v, Mapping) else v) for k, v in sorted(d.items())}


def build_manifest(version: str, content_hash: str, now: datetime, project: ProjectInfo, spec: TaskSpec,
                   options: ExportOptions, facts: ExportFacts) -> dict:
    """manifest.json, less its ``files`` (added once every file, the datasheet included, is written)."""
    stats, problems = facts.stats, facts.problems
    spans_per_label: dict[str, Counter] = defaultdict(Counter)
    choices_per_label: dict[str, Counter] = defaultdict(Counter)
    for split_counts in stats.spans.values():
        for ctrl, c in split_counts.items():
            spans_per_label[ctrl].update(c)
    for split_counts in stats.choices.values():
        for ctrl, c in split_counts.items():
            choices_per_label[ctrl].update(c)
    return {
        "version": version,
        "content_hash": content_hash,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "goldloop_version": options.goldloop_version,
        "project": {"id": project.id, "slug": project.slug, "title": project.title},
        "label_config_hash": spec.config_hash,
        "controls": [
            {"name": c.name, "kind": c.kind, "type": c.type, "to_name": c.to_name, "value_field": c.value_field,
             "labels": list(c.labels), "multi": c.multi}
            for c in spec.controls
        ],
        "options": options.recorded(),
        "resolution": {"policy": options.resolve, "rule": RESOLUTION_RULES[options.resolve],
                       "ground_truth_fallbacks": stats.gt_fallbacks},
        "review_rule": REVIEW_RULE if options.only_reviewed else None,
        "counts": {
            "tasks_seen": stats.tasks_seen,
            "documents": stats.documents,
            "per_split": {sp: stats.per_split.get(sp, 0) for sp in SPLITS},
            "skipped_tasks": dict(sorted(stats.skipped.items())),
            "annotations_counted": stats.annotations_counted,
            "annotations_cancelled": stats.annotations_cancelled,
            "spans_per_label": _nested(spans_per_label),
            "choices_per_label": _nested(choices_per_label),
            "per_split_label": {
                sp: {"spans": _nested(stats.spans.get(sp, {})), "choices": _nested(stats.choices.get(sp, {}))}
                for sp in SPLITS
            },
            "origin": {o: stats.origin.get(o, 0) for o in ORIGINS},
            "conflicts": stats.conflicts,
            "overlaps_dropped_in_bio": dict(sorted(stats.overlaps_dropped.items())),
            "spans_whitespace_trimmed": stats.whitespace_trimmed,
            "spans_relocated": stats.relocated,
        },
        "overlap_rule": OVERLAP_RULE,
        "annotators": [{"id": k, "annotations": v} for k, v in sorted(stats.annotators.items())],
        "agreement": facts.agreement,
        "model_versions": dict(sorted(stats.model_versions.items())),
        "formats": facts.formats,
        "check_labels": facts.check_notes,
        "problem_counts": dict(sorted(problems.counts.items())),
        "problems": problems.items,
        "problems_truncated": sum(problems.counts.values()) > len(problems.items),
        **({"llm": facts.llm} if facts.llm is not None else {}),
    }


def _fmt(x: Any) -> str:
    return "n/a" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def datasheet(m: dict, project: ProjectInfo, spec: TaskSpec) -> str:
    """README.md of a version: what, how it was labeled, labels, splits, agreement, known limits."""
    c = m["counts"]
    lines = [
        f"# {project.title} — gold dataset {m['version']}",
        "",
        "## What",
        f"Documents exported from Label Studio project {project.id} (`{project.slug}`), labeling config hash "
        f"`{m['label_config_hash']}`, content hash `{m['content_hash']}`, goldloop {m['goldloop_version']}.",
        f"{c['documents']} documents ({c['tasks_seen']} tasks seen; skipped: {c['skipped_tasks'] or 'none'}).",
        "",
        "## How it was labeled",
        f"{c['annotations_counted']} annotations by {len(m['annotators'])} annotator(s) "
        f"({c['annotations_cancelled']} cancelled annotations ignored). Origin of the final annotation: "
        + ", ".join(f"{k} {v}" for k, v in c["origin"].items())
        + ". Model versions that pre-annotated: "
        + (", ".join(f"{k} ({v})" for k, v in m["model_versions"].items()) or "none")
        + ".",
        f"Conflict resolution: **{m['resolution']['policy']}** — {m['resolution']['rule']}. "
        f"{c['conflicts']} documents had disagreeing annotations (see conflicts.jsonl).",
    ]
    if m["review_rule"]:
        lines.append(f"Only reviewed: {m['review_rule']}.")
    lines += ["", "## Labels"]
    for ctrl in spec.controls:
        kind = "span labels" if ctrl.kind == "spans" else ("multiple choice" if ctrl.multi else "single choice")
        lines.append(f"- `{ctrl.name}` ({kind} on `${ctrl.value_field}`): " + ", ".join(f"`{x}`" for x in ctrl.labels))
    lines += ["", "| control | label | count |", "|---|---|---|"]
    for key in ("spans_per_label", "choices_per_label"):
        for ctrl, labels in c[key].items():
            for lbl, n in labels.items():
                lines.append(f"| {ctrl} | {lbl} | {n} |")
    lines += [
        "",
        "## Splits",
        "Stable hash of the task id (ml_backend.splits.split_of): 70/15/15. "
        + ", ".join(f"{k}: {v}" for k, v in c["per_split"].items()),
        "",
        "## Agreement",
    ]
    ag = m["agreement"]
    lines.append(f"{ag['multi_annotated_documents']} of {ag['documents']} documents have 2+ annotations.")
    for ctrl, a in ag["choices"].items():
        lines.append(
            f"- `{ctrl}`: Fleiss' kappa {_fmt(a['fleiss_kappa'])}, Cohen's kappa {_fmt(a['cohen_kappa'])} "
            f"over {a['items']} items"
        )
    for ctrl, a in ag["spans"].items():
        lines.append(f"- `{ctrl}`: pairwise exact span F1 {_fmt(a['f1'])} over {a['pairs']} annotation pairs")
    lines += [
        "",
        "## Known limits",
        f"- {m['overlap_rule']}. Dropped from BIO: {c['overlaps_dropped_in_bio'] or 'none'}.",
        "- CoNLL tokens: whitespace tokens, each CJK character a token, split at entity boundaries; "
        "a sentence ends after `.`/`!`/`?` plus whitespace or after `。！？`, never inside an entity.",
        f"- Span whitespace trimmed: {c['spans_whitespace_trimmed']}; spans relocated to the nearest exact text "
        f"match: {c['spans_relocated']}.",
        f"- Problems recorded: {m['problem_counts'] or 'none'} (all in problems.jsonl).",
    ]
    if m["check_labels"]:
        lines.append("- Label check: " + "; ".join(m["check_labels"]))
    if "llm" in m:
        lines += llm_datasheet(m["llm"])
    return "\n".join(lines) + "\n"


def llm_datasheet(llm: Mapping) -> list[str]:
    """The datasheet's section on the LLM formats: template, tokenizer, chunks and tokens per split."""
    t = llm["template"]
    lines = [
        "", "## LLM fine-tuning files",
        f"Template `{t['source']}` (sha256 `{t['sha256']}`); tokens counted with `{llm['tokenizer']}`; documents "
        f"over {llm['max_tokens']} tokens are cut at sentence boundaries, never inside an entity.",
        "", "| split | examples | tokens | chunked documents | chunks over the limit | preference pairs |",
        "|---|---|---|---|---|---|",
    ]
    for sp, c in llm["per_split"].items():
        lines.append(f"| {sp} | {c['examples']} | {c['tokens']} | {c['chunked_documents']} | {c['chunks_over_limit']} "
                     f"| {_fmt(c['preference_pairs'])} |")
    lines += ["", "Instruction:", "", *(f"> {ln}" if ln else ">" for ln in llm["instruction"].splitlines())]
    return lines


def hf_card(project: ProjectInfo, hf: Mapping) -> str:
    """hf/README.md: the dataset card `datasets` reads (splits, rows, columns), from the Parquet writer's facts."""
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *(f"  - split: {'validation' if sp == 'dev' else sp}\n    path: {sp}.parquet" for sp in SPLITS),
        "---",
        f"# {project.title}",
        "",
        f"Gold labels from Label Studio project {project.id} (`{project.slug}`). One Parquet file per split; the "
        "Hugging Face `datasets` features are stored in each file's schema metadata.",
        "",
        "```python",
        "from datasets import load_dataset",
        "ds = load_dataset('parquet', data_files={'train': 'train.parquet', 'validation': 'dev.parquet', "
        "'test': 'test.parquet'})",
        "```",
        "",
        "## Rows per split",
        *(f"- {sp}: {hf['rows'][sp]}" for sp in SPLITS),
        "",
        "## Columns",
    ]
    for name, text in hf["columns"]:
        lines.append(f"- `{name}`: {text}")
    lines.append("")
    return "\n".join(lines)
