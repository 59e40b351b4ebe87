"""The starter sets a schema ships, as data: where their files are, their inputs and cache key, a project's starter
record, and the documents a project's rounds rehearse. No training and no processes (those are in __init__.py), so the
round (server/loop.py) reads from here without importing what trains starters.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
TABLE = "starters"  # one row per project: key, status, version, started_at, duration_s, decision, pid


def available() -> list[str]:
    """The schema names that ship a starter set."""
    return sorted(p.parent.name for p in HERE.glob("*/starter.json"))


def languages(schema: str) -> list[str]:
    """The languages a schema's starter sets are in: English (``<schema>/``) first, then ``<schema>/<language>/``."""
    if schema not in available():
        return []
    return ["en"] + sorted(p.parent.name for p in (HERE / schema).glob("*/starter.json"))


def folder(schema: str, language: str = "en") -> Path:
    """Where a schema's starter set in a language lives."""
    return HERE / schema if language == "en" else HERE / schema / language


def manifest(schema: str, language: str = "en") -> dict:
    path = folder(schema, language) / "starter.json"
    if not path.is_file():
        raise KeyError(f"{schema} ({language})")
    return json.loads(path.read_text(encoding="utf-8"))


def inputs(schema: str, language: str = "en") -> tuple[list[tuple[Path, str]], list[str]]:
    """The pretrain inputs of a schema's starter in a language: (file, control) pairs and SOURCE=TARGET maps."""
    sets = manifest(schema, language)["sets"]
    sources = [(folder(schema, language) / s["file"], s["control"]) for s in sets]
    maps = sorted({f"{k}={v}" for s in sets for k, v in s["map"].items()})
    return sources, maps


def key(schema: str, encoder: str, language: str = "en") -> str:
    """What a trained starter is cached by: its files' contents and the encoder (the folder of its language only:
    adding a language leaves the English starters' keys as they were)."""
    h = hashlib.sha256(encoder.encode())
    for path in sorted(folder(schema, language).glob("*")):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


# typed up front: a training row has no duration yet, and a column guessed from None would be TEXT
COLUMNS = {"project_id": int, "schema": str, "language": str, "key": str, "encoder": str, "status": str, "started_at": float, "pid": int,
           "version": str, "decision": str, "duration_s": float}


def state(db, project_id: int) -> dict | None:
    """The starter record of a project, None when it never had one."""
    if db is None or TABLE not in db.table_names():
        return None
    rows = list(db[TABLE].rows_where("project_id = ?", [int(project_id)]))
    if not rows:
        return None
    row = dict(rows[0])
    for k in ("started_at", "duration_s"):  # a table an older version made holds them as text
        if row.get(k) is not None:
            row[k] = float(row[k])
    return row


def rehearsal_sets(db, project_id: int, spec) -> tuple[dict, str]:
    """The starter's own training documents per control, which a project's rounds rehearse beside its labels
    (TrainOptions.rehearsal, ml_backend/warm_start.rehearsal_sample), and where they come from; ({}, why not) for a
    project its starter never served (none shipped, not trained, rejected, failed, off) or whose labels no longer
    take the starter's map. Bounded by the shipped set: at most its train split (about 1,500 documents, under 1 MB of text)."""
    from ml_backend.training import examples_for

    from ..errors import ConfigError
    from ..records import build_records, of_control, parse_mapping

    row = state(db, project_id)
    if not row or row.get("status") != "promoted" or row.get("schema") not in available():
        return {}, "no starter served this project"
    language = row.get("language") or "en"
    try:
        sources, maps = inputs(row["schema"], language)
        train = build_records(sources, spec, parse_mapping(maps, spec)).by_split["train"]
    except (KeyError, ConfigError) as exc:  # a schema edited since: its labels no longer take the starter's
        return {}, f"the {row['schema']} starter ({language}) does not fit the project's labels: {exc}"
    sets = {c.name: ex for c in spec.controls if (ex := examples_for(c, of_control(train, c))).texts}
    return sets, f"starter {row['schema']} ({language})"
