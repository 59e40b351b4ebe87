"""Borderline spans: what the engine found but could not decide on, so it left them unmasked and says so.

A recognizer marks such a span with the entity REVIEW_ENTITY and metadata (the kind it would have been, a score and
the threshold it missed, the reason); the engine keeps them apart from what it masks and drops those a mask covers.
The import counts the documents that hold one, and `goldloop import --review-pii PATH` writes them as JSON Lines for a
person to check. That file holds the original text around each span: personal data by design. It is written with
mode 0600 (owner only) through a temporary file in the same folder, and never logged.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

REVIEW_ENTITY = "REVIEW"
# recognition-metadata keys a recognizer fills on a REVIEW result
META_KIND, META_SCORE, META_THRESHOLD, META_REASON = "review_kind", "review_score", "review_threshold", "review_reason"
CONTEXT_CHARS = 40  # characters of the original text on each side of a span in the review file
FILE_MODE = 0o600


@dataclass(frozen=True)
class Borderline:
    """A span left unmasked that may be an identifier: the kind it would have had, the score the recognizer gave it
    and the threshold it missed (None for rule-based cases), and why it is borderline."""

    kind: str
    start: int
    end: int
    score: float | None
    threshold: float | None
    reason: str


def review_meta(kind: str, reason: str, score: float | None = None, threshold: float | None = None) -> dict:
    """The recognition metadata of a REVIEW result."""
    return {META_KIND: kind, META_REASON: reason, META_SCORE: score, META_THRESHOLD: threshold}


def from_result(result) -> Borderline:
    """A Presidio RecognizerResult of entity REVIEW_ENTITY as a Borderline."""
    meta = result.recognition_metadata or {}
    score, threshold = meta.get(META_SCORE), meta.get(META_THRESHOLD)
    return Borderline(meta.get(META_KIND, "UNKNOWN"), result.start, result.end,
                      None if score is None else round(float(score), 4),
                      None if threshold is None else round(float(threshold), 4), meta.get(META_REASON, ""))


def entries(text: str, spans: Iterable[Borderline], **where) -> list[dict]:
    """One review record per span: `where` (source file, line, field …) first, then the span's offsets in `text` (the
    document as goldloop read and cleaned it, before masking), kind, score, threshold, reason, the span and a short
    context window around it."""
    out = []
    for b in spans:
        lo, hi = max(0, b.start - CONTEXT_CHARS), min(len(text), b.end + CONTEXT_CHARS)
        out.append({**where, "start": b.start, "end": b.end, "kind": b.kind, "score": b.score,
                    "threshold": b.threshold, "reason": b.reason, "span": text[b.start:b.end],
                    "context": text[lo:hi], "context_start": lo})
    return out


def write_review(path: Path | str, records: list[dict]) -> Path:
    """Write the review records as JSON Lines to `path` with mode 0600, replacing the file atomically (a reader never
    sees half of it, and a file that was there with a wider mode is replaced, not reused)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates it 0600
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
