"""Label Studio result items: the one place that builds them (predictions) and reads them (annotations).

A result item is ``{"id", "from_name", "to_name", "type", "value": {...}, "score"?}``; spans carry
``value.start/end/text/<type>`` (``labels`` for Labels), choices ``value.choices``. Flask-free.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any


def region_id(*parts: object) -> str:
    """A short id Label Studio accepts for a region: derived from ``parts`` when given, else random.

    A derived id is the same in every answer, so when the editor accepts a region it already shows (a
    pre-annotation, an earlier interactive answer) it replaces that region instead of adding a twin.
    """
    if parts:
        return hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return uuid.uuid4().hex[:10]


def span_item(control: Any, start: int, end: int, label: str | Sequence[str], text: str, score: float | None = None,
              item_id: str | None = None) -> dict:
    """A span region of ``control`` over ``text[start:end]`` (``text`` is the whole document), with one label or
    several; its id is ``item_id`` or one derived from the control, offsets and labels."""
    labels = [label] if isinstance(label, str) else list(label)
    item = {
        "id": item_id or region_id(control.name, start, end, *labels),
        "from_name": control.name,
        "to_name": control.to_name,
        "type": control.type,
        "value": {"start": start, "end": end, "text": text[start:end], "labels": labels},
    }
    if score is not None:
        item["score"] = round(float(score), 4)
    return item


def choice_item(control: Any, choices: list[str], score: float | None = None, item_id: str | None = None) -> dict:
    """A choices region of ``control``; its id is ``item_id`` or one derived from the control and the choices."""
    item = {
        "id": item_id or region_id(control.name, *choices),
        "from_name": control.name,
        "to_name": control.to_name,
        "type": "choices",
        "value": {"choices": list(choices)},
    }
    if score is not None:
        item["score"] = round(float(score), 4)
    return item


def value_of(item: Any) -> Mapping:
    """An item's ``value`` mapping ({} when absent or not a mapping)."""
    v = item.get("value") if isinstance(item, Mapping) else None
    return v if isinstance(v, Mapping) else {}


def span_labels(item: Any) -> list:
    """The labels of a span item: ``value[<type>]`` (``labels`` for Labels tags), else ``value.labels``."""
    v = value_of(item)
    labels = v.get(item.get("type") or "labels", v.get("labels")) if isinstance(item, Mapping) else None
    return labels if isinstance(labels, list) else []


def spans_of(items: Iterable[Any], from_name: str | None = None) -> Iterator[tuple[int, int, str]]:
    """``(start, end, label)`` of every well-formed span item (of ``from_name`` when given)."""
    for r in items or ():
        if not isinstance(r, Mapping) or (from_name is not None and r.get("from_name") != from_name):
            continue
        v = value_of(r)
        s, e = v.get("start"), v.get("end")
        if type(s) is int and type(e) is int:
            for lbl in span_labels(r):
                if isinstance(lbl, str):
                    yield s, e, lbl


def choices_of(items: Iterable[Any], from_name: str | None = None) -> list[str]:
    """Every choice string in the choices items (of ``from_name`` when given)."""
    out: list[str] = []
    for r in items or ():
        if not isinstance(r, Mapping) or (from_name is not None and r.get("from_name") != from_name):
            continue
        ch = value_of(r).get("choices")
        if isinstance(ch, list):
            out += [c for c in ch if isinstance(c, str)]
    return out


def result_key(result: Any) -> frozenset:
    """A comparable form of a result list: region ids, scores and other bookkeeping ignored."""
    out = set()
    for r in result or ():
        if not isinstance(r, Mapping):
            continue
        v = value_of(r)
        if "choices" in v:
            out.add((r.get("from_name"), "choices", tuple(sorted(map(str, v["choices"])))))
        elif "start" in v and "end" in v:
            out.add((r.get("from_name"), "span", v.get("start"), v.get("end"), tuple(sorted(map(str, span_labels(r))))))
        else:
            out.add((r.get("from_name"), "other", json.dumps(v, sort_keys=True, default=str)))
    return frozenset(out)
