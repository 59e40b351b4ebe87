"""Labeled records from outside the project's annotators: a starter set, a `goldloop pretrain` file, another export.

Source label names are mapped onto the project's labels (identity where the names match; a source label nothing maps
is dropped and counted), and every document gets the loop's stable split by its id. A round trains on them instead
of the Label Studio export (server/pretrain.py), or beside it (a starter's data rehearsed: server/starters).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ml_backend.schema import TaskSpec
from ml_backend.splits import SPLITS, split_of

from .errors import ConfigError
from .simulate.corpus import load_jsonl


@dataclass
class LabeledRecords:
    """Labeled records that did not come from the project's annotators (a starter set, another export): a round
    given them trains and evaluates on them instead of the Label Studio export. A record with a "controls" list
    labels only those controls (a sentiment set says nothing about entities)."""

    by_split: dict[str, list[dict]]
    name: str  # recorded as the version's dataset_version
    data_hash: str
    record: dict = field(default_factory=dict)  # further columns of the version record


def of_control(records: list[dict], control) -> list[dict]:
    """The records that label a control: those without a "controls" list, and those naming it."""
    return [r for r in records if control.name in r.get("controls", (control.name,))]


def parse_mapping(items: Sequence[str], spec: TaskSpec) -> dict[str, str]:
    """``SOURCE=TARGET`` pairs as a dict; every TARGET must be a label of the project."""
    labels = sorted({lbl for c in spec.controls for lbl in c.labels})
    mapping: dict[str, str] = {}
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ConfigError(f"--map {item!r}: expected SOURCE=TARGET")
        target = target.strip()
        if target not in labels:
            raise ConfigError(f"--map {item}: {target!r} is not a label of the project; its labels: {', '.join(labels)}")
        mapping[source.strip()] = target
    return mapping


def _control_of(spec: TaskSpec, kind: str, name: str | None, path: Path):
    """The control a file of one kind ("spans" / "choices") labels: the named one, else the config's only one."""
    if name:
        control = next((c for c in spec.controls if c.name == name), None)
        if control is None:
            raise ConfigError(f"--control {name!r} is not a control of the project; its controls: {', '.join(c.name for c in spec.controls)}")
        if control.kind == kind:
            return control
    pool = spec.span_controls if kind == "spans" else [c for c in spec.choice_controls if not c.multi]
    if len(pool) != 1:
        names = ", ".join(c.name for c in pool) or "none"
        raise ConfigError(f"{path}: its {kind} fit {len(pool)} controls of the project ({names}); name one with --control")
    return pool[0]


def _mapped(label: str, control, mapping: dict[str, str]) -> str | None:
    target = mapping.get(label, label)
    return target if target in control.labels else None


def convert(rows: list[dict], spec: TaskSpec, mapping: dict[str, str], path: Path, control: str | None = None) -> tuple[list[dict], dict]:
    """One file's rows as round records (text, spans with from_name, choices, split, the controls they label),
    and what was dropped: {"labels": {source label: count}, "documents": n without text or mapped label}."""
    dropped: Counter = Counter()
    no_doc = 0
    out = []
    for i, row in enumerate(rows):
        rid = str(row.get("id", f"{path.name}:{i}"))
        text = row.get("text")
        if not isinstance(text, str):
            fields = row.get("data") or {}
            text = next((fields.get(f) for f in spec.value_fields if isinstance(fields.get(f), str)), None)
        if not isinstance(text, str) or not text.strip():
            no_doc += 1
            continue
        rec: dict = {"id": rid, "text": text, "spans": [], "choices": {}, "split": split_of(rid)}
        if "label" in row:  # {id, text, label}
            ctl = _control_of(spec, "choices", control, path)
            target = _mapped(str(row["label"]), ctl, mapping)
            if target is None:
                dropped[str(row["label"])] += 1
                no_doc += 1
                continue
            rec["choices"][ctl.name] = [target]
        for s in row.get("spans") or []:
            src = s[3] if isinstance(s, list) else s.get("label")  # export spans may be [from_name, start, end, label]
            start, end = (s[1], s[2]) if isinstance(s, list) else (s.get("start"), s.get("end"))
            name = s[0] if isinstance(s, list) else s.get("from_name")
            ctl = next((c for c in spec.span_controls if c.name == name), None) or _control_of(spec, "spans", control, path)
            target = _mapped(str(src), ctl, mapping)
            if target is None:
                dropped[str(src)] += 1
                continue
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
                raise ConfigError(f"{path}: document {rid!r}: span {start}..{end} is not inside its text")
            rec["spans"].append({"start": start, "end": end, "label": target, "from_name": ctl.name})
        for name, labels in (row.get("choices") or {}).items():  # an export's {control: [labels]}
            ctl = next((c for c in spec.choice_controls if c.name == name), None)
            if ctl is None:
                dropped.update(map(str, labels))
                continue
            kept = [t for t in (_mapped(str(lbl), ctl, mapping) for lbl in labels) if t]
            dropped.update(str(lbl) for lbl in labels if not _mapped(str(lbl), ctl, mapping))
            if kept:
                rec["choices"][ctl.name] = kept
        out.append(rec)
    # the controls this file labels: an empty span list says "no entity" only in a file that marks entities
    labeled = {s["from_name"] for r in out for s in r["spans"]} | {n for r in out for n in r["choices"]}
    for r in out:
        r["controls"] = sorted(labeled)
    return [r for r in out if r["controls"]], {"labels": dict(dropped), "documents": no_doc}


def build_records(sources: Sequence[tuple[Path, str | None]], spec: TaskSpec, mapping: dict[str, str],
                  limit: int | None = None) -> LabeledRecords:
    """Every source file (path, the control it labels or None) as one LabeledRecords, hashed by content and mapping."""
    by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    report: dict = {"mapping": mapping, "sources": [], "dropped_labels": {}, "dropped_documents": 0}
    digest = hashlib.sha256(json.dumps(mapping, sort_keys=True).encode())
    dropped: Counter = Counter()
    for path, control in sources:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"--data {path}: no such file")
        rows = load_jsonl(path)[:limit] if limit else load_jsonl(path)
        records, lost = convert(rows, spec, mapping, path, control)
        if not records:
            raise ConfigError(f"{path}: no document labels a control of the project (labels dropped: {lost['labels'] or 'none'})")
        for r in records:
            by_split[r["split"]].append(r)
            digest.update(json.dumps(r, sort_keys=True).encode())
        dropped.update(lost["labels"])
        report["dropped_documents"] += lost["documents"]
        report["sources"].append({"file": str(path), "documents": len(records), "controls": records[0]["controls"]})
    report["dropped_labels"] = dict(dropped)
    data_hash = digest.hexdigest()
    return LabeledRecords(by_split, f"pretrain-{data_hash[:12]}", data_hash, {"pretrain": json.dumps(report)})
