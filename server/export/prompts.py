"""Instructions of the LLM exports: the answer format, the default template per task kind, custom templates.

The instruction comes from the labeling config alone (control names, label values, and the ``hint`` /
``alias`` attributes of controls and labels where present) through a jinja2 template: the default one of
the task kind (spans, choices, or both), or a template file (``schemas/<name>.prompt.md`` or ``--template``).
The answer is one JSON object: ``{"entities": [{"text", "label"}, ...], "<choices control>": "<label>" | [...]}``,
entities in document order; with several span controls each has its own key (its control name).
"""
from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ml_backend.schema import TaskSpec

from ..errors import ExportError

SYSTEM_PROMPT = "You label documents. Answer with one JSON object and nothing else."
TEMPLATE_SUFFIX = ".prompt.md"

_SPANS = """\
{% for c in span_controls %}Under "{{ c.key }}", list every mention in the document that has one of the \
labels below ({{ c.what }}), in the order they appear, each as {"text": the exact text from the document, \
"label": the label}.
{% if c.hint %}{{ c.hint }}
{% endif %}{% for l in c.labels %}- {{ l.value }}{% if l.alias %} (also: {{ l.alias }}){% endif %}\
{% if l.hint %}: {{ l.hint }}{% endif %}
{% endfor %}{% endfor %}"""
_CHOICES = """\
{% for c in choice_controls %}Under "{{ c.key }}", give {% if c.multi %}a list of every label that applies\
{% else %}the one label that applies{% endif %} ({{ c.what }}):
{% if c.hint %}{{ c.hint }}
{% endif %}{% for l in c.labels %}- {{ l.value }}{% if l.alias %} (also: {{ l.alias }}){% endif %}\
{% if l.hint %}: {{ l.hint }}{% endif %}
{% endfor %}{% endfor %}"""
_FOOTER = "Answer with one JSON object, for example: {{ example }}"
DEFAULT_TEMPLATES = {
    "spans": _SPANS + _FOOTER,
    "choices": _CHOICES + _FOOTER,
    "spans+choices": _SPANS + _CHOICES + _FOOTER,
}


def task_kind(spec: TaskSpec) -> str:
    """``spans``, ``choices`` or ``spans+choices``: which default template a project gets."""
    kinds = [k for k, cs in (("spans", spec.span_controls), ("choices", spec.choice_controls)) if cs]
    return "+".join(kinds)


def span_keys(spec: TaskSpec) -> dict[str, str]:
    """The answer key of each span control: ``entities`` for the only one, its control name when there are several."""
    spans = spec.span_controls
    if len(spans) == 1 and "entities" not in {c.name for c in spec.choice_controls}:
        return {spans[0].name: "entities"}
    return {c.name: c.name for c in spans}


def answer_of(spec: TaskSpec, spans: list[dict], choices: dict[str, list[str]]) -> dict:
    """The answer object of a document (or chunk): entities in document order, then one key per Choices control."""
    keys = span_keys(spec)
    out: dict = {key: [] for key in keys.values()}
    for s in sorted(spans, key=lambda s: (s["start"], s["end"], s["label"])):
        if s["from_name"] in keys:
            out[keys[s["from_name"]]].append({"text": s["text"], "label": s["label"]})
    for c in spec.choice_controls:
        got = list(choices.get(c.name) or [])
        out[c.name] = got if c.multi else (got[0] if got else None)
    return out


def answer_text(answer: dict) -> str:
    """The assistant's answer as written in the files: compact JSON, non-ASCII kept."""
    return json.dumps(answer, ensure_ascii=False, separators=(", ", ": "))


def _attributes(label_config: str) -> dict[str, dict]:
    """Per control name: its ``hint`` and, per label value, the label's ``alias`` and ``hint``."""
    try:
        root = ET.fromstring(label_config.strip())
    except ET.ParseError:
        return {}
    out: dict[str, dict] = {}
    for el in root.iter():
        if el.tag.lower() in ("labels", "hypertextlabels", "choices") and el.get("name"):
            labels = {}
            for child in el:
                value = child.get("value") or child.get("alias") or (child.text or "").strip()
                if value:
                    labels[value] = {"alias": child.get("alias") if child.get("alias") != value else None,
                                     "hint": child.get("hint")}
            out[el.get("name")] = {"hint": el.get("hint"), "labels": labels}
    return out


def _example(spec: TaskSpec) -> str:
    ex: dict = {}
    keys = span_keys(spec)
    for c in spec.span_controls:
        ex[keys[c.name]] = [{"text": "...", "label": c.labels[0]}]
    for c in spec.choice_controls:
        ex[c.name] = [c.labels[0]] if c.multi else c.labels[0]
    return answer_text(ex)


def template_context(spec: TaskSpec, label_config: str) -> dict:
    """What a template sees: span_controls, choice_controls (key, name, what, hint, multi, labels), example."""
    attrs = _attributes(label_config)
    keys = span_keys(spec)

    def control(c, key: str) -> dict:
        a = attrs.get(c.name, {})
        labels = [{"value": lbl, **a.get("labels", {}).get(lbl, {"alias": None, "hint": None})} for lbl in c.labels]
        what = c.name.replace("_", " ")
        return {"key": key, "name": c.name, "what": what, "hint": a.get("hint"), "multi": c.multi, "labels": labels}

    return {
        "span_controls": [control(c, keys[c.name]) for c in spec.span_controls],
        "choice_controls": [control(c, c.name) for c in spec.choice_controls],
        "example": _example(spec),
    }


@dataclass(frozen=True)
class Prompt:
    """A template, where it came from, its sha256, and the instruction it renders for a project."""

    source: str  # "default:<kind>" or the template file's name
    template: str
    sha256: str
    instruction: str


def find_template(schema_name: str | None, schemas_dir: Path | None, explicit: Path | None) -> Path | None:
    """The template file to use: ``explicit``, else ``<schemas_dir>/<schema_name>.prompt.md`` when it exists."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise ExportError(f"--template must be a readable file, got {explicit}")
        return Path(explicit)
    if schema_name and schemas_dir is not None:
        path = Path(schemas_dir) / f"{schema_name}{TEMPLATE_SUFFIX}"
        if path.is_file():
            return path
    return None


def build_prompt(spec: TaskSpec, label_config: str, template_path: Path | None = None) -> Prompt:
    """Render the instruction of a project from its template (the kind's default when ``template_path`` is None)."""
    import jinja2

    if template_path is None:
        kind = task_kind(spec)
        source, text = f"default:{kind}", DEFAULT_TEMPLATES[kind]
    else:
        try:
            text = Path(template_path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ExportError(f"cannot read template {template_path}: {exc}") from None
        source = Path(template_path).name
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    try:
        instruction = env.from_string(text).render(**template_context(spec, label_config)).strip()
    except jinja2.TemplateError as exc:
        raise ExportError(f"template {source} does not render: {exc}") from None
    if not instruction:
        raise ExportError(f"template {source} renders an empty instruction")
    return Prompt(source, text, hashlib.sha256(text.encode("utf-8")).hexdigest(), instruction)
