"""Helpers of the ingest tests: fixture files and cleaning options (plain functions, no fixtures)."""
from __future__ import annotations

import json
from pathlib import Path

from server.ingest import CleanOptions


def write(path: Path, content: str | bytes) -> Path:
    """Write a fixture file (text as UTF-8) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def jsonl(*records: object) -> str:
    """JSONL text from records."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def keep_all(**overrides) -> CleanOptions:
    """Options that keep short test texts."""
    return CleanOptions(**{"min_chars": 1, **overrides})
