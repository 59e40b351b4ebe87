"""Interactive pre-annotation: Label Studio's Auto-Annotation sends the annotator's partial result as
``params.context`` of a /predict request, and the answer must come at once.

The answer is one prediction from the serving model version (no training, no new version), holding per control:

- spans: the annotator's spans as sent, with their region ids, so the editor replaces them instead of adding
  twins; a copy of each marked string at every other occurrence in the document, with the label most often
  given to that string in the context (whole-word and CJK rules of the cold-start matcher, longest string
  first, never overlapping a marked span); and the model's own spans that overlap none of these;
- choices: the annotator's choice where the context has one, else the one in the annotator's draft of the task
  (Label Studio sends the requesting user's drafts with the task), echoed with its id so it stays; never the
  model's. The editor's context holds only the regions drawn with the label just used, and a click on a Choices
  value sends an empty context: a model choice in that answer would be suggested again against the click. The
  model's choices reach the annotator through the task's pre-annotation.

Scores: the annotator's spans and choices and the copies score 1.0 (the annotator decided that string); the
model's spans keep the model's score; the prediction's score is the model's over the span controls (0.0 when
the config has none or the model has not answered). Copies and model spans carry ids derived from control,
offsets and labels (``results.region_id``): answering the same region twice, as Auto-Annotation does after
every region drawn, gives it the same id, and the editor replaces it.

At once: the model's spans come from the prediction cache when the backend has predicted the document before
(the task's pre-annotation went through it); otherwise the answer waits at most ``MODEL_WAIT_S`` for the model,
then goes without its spans (``model_pending``) while the prediction finishes in the background, so the next
mark on the document gets them.

CJK text has no spaces, so a marked string that starts or ends with a CJK character matches without a word
boundary there. "Not inside a longer word" then means: not inside an occurrence of a longer marked string,
and not strictly inside a longer span the model predicts for that control (the model's span stays).

A request is interactive when ``params.context.result`` is a list, even an empty one; a null context, or one
without ``result``, asks for the plain prediction. Context items without ``from_name`` (relations, results of
no control) are no region of this labeling config and are ignored. Every other malformed item is a BadRequest
naming the item and the problem. Flask-free.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from . import ids
from .cache import PredictionCache
from .errors import BadRequest
from .models.sklearn_models import cjk_end, compile_lexicon
from .registry import ProjectModel
from .results import choice_item, span_item, value_of
from .schema import Control, TaskSpec

log = logging.getLogger(__name__)

# how long an answer waits for the model's spans of a document the backend has not predicted yet; past it the
# answer goes without them and the prediction finishes in the background, so the next mark has them (cached)
MODEL_WAIT_S = 0.05
COPY_SCORE = 1.0  # a copy repeats the annotator's own decision on the same string in the same document
MARK_SCORE = 1.0  # the annotator's regions, echoed


@dataclass(frozen=True)
class Mark:
    """One region of the annotator's partial result, checked against the labeling config."""

    index: int  # position in context.result, for messages
    control: Control
    item_id: str | None
    labels: tuple[str, ...] = ()  # spans
    start: int = 0
    end: int = 0
    text: str | None = None  # value.text as sent (spans); checked against the document
    choices: tuple[str, ...] = ()  # choices


def _where(i: int, key: str = "") -> str:
    return f"params.context.result[{i}]" + (f".{key}" if key else "")


