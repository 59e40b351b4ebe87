"""The simulation's documents: ``{id, text, label}`` or ``{id, text, spans}`` JSONL checked against a labeling
config, and the fixed held-out test split."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ml_backend.errors import SchemaError
from ml_backend.schema import parse_label_config

from ..errors import ConfigError
from ..schema_files import load_schema


@dataclass
class Corpus:
    """Documents of one control: ids, texts and gold targets (a label, or a list of spans)."""

    ids: list[str]
    texts: list[str]
    task: str  # "choices" | "spans"
    labels: list[str]
    control: str
    targets: list[Any]  # choices: label index per doc; spans: [(start, end, label), ...] per doc
    duplicates_dropped: int = 0
    spec: Any = None  # the labeling config's ml_backend.schema.Control for `control`


def load_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file (blank lines skipped)."""
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{n}: not a JSON object: {exc}") from exc
    return rows


def load_corpus(data: Path | Sequence[dict], schema: Path | str, control: str | None = None) -> Corpus:
    """Read documents + labeling config; check every gold label is one of the control's labels."""
    rows = load_jsonl(Path(data)) if isinstance(data, (str, Path)) else list(data)
    if not rows:
        raise ConfigError(f"{data}: no documents")
    is_xml = isinstance(schema, str) and schema.lstrip().startswith("<")
    where = "labeling config" if is_xml else f"schema {schema}"
    xml = schema if is_xml else load_schema(Path(schema)).xml  # a file's read and parse errors name the file
    try:
        spec = parse_label_config(xml)
        ctl = spec.control(control) if control is not None else None
    except SchemaError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    task = "spans" if any("spans" in r for r in rows) else "choices"
    if task == "choices" and not all("label" in r for r in rows):
        raise ConfigError("every document needs a 'label' (document labels) or 'spans' (span labels)")
    pool = spec.span_controls if task == "spans" else spec.choice_controls
    if ctl is not None:
        if ctl.kind != task:
            raise ConfigError(f"control {control!r} labels {ctl.kind}, but the data has {task}")
    elif not pool:
        want = "<Labels>" if task == "spans" else "<Choices>"
        raise ConfigError(f"the data has {task} but the labeling config has no {want} control")
    else:
        ctl = pool[0]
    labels = list(ctl.labels)
    seen: set[str] = set()
    ids, texts, targets = [], [], []
    dropped = 0
    for i, r in enumerate(rows):
        rid = str(r.get("id", i))
        if rid in seen:
            dropped += 1
            continue
        seen.add(rid)
        text = r.get("text")
        if not isinstance(text, str):
            raise ConfigError(f"document {rid!r}: 'text' must be a string, got {type(text).__name__}")
        if task == "choices":
            if r["label"] not in labels:
                raise ConfigError(f"document {rid!r}: label {r['label']!r} is not one of {labels} (control {ctl.name!r})")
            targets.append(labels.index(r["label"]))
        else:
            spans = []
            for s in r.get("spans") or []:
                if s["label"] not in labels:
                    raise ConfigError(
                        f"document {rid!r}: span label {s['label']!r} is not one of {labels} (control {ctl.name!r})"
                    )
                spans.append((int(s["start"]), int(s["end"]), str(s["label"])))
            targets.append(spans)
        ids.append(rid)
        texts.append(text)
    return Corpus(ids, texts, task, labels, ctl.name, targets, dropped, ctl)


def split_test(corpus: Corpus, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (pool, test) index split; stratified by label for document labels when every class allows it."""
    n = len(corpus.ids)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = max(1, int(round(n * test_fraction)))
    if n - n_test < 2:
        raise ConfigError(f"{n} documents leave no pool after a {test_fraction:.0%} test split")
    rng = np.random.default_rng(seed)
    if corpus.task == "choices":
        y = np.asarray(corpus.targets)
        counts = np.bincount(y, minlength=len(corpus.labels))
        if counts[counts > 0].min() >= 2:
            from sklearn.model_selection import train_test_split

            pool, test = train_test_split(
                np.arange(n), test_size=n_test, stratify=y, random_state=int(rng.integers(0, 2**31 - 1))
            )
            return np.sort(pool), np.sort(test)
    perm = rng.permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])
