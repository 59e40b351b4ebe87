"""Labeling config → task spec: which controls, which targets, which value fields, which labels.

Nothing here knows a domain: every name comes from the XML Label Studio sends. The XML comes from a request,
so it is parsed with defusedxml: a DOCTYPE (and with it entity expansion, "billion laughs", external
entities) is refused as a SchemaError.
"""
from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring

from . import ids
from .errors import SchemaError

SPAN_TAGS = {"labels": "labels", "hypertextlabels": "hypertextlabels"}
CHOICE_TAGS = {"choices": "choices"}
TEXT_OBJECT_TAGS = {"text", "hypertext", "paragraphs"}

# What one labeling config may ask of the backend. Every control holds a model (a Choices control's prototypes run
# the shared encoder; a fine-tuned one is its own model), and a Choices control embeds every label name before its
# first answer (about 60 names a second on 2 CPU cores), so both are bounded: a config past either answers 400.
MAX_CONTROLS = 32
MAX_LABELS = 500


@dataclass(frozen=True)
class Control:
    """One control tag of a labeling config."""

    name: str  # from_name
    to_name: str
    kind: str  # "spans" | "choices"
    type: str  # Label Studio result type: "labels", "choices", ...
    labels: tuple[str, ...]
    value_field: str  # task data key holding the text, from the object tag's value="$field"
    multi: bool = False  # choices: choice="multiple"


@dataclass(frozen=True)
class TaskSpec:
    """Everything the backend needs to know about a project, read from its labeling config."""

    controls: tuple[Control, ...]
    config_hash: str

    @property
    def span_controls(self) -> tuple[Control, ...]:
        return tuple(c for c in self.controls if c.kind == "spans")

    @property
    def choice_controls(self) -> tuple[Control, ...]:
        return tuple(c for c in self.controls if c.kind == "choices")

    @property
    def value_fields(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for c in self.controls:
            seen.setdefault(c.value_field, None)
        return tuple(seen)

    def problem(self, task: object, limit: int) -> tuple[str, str] | None:
        """(reason code, message) saying why a task cannot be predicted (it then gets an empty result), or None.

        The reason code is one of a fixed set (it becomes a metric label); the message may quote request values
        and is ASCII.
        """
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            return "no_data", "task has no 'data' object"
        for f in self.value_fields:
            v = data.get(f)
            if v is None:
                return "missing_field", f"task data has no {f!r} field (the labeling config reads ${f}); fields: {ids.shown(sorted(data)[:20], 200)}"
            if not isinstance(v, str):
                return "not_a_string", f"task data {f!r} must be a string, got {type(v).__name__}"
            if not v.strip():
                return "empty", f"task data {f!r} is empty"
            if len(v) > limit:
                return "too_long", f"task data {f!r} has {len(v)} characters, over the limit of {limit}"
            if not ids.valid_unicode(v):
                return "invalid_unicode", f"task data {f!r} is not valid Unicode (it holds a lone surrogate)"
        return None

    def control(self, name: str) -> Control:
        for c in self.controls:
            if c.name == name:
                return c
        raise SchemaError(f"labeling config has no control named {name!r}; expected one of {[c.name for c in self.controls]}")


def config_hash(xml: str) -> str:
    return hashlib.sha256(xml.strip().encode("utf-8")).hexdigest()[:16]


def parse_label_config(xml: object) -> TaskSpec:
    """Parse a Label Studio labeling config; raise SchemaError when it is unusable."""
    if not isinstance(xml, str) or not xml.strip():
        raise SchemaError(f"label config must be a non-empty XML string, got {type(xml).__name__}")
    try:
        xml.encode("utf-8")
    except UnicodeEncodeError:
        raise SchemaError("label config is not valid Unicode (it holds a lone surrogate)") from None
    try:
        root = safe_fromstring(xml.strip(), forbid_dtd=True)
    except ET.ParseError as exc:
        raise SchemaError(f"label config is not valid XML: {exc}") from None
    except DefusedXmlException as exc:
        raise SchemaError(f"label config must not declare a DOCTYPE or entities: {type(exc).__name__}") from None

    objects: dict[str, str] = {}
    for el in root.iter():
        if el.tag.lower() in TEXT_OBJECT_TAGS and el.get("name"):
            value = el.get("value", "")
            if not value.startswith("$") or len(value) < 2:
                raise SchemaError(f"<{el.tag} name={el.get('name')!r}> value must look like '$field', got {value!r}")
            objects[el.get("name")] = value[1:]

    controls: list[Control] = []
    for el in root.iter():
        tag = el.tag.lower()
        if tag not in SPAN_TAGS and tag not in CHOICE_TAGS:
            continue
        name, to_name = el.get("name"), el.get("toName")
        if not name or not to_name:
            raise SchemaError(f"<{el.tag}> needs both name and toName attributes")
        to_name = to_name.split(",")[0]
        if to_name not in objects:
            raise SchemaError(
                f"<{el.tag} name={name!r}> points to {to_name!r}, which is not a Text object; "
                f"text objects: {sorted(objects)}"
            )
        child_tag = "label" if tag in SPAN_TAGS else "choice"
        labels = tuple(
            c.get("value") or c.get("alias") or (c.text or "").strip()
            for c in el
            if c.tag.lower() == child_tag
        )
        labels = tuple(lbl for lbl in labels if lbl)
        if len(labels) > MAX_LABELS:
            raise SchemaError(f"<{el.tag} name={name!r}> has {len(labels)} <{child_tag.title()}> values; the limit is {MAX_LABELS} per control")
        if not labels:
            raise SchemaError(f"<{el.tag} name={name!r}> has no <{child_tag.title()}> values")
        if len(set(labels)) != len(labels):
            raise SchemaError(f"<{el.tag} name={name!r}> repeats a label: {list(labels)}")
        if len(controls) == MAX_CONTROLS:
            raise SchemaError(f"label config has more than {MAX_CONTROLS} controls (<Labels>, <Choices>); the limit is {MAX_CONTROLS}")
        if tag in SPAN_TAGS:
            controls.append(Control(name, to_name, "spans", SPAN_TAGS[tag], labels, objects[to_name]))
        else:
            multi = el.get("choice", "single").lower() == "multiple"
            controls.append(Control(name, to_name, "choices", "choices", labels, objects[to_name], multi))

    names = [c.name for c in controls]
    if len(set(names)) != len(names):
        raise SchemaError(f"label config repeats a control name: {names}")
    if not controls:
        raise SchemaError(
            "label config has no supported control: expected <Labels> (spans) or <Choices> on a <Text> object"
        )
    return TaskSpec(tuple(controls), config_hash(xml))
