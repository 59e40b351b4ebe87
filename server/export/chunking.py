"""Long documents cut into chunks of at most ``max_tokens`` tokens, at sentence boundaries, never inside an entity.

A cut goes where a sentence starts (after ``.``/``!``/``?`` plus whitespace, after ``。！？``, or after a line
break) and no span covers it. When no sentence fits under the limit, the cut falls back to whitespace outside
every span; when nothing fits either, the chunk runs to the next legal cut and is counted as over the limit.
Each chunk carries its own spans, with offsets relative to the chunk.
"""
from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_SENTENCE_START = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*|\n\s*")
_WHITESPACE = re.compile(r"\s+")

TokenEnds = Callable[[str], Sequence[int]]  # text → the end offset of every token, ascending


@dataclass
class Chunk:
    """One piece of a document: its character range in the document, its text and its spans (chunk offsets)."""

    start: int
    end: int
    text: str
    spans: list[dict] = field(default_factory=list)
    tokens: int = 0
    over_limit: bool = False


def _covered(spans: Sequence[dict]) -> Callable[[int], bool]:
    """A test of whether a position lies strictly inside some span (a cut there would split an entity)."""
    inside = sorted((s["start"], s["end"]) for s in spans)
    merged: list[list[int]] = []
    for s, e in inside:
        if merged and s < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    starts = [m[0] for m in merged]

    def covered(pos: int) -> bool:
        i = bisect.bisect_right(starts, pos - 1) - 1  # the last merged span starting before pos
        return i >= 0 and merged[i][0] < pos < merged[i][1]

    return covered


def cut_points(text: str, spans: Sequence[dict], pattern: re.Pattern = _SENTENCE_START) -> list[int]:
    """Positions where a new piece may start: after each match of ``pattern``, never inside a span."""
    covered = _covered(spans)
    points = sorted({m.end() for m in pattern.finditer(text) if 0 < m.end() < len(text)})
    return [p for p in points if not covered(p)]


def chunk_document(text: str, spans: Sequence[dict], max_tokens: int, token_ends: TokenEnds) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``max_tokens`` tokens (see the module docstring); one chunk when it fits."""
    ends = list(token_ends(text))
    if len(ends) <= max_tokens:
        return [_make_chunk(text, spans, 0, len(text), len(ends), False)]
    sentence = cut_points(text, spans)
    blank = cut_points(text, spans, _WHITESPACE)

    def tokens(a: int, b: int) -> int:
        return bisect.bisect_right(ends, b) - bisect.bisect_right(ends, a)

    chunks: list[Chunk] = []
    a = 0
    while a < len(text):
        b, over = _next_cut(a, len(text), sentence, blank, tokens, max_tokens)
        chunks.append(_make_chunk(text, spans, a, b, tokens(a, b), over))
        a = b
    return [c for c in chunks if c.text]


def _next_cut(a: int, n: int, sentence: list[int], blank: list[int], tokens: Callable[[int, int], int],
              max_tokens: int) -> tuple[int, bool]:
    """The end of the chunk that starts at ``a``, and whether it is over the limit."""
    if tokens(a, n) <= max_tokens:
        return n, False
    for points in (sentence, blank):
        lo, hi = bisect.bisect_right(points, a), bisect.bisect_right(points, n)
        if lo < hi and tokens(a, points[lo]) <= max_tokens:
            while hi - lo > 1:  # the token count grows with the cut: the last point that fits, by bisection
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if tokens(a, points[mid]) <= max_tokens else (lo, mid)
            return points[lo], False
    for points in (sentence, blank):  # nothing fits: the shortest legal chunk
        lo = bisect.bisect_right(points, a)
        if lo < len(points):
            return points[lo], True
    return n, True


def _make_chunk(text: str, spans: Sequence[dict], a: int, b: int, n_tokens: int, over: bool) -> Chunk:
    piece = text[a:b].rstrip()
    b = a + len(piece)
    inner = [
        {**s, "start": s["start"] - a, "end": s["end"] - a}
        for s in spans if a <= s["start"] and s["end"] <= b
    ]
    return Chunk(a, b, piece, inner, n_tokens, over)


def hf_token_ends(tokenizer) -> TokenEnds:
    """Token end offsets from a fast Hugging Face tokenizer (no special tokens)."""

    def ends(text: str) -> list[int]:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
        return [e for _, e in enc["offset_mapping"]]

    return ends
