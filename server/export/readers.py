"""Reading an export back: data.jsonl records and spans, CoNLL documents."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Stream the records of an export's data.jsonl."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_jsonl_spans(path: str | Path, from_name: str | None = None) -> Iterator[tuple[Any, str, list[tuple[int, int, str]]]]:
    """Stream (id, text, sorted (start, end, label) spans) from data.jsonl, optionally of one control."""
    for rec in read_jsonl(path):
        spans = sorted(
            (s["start"], s["end"], s["label"])
            for s in rec["spans"]
            if from_name is None or s["from_name"] == from_name
        )
        yield rec["id"], rec["text"], spans


def read_conll(path: str | Path) -> Iterator[tuple[list[str], list[str]]]:
    """Stream the documents of a CoNLL-2003 file as (tokens, tags), sentences concatenated."""
    tokens: list[str] = []
    tags: list[str] = []
    started = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("-DOCSTART-"):
                if started:
                    yield tokens, tags
                tokens, tags, started = [], [], True
                continue
            if not line.strip():
                continue
            parts = line.split(" ")
            tokens.append(parts[0])
            tags.append(parts[-1])
    if started:
        yield tokens, tags
