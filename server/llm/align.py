"""An LLM's answer → Label Studio result items: quoted spans placed at exact character offsets, choices mapped to the
config's values.

An answer quotes an entity's text, not where it is, so a quote is placed at every occurrence in the document that
stands as whole words (a letter or digit on both sides of an edge means the quote sits inside a longer word; CJK
characters need no boundary). Exact matches first; a quote found nowhere exactly is looked up without case (small
models change case). Overlaps between the placed spans go through the project's one non-overlap rule
(ml_backend.alignment.select_non_overlapping: the longer span wins). Labels and choices are matched to the config's
values without case; anything else is dropped and counted. Items are built by ml_backend/results.py.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ml_backend.alignment import select_non_overlapping
from ml_backend.results import choice_item, span_item
from ml_backend.schema import Control, TaskSpec

from ..export.prompts import span_keys

COUNT_KEYS = ("entities", "entities_placed", "entities_not_found", "malformed_entities", "unknown_labels", "overlaps_dropped",
              "unknown_choices")


def is_cjk(ch: str) -> bool:
    """A character of a script written without spaces between words (Han, Kana, Hangul)."""
    return "\u2e80" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uf900" <= ch <= "\ufaff" or "\u3040" <= ch <= "\u30ff"


def _word(ch: str) -> bool:
    return ch.isalnum() and not is_cjk(ch)


def whole_words(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] does not cut into a space-delimited word at either edge."""
    if start > 0 and _word(text[start - 1]) and _word(text[start]):
        return False
    return not (end < len(text) and _word(text[end]) and _word(text[end - 1]))


def occurrences(text: str, quote: str) -> list[tuple[int, int]]:
    """Every whole-word occurrence of ``quote`` in ``text`` (overlapping ones too): exact, else case-insensitive."""
    quote = quote.strip()
    if not quote:
        return []
    pattern = f"(?=({re.escape(quote)}))"  # a lookahead finds overlapping occurrences too ("aa" in "aaa")
    found = [(m.start(1), m.end(1)) for m in re.finditer(pattern, text)]
    if not found:
        found = [(m.start(1), m.end(1)) for m in re.finditer(pattern, text, re.IGNORECASE)]
    return [(s, e) for s, e in found if e > s and whole_words(text, s, e)]


def place_quotes(text: str, quotes: list[tuple[str, str]], counts: Counter | None = None) -> list[tuple[int, int, str]]:
    """(start, end, label) for every whole-word occurrence of each (quote, label), without overlaps."""
    counts = counts if counts is not None else Counter()
    spans = []
    for quote, label in quotes:
        found = occurrences(text, quote)
        if not found:
            counts["entities_not_found"] += 1
        spans += [(s, e, label) for s, e in found]
    kept, dropped = select_non_overlapping(spans)
    counts["overlaps_dropped"] += dropped
    return kept


def label_of(value: Any, labels: tuple[str, ...]) -> str | None:
    """The config's label a value names (case and surrounding space ignored), or None."""
    if not isinstance(value, str):
        return None
    want = value.strip().casefold()
    return next((lbl for lbl in labels if lbl.casefold() == want), None)


def span_quotes(control: Control, entities: Any, counts: Counter) -> list[tuple[str, str]]:
    """(quote, label) pairs of one span control's answer list; malformed entities and unknown labels counted."""
    out = []
    for ent in entities if isinstance(entities, list) else ():
        counts["entities"] += 1
        if not isinstance(ent, Mapping) or not isinstance(ent.get("text"), str) or not ent["text"].strip():
            counts["malformed_entities"] += 1
            continue
        label = label_of(ent.get("label"), control.labels)
        if label is None:
            counts["unknown_labels"] += 1
            continue
        out.append((ent["text"], label))
    return out


def choices_of(control: Control, value: Any, counts: Counter) -> list[str]:
    """The config's values an answer gives for a Choices control (one for a single-choice control); unknown counted."""
    got = value if isinstance(value, list) else ([] if value is None else [value])
    out = []
    for v in got:
        lbl = label_of(v, control.labels)
        if lbl is None:
            counts["unknown_choices"] += 1
        elif lbl not in out:
            out.append(lbl)
    return out if control.multi else out[:1]


def read_answer(spec: TaskSpec, text: str, answer: Mapping | None, counts: Counter | None = None) -> dict[str, list]:
    """Per control name: spans ``(start, end, label)`` or chosen labels from one answer (empty when there is none)."""
    counts = counts if counts is not None else Counter()
    out: dict[str, list] = {c.name: [] for c in spec.controls}
    if not isinstance(answer, Mapping):
        return out
    keys = span_keys(spec)
    for c in spec.span_controls:
        out[c.name] = place_quotes(text, span_quotes(c, answer.get(keys[c.name]), counts), counts)
        counts["entities_placed"] += len(out[c.name])
    for c in spec.choice_controls:
        out[c.name] = choices_of(c, answer.get(c.name), counts)
    return out


def result_items(spec: TaskSpec, text: str, read: Mapping[str, list], score: float | None = None) -> list[dict]:
    """Label Studio result items of what ``read_answer`` read."""
    items = []
    for c in spec.span_controls:
        items += [span_item(c, s, e, lbl, text, score) for s, e, lbl in read.get(c.name, [])]
    for c in spec.choice_controls:
        if read.get(c.name):
            items.append(choice_item(c, list(read[c.name]), score))
    return items
