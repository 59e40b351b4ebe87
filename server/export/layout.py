"""Tokenisation and sentence layout of the BIO formats (CoNLL, the Parquet tag columns), and back to spans.

Tokens are whitespace tokens, each CJK character a token of its own, split at every span boundary, so
reading the tokens back against the text gives the exact character spans (bio_to_spans).
"""
from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DOCSTART = "-DOCSTART- -X- -X- O"
_CJK_CLASS = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0002fa1f"
)
_TOKEN_RE = re.compile(f"[{_CJK_CLASS}]|[^\\s{_CJK_CLASS}]+")
_CJK_RE = re.compile(f"[{_CJK_CLASS}]")
_SENT_POINT = re.compile(r"[.!?]\s+")
_SENT_POINT_CJK = re.compile(r"[.!?]\s+|[。！？]\s*")


def tokenize_for_conll(text: str, spans: Iterable[Any] = ()) -> list[tuple[str, int, int]]:
    """Whitespace tokens, each CJK character a token, and a token split at every span boundary."""
    starts, tokens = _tokenize(text, _cuts(spans))
    return [(t, s, s + len(t)) for t, s in zip(tokens, starts)]


def _cuts(spans: Iterable[Any]) -> list[int]:
    cuts: set[int] = set()
    for sp in spans:
        if isinstance(sp, Mapping):
            cuts.add(sp["start"])
            cuts.add(sp["end"])
        else:
            cuts.add(sp[0])
            cuts.add(sp[1])
    return sorted(cuts)


def _tokenize(text: str, cuts: Sequence[int]) -> tuple[list[int], list[str]]:
    """Token start offsets and token strings; tokens never cross a cut position."""
    bounds = [0, *(c for c in cuts if 0 < c < len(text)), len(text)]
    ms: list[re.Match] = []
    finditer = _TOKEN_RE.finditer
    for a, b in zip(bounds, bounds[1:]):
        if a < b:
            ms.extend(finditer(text, a, b))
    return [m.start() for m in ms], [m.group() for m in ms]


@dataclass
class DocLayout:
    """One document cut into tokens and sentences, with BIO tag ids and CoNLL text per span control."""

    tokens: list[str]
    tag_ids: dict[str, list[int]]
    conll: dict[str, str]


def layout_document(
    text: str, bio: Mapping[str, Sequence[tuple[int, int, str]]], label_index: Mapping[str, Mapping[str, int]],
    names: Mapping[str, Sequence[str]], conll: bool = True,
) -> DocLayout:
    """Tokens (as tokenize_for_conll), tag ids and CoNLL text of a document, per control's non-overlapping spans.

    The text is cut at every span boundary and sentence start; each piece is either inside one span of a
    control or outside it, so tags and CoNLL lines follow per piece (one join per piece), not per token,
    in one pass. A sentence starts after . ! ? plus whitespace, or after 。！？, never inside an entity.
    """
    if text.isascii():
        split_tokens, sent_re = str.split, _SENT_POINT
    elif _CJK_RE.search(text):
        split_tokens, sent_re = _TOKEN_RE.findall, _SENT_POINT_CJK
    else:
        split_tokens, sent_re = str.split, _SENT_POINT
    n_text = len(text)
    controls = list(bio)
    every = bio[controls[0]] if len(controls) == 1 else sorted(sp for spans in bio.values() for sp in spans)
    points = [p for p in (m.end() for m in sent_re.finditer(text)) if 0 < p < n_text]
    if points and every:
        starts = [sp[0] for sp in every]
        reach, far = [], 0
        for sp in every:
            if sp[1] > far:
                far = sp[1]
            reach.append(far)
        points = [p for p in points if (i := bisect.bisect_left(starts, p) - 1) < 0 or reach[i] <= p]
    cuts = {0, n_text, *points}
    for sp in every:
        cuts.add(sp[0])
        cuts.add(sp[1])
    bounds = sorted(cuts)
    point_set = set(points)
    tokens: list[str] = []
    # per control: name, its spans, [next span], tag ids, CoNLL text parts (None: not wanted), label index, tag names
    state = [(c, bio[c], [0], [], [DOCSTART, "\n\n"] if conll else None, label_index[c], names[c]) for c in controls]
    for a, b in zip(bounds, bounds[1:]):
        toks = split_tokens(text[a:b])
        if not toks:
            continue
        brk = bool(tokens) and a in point_set
        tokens += toks
        m = len(toks)
        for _, spans, ptr, ids, out, lidx, nm in state:
            p = ptr[0]
            while p < len(spans) and spans[p][1] <= a:
                p += 1
            ptr[0] = p
            if out is not None and brk:
                out.append("\n")
            if p < len(spans) and spans[p][0] <= a:  # the piece is inside span p
                sp = spans[p]
                bid = 1 + 2 * lidx[sp[2]]
                sep = f" -X- _ {nm[bid + 1]}\n"
                if sp[0] == a:
                    ids.append(bid)
                    ids += [bid + 1] * (m - 1)
                    if out is not None:
                        out.append(f"{toks[0]} -X- _ {nm[bid]}\n")
                        if m > 1:
                            out.append(sep.join(toks[1:]))
                            out.append(sep)
                else:
                    ids += [bid + 1] * m
                    if out is not None:
                        out.append(sep.join(toks))
                        out.append(sep)
            else:
                ids += [0] * m
                if out is not None:
                    out.append(" -X- _ O\n".join(toks))
                    out.append(" -X- _ O\n")
    tag_ids: dict[str, list[int]] = {}
    texts: dict[str, str] = {}
    for c, _, _, ids, out, _, _ in state:
        tag_ids[c] = ids
        if out is not None:
            texts[c] = "".join(out) + "\n" if tokens else DOCSTART + "\n\n"  # an empty document: no sentence
    return DocLayout(tokens, tag_ids, texts)


def bio_to_spans(tokens: Sequence[str], tags: Sequence[str], text: str) -> list[tuple[int, int, str]]:
    """Character spans of BIO-tagged tokens, by locating each token in order in the original text."""
    spans: list[tuple[int, int, str]] = []
    pos = 0
    cur: list[Any] | None = None
    for tok, tag in zip(tokens, tags):
        start = text.find(tok, pos)
        if start < 0:
            raise ValueError(f"token {tok!r} not found in the text after offset {pos}")
        end = pos = start + len(tok)
        if tag.startswith("I-") and cur is not None and cur[2] == tag[2:]:
            cur[1] = end
            continue
        if cur is not None:
            spans.append(tuple(cur))
            cur = None
        if tag.startswith(("B-", "I-")):
            cur = [start, end, tag[2:]]
    if cur is not None:
        spans.append(tuple(cur))
    return spans