def _strings(raw: object, where: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
        raise BadRequest(f"{where} must be a non-empty list of strings, got {ids.shown(raw)}")
    unknown = [x for x in raw if x not in allowed]
    if unknown:
        raise BadRequest(f"{where} has {what} {ids.shown(unknown)} that the labeling config does not define; "
                         f"expected some of {ids.shown(list(allowed), 200)}")
    return tuple(raw)


def _mark(i: int, item: object, spec: TaskSpec) -> Mark | None:
    if not isinstance(item, Mapping):
        raise BadRequest(f"{_where(i)} must be an object, got {type(item).__name__}")
    name = item.get("from_name")
    if name is None:
        return None  # a relation or another result of no control: nothing to copy
    controls = {c.name: c for c in spec.controls}
    if not isinstance(name, str) or name not in controls:
        raise BadRequest(f"{_where(i, 'from_name')} {ids.shown(name)} is no control of the labeling config; "
                         f"controls: {ids.shown(sorted(controls), 200)}")
    control = controls[name]
    if item.get("to_name") != control.to_name:
        raise BadRequest(f"{_where(i, 'to_name')} is {ids.shown(item.get('to_name'))}, but control {ids.shown(name)} "
                         f"labels {ids.shown(control.to_name)}")
    if item.get("type") != control.type:
        raise BadRequest(f"{_where(i, 'type')} is {ids.shown(item.get('type'))}, but control {ids.shown(name)} "
                         f"is of type {ids.shown(control.type)}")
    value = item.get("value")
    if not isinstance(value, Mapping):
        raise BadRequest(f"{_where(i, 'value')} must be an object, got {type(value).__name__}")
    rid = item.get("id")
    if rid is not None and not (isinstance(rid, str) and 0 < len(rid) <= 64):
        raise BadRequest(f"{_where(i, 'id')} must be a region id string (1 to 64 characters), got {ids.shown(rid)}")
    if control.kind == "choices":
        chosen = _strings(value.get("choices"), _where(i, "value.choices"), control.labels, "choices")
        if len(chosen) > 1 and not control.multi:
            raise BadRequest(f"{_where(i, 'value.choices')} has {len(chosen)} choices, but control {ids.shown(name)} "
                             "takes one")
        return Mark(i, control, rid, choices=chosen)
    start, end = value.get("start"), value.get("end")
    for key, v in (("start", start), ("end", end)):
        if type(v) is not int:
            raise BadRequest(f"{_where(i, 'value.' + key)} must be an integer character offset, got {ids.shown(v)}")
    labels = _strings(value.get(control.type, value.get("labels")), _where(i, f"value.{control.type}"),
                      control.labels, "labels")
    text = value.get("text")
    if text is not None and not isinstance(text, str):
        raise BadRequest(f"{_where(i, 'value.text')} must be a string, got {type(text).__name__}")
    return Mark(i, control, rid, labels=labels, start=start, end=end, text=text)


def read_context(params: object, spec: TaskSpec) -> tuple[Mark, ...] | None:
    """The annotator's regions in a /predict body's ``params.context``, checked against the labeling config
    (offsets are checked against the text later, in :func:`answer`); None for a plain prediction."""
    if params is None:
        return None
    if not isinstance(params, Mapping):
        raise BadRequest(f"'params' must be an object, got {type(params).__name__}")
    context = params.get("context")
    if context is None:
        return None
    if not isinstance(context, Mapping):
        raise BadRequest(f"params.context must be an object or null, got {type(context).__name__}")
    result = context.get("result")
    if result is None:
        return None
    if not isinstance(result, list):
        raise BadRequest(f"params.context.result must be a list of result items, got {type(result).__name__}")
    return tuple(m for i, item in enumerate(result) if (m := _mark(i, item, spec)) is not None)


def check_offsets(marks: Sequence[Mark], data: Mapping) -> None:
    """Every span lies inside its text, and the text it quotes is the document's text at those offsets."""
    for m in marks:
        if m.control.kind != "spans":
            continue
        text = data[m.control.value_field]
        if not 0 <= m.start < m.end <= len(text):
            raise BadRequest(f"{_where(m.index, 'value')} start {m.start} / end {m.end} are outside the text "
                             f"{ids.shown(m.control.value_field)} ({len(text)} characters) or empty")
        if m.text is not None and m.text != text[m.start:m.end]:
            raise BadRequest(f"{_where(m.index, 'value.text')} is {ids.shown(m.text)}, but the text at "
                             f"[{m.start}, {m.end}) is {ids.shown(text[m.start:m.end])}")


def draft_choices(task: Mapping, spec: TaskSpec) -> dict[str, Mark]:
    """Per choices control, the annotator's choice in the newest of the task's drafts that has one.

    Drafts are Label Studio's own autosaves, not request input: an item that does not fit the config is skipped.
    """
    drafts = task.get("drafts")
    out: dict[str, Mark] = {}
    if not isinstance(drafts, list):
        return out
    dated = [d for d in drafts if isinstance(d, Mapping) and isinstance(d.get("result"), list)]
    dated.sort(key=lambda d: str(d.get("updated_at") or d.get("created_at") or ""))
    for draft in dated:  # oldest first: a newer draft overwrites
        for i, item in enumerate(draft["result"]):
            if isinstance(item, Mapping) and item.get("type") == "choices":
                try:
                    m = _mark(i, item, spec)
                except BadRequest:
                    continue
                if m is not None and m.control.kind == "choices":
                    out[m.control.name] = m
    return out


class Cover:
    """The characters a set of spans covers: "does [s, e) overlap any of them" in time linear in e - s, whatever
    their number (an editor group can hold every region of a label)."""

    def __init__(self, n: int, spans: Sequence[tuple[int, int]]):
        self.chars = bytearray(n)
        end = 0
        for a, b in sorted(spans):  # merged as they go: each character written once
            a = max(a, end)
            if b > a:
                self.chars[a:b] = b"\x01" * (b - a)
                end = b

    def overlaps(self, s: int, e: int) -> bool:
        return self.chars.find(1, s, e) >= 0


def copies(text: str, marks: Sequence[Mark], model_spans: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int, tuple[str, ...]]]:
    """``(start, end, labels)`` of every other occurrence of the marked strings of one control in ``text``.

    Case-insensitive, longest string first, whole-word at Latin word-character ends; an occurrence overlapping a
    marked span is none. A string with a CJK end is not copied strictly inside a longer ``model_spans`` span.
    """
    votes: dict[str, Counter] = {}
    for m in marks:
        surface = text[m.start:m.end].strip()
        if surface:
            votes.setdefault(surface.casefold(), Counter())[m.labels] += 1
    if not votes:
        return []
    pattern = compile_lexicon(votes)
    marked = Cover(len(text), [(m.start, m.end) for m in marks])
    out = []
    for hit in pattern.finditer(text):
        s, e = hit.span()
        key = hit.group(0).casefold()
        if key not in votes or marked.overlaps(s, e):
            continue
        if cjk_end(hit.group(0)) and any(a <= s and e <= b and b - a > e - s for a, b in model_spans):
            continue  # part of a longer word the model sees
        out.append((s, e, votes[key].most_common(1)[0][0]))
    return out


def _span_of(item: Mapping) -> tuple[int, int]:
    v = value_of(item)
    return v.get("start", 0), v.get("end", 0)


def span_view(pm: ProjectModel) -> ProjectModel:
    """The span controls of ``pm`` alone, sharing its models, lock and cache keys: the model's choices are not
    answered, so they are not computed either (a document-level encoder pass would be most of the time)."""
    spec = TaskSpec(controls=pm.spec.span_controls, config_hash=pm.spec.config_hash)
    return ProjectModel(spec, pm.version, {c.name: pm.models[c.name] for c in spec.controls}, meta=pm.meta, lock=pm.lock,
                        online_offset=pm.online_offset)


def model_prediction(pm: ProjectModel, data: Mapping, cache: PredictionCache | None, wait_s: float = MODEL_WAIT_S) -> dict | None:
    """The model's prediction over the span controls of ``pm`` for the task ``data``, or None when it takes longer
    than ``wait_s`` (a document not predicted before, a large model): the prediction then completes in the
    background and lands in ``cache``."""
    view = span_view(pm)
    texts = {f: [data[f]] for f in view.spec.value_fields}
    if not view.spec.controls:
        return None
    done = threading.Event()
    found: list[dict] = []

    def run() -> None:
        try:
            found.append(view.to_results(texts, cache)[0])
        except Exception:  # the request has its answer already; a failing model is logged, never raised here
            log.exception("interactive prediction of project version %s failed", ids.shown(pm.version))
        finally:
            done.set()

    threading.Thread(target=run, name="goldloop-interactive", daemon=True).start()
    return found[0] if done.wait(wait_s) and found else None


def answer(pm: ProjectModel, tasks: list, marks: Sequence[Mark], cache: PredictionCache | None,
           problem: Callable[[object], tuple[str, str] | None]) -> dict:
    """The /predict answer to an interactive request: one prediction for its one task, marked ``interactive``.

    ``problem`` says why a task cannot be predicted (the route's check); here that is a BadRequest, since the
    annotator's offsets cannot be checked without the text.
    """
    if len(tasks) != 1:
        raise BadRequest(f"an interactive request (one with params.context.result) carries one task, got {len(tasks)}")
    found = problem(tasks[0])
    if found:
        raise BadRequest(f"the task of the interactive request cannot be annotated: {found[1]}")
    data = tasks[0]["data"]
    check_offsets(marks, data)
    model = model_prediction(pm, data, cache)
    by_control: dict[str, list[Mark]] = {name: [m] for name, m in draft_choices(tasks[0], pm.spec).items()}
    for m in marks:
        if m.control.kind == "choices":
            by_control.pop(m.control.name, None)  # the context's choice wins over the draft's
    for m in marks:
        by_control.setdefault(m.control.name, []).append(m)
    result: list[dict] = []
    for control in pm.spec.controls:
        mine = by_control.get(control.name)
        if control.kind == "choices":
            if mine:  # one choices region per control; the last one stands
                result.append(choice_item(control, list(mine[-1].choices), MARK_SCORE, item_id=mine[-1].item_id))
            continue
        own = [r for r in model["result"] if r.get("from_name") == control.name] if model else []
        if not mine:
            result += own
            continue
        text = data[control.value_field]
        copied = copies(text, mine, [_span_of(r) for r in own])
        result += [span_item(control, m.start, m.end, m.labels, text, MARK_SCORE, item_id=m.item_id) for m in mine]
        result += [span_item(control, s, e, labels, text, COPY_SCORE) for s, e, labels in copied]
        taken = Cover(len(text), [(m.start, m.end) for m in mine] + [(s, e) for s, e, _ in copied])
        result += [r for r in own if not taken.overlaps(*_span_of(r))]
    item = {"result": result, "score": model["score"] if model else 0.0, "model_version": pm.version, "interactive": True}
    if model is None and pm.spec.span_controls:
        item["model_pending"] = True  # the model's spans come with the next answer on this document
    return {"results": [item], "model_version": pm.version}
