"""Label Studio task → one resolved document record: checked labels and offsets, conflict resolution,
provenance (origin), the manifest's counters and the recorded problems."""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from ml_backend.results import result_key
from ml_backend.schema import Control, TaskSpec
from ml_backend.splits import split_of

from ..agreement import Resolution, Vote, resolve
from .atomic import HashingFile

ORIGINS = ("prediction_accepted", "human_changed", "human")
MAX_PROBLEMS_IN_MANIFEST = 1000
REVIEW_RULE = (
    "only_reviewed keeps an annotation when it has a review with accepted=true (`reviews` list, Label Studio "
    "Enterprise), `review_result` 'accepted'/{'accepted': true}, or ground_truth=true (the open-source "
    "reviewer mark); tasks with no such annotation are skipped and counted"
)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")  # unpaired UTF-16 halves (a JSON "\\ud800" escape): not UTF-8


class Problems:
    """Recorded problems: counts by kind, the first entries for the manifest, all of them in problems.jsonl."""

    def __init__(self, sink: HashingFile):
        self.counts: Counter = Counter()
        self.items: list[dict] = []
        self._sink = sink

    def add(self, kind: str, task_id: Any, detail: str, annotation_id: Any = None, action: str = "dropped") -> None:
        """Record one problem."""
        entry = {"task_id": task_id, "annotation_id": annotation_id, "kind": kind, "action": action, "detail": detail}
        self.counts[kind] += 1
        if len(self.items) < MAX_PROBLEMS_IN_MANIFEST:
            self.items.append(entry)
        self._sink.write_json(entry)


@dataclass
class Stats:
    """Counters that end up in the manifest."""

    tasks_seen: int = 0
    documents: int = 0
    skipped: Counter = field(default_factory=Counter)
    annotations_counted: int = 0
    annotations_cancelled: int = 0
    per_split: Counter = field(default_factory=Counter)
    spans: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(Counter)))  # split->ctrl->label
    choices: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(Counter)))
    origin: Counter = field(default_factory=Counter)
    model_versions: Counter = field(default_factory=Counter)
    annotators: Counter = field(default_factory=Counter)
    overlaps_dropped: Counter = field(default_factory=Counter)
    whitespace_trimmed: int = 0
    relocated: int = 0
    conflicts: int = 0
    gt_fallbacks: int = 0

    def count(self, rec: dict, votes: Sequence[Vote], who: Sequence[Any]) -> None:
        """Count one exported document."""
        split = rec["split"]
        self.documents += 1
        self.per_split[split] += 1
        self.annotations_counted += len(votes)
        self.origin[rec["origin"]] += 1
        if rec["model_version"] is not None:
            self.model_versions[rec["model_version"]] += 1
        for w in who:
            self.annotators[str(w)] += 1
        for sp in rec["spans"]:
            self.spans[split][sp["from_name"]][sp["label"]] += 1
        for name, labels in rec["choices"].items():
            for lbl in labels:
                self.choices[split][name][lbl] += 1


class Parsed(NamedTuple):
    """One exported document: its record, and per usable annotation what agreement needs."""

    record: dict
    annotators: list  # one per vote
    choice_votes: list[Mapping[str, tuple[str, ...]]]
    span_votes: list[dict[str, list[tuple[int, int, str]]]]  # empty unless two annotations or more
    conflict: dict | None  # the conflicts.jsonl entry when the annotations disagree
    prediction: list | None = None  # the result of the final annotation's parent prediction (the preference export)


def _timestamp(value: Any) -> float:
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _earliest(stamps: list[str]) -> str | None:
    return stamps[0] if len(stamps) == 1 else (min(stamps, key=_timestamp) if stamps else None)


def _latest(stamps: list[str]) -> str | None:
    return stamps[0] if len(stamps) == 1 else (max(stamps, key=_timestamp) if stamps else None)


def _annotator(ann: Mapping) -> Any:
    who = ann.get("completed_by")
    if isinstance(who, Mapping):
        return who.get("id", who.get("email"))
    return who


def _accepted(ann: Mapping) -> bool:
    """Whether an annotation counts as reviewed and accepted (see REVIEW_RULE)."""
    if ann.get("ground_truth") is True:
        return True
    for rev in ann.get("reviews") or ():
        if isinstance(rev, Mapping) and rev.get("accepted") is True:
            return True
    rr = ann.get("review_result")
    if rr == "accepted" or (isinstance(rr, Mapping) and rr.get("accepted") is True):
        return True
    return False


def _locate(text: str, value: Mapping) -> tuple[int, int, str | None] | str:
    """Checked (start, end, note) of a span value, relocated to the nearest exact text match when off; else a problem kind."""
    start, end, vt = value.get("start"), value.get("end"), value.get("text")
    ints = isinstance(start, int) and isinstance(end, int) and not isinstance(start, bool)
    in_range = ints and 0 <= start < end <= len(text)
    if in_range and (not isinstance(vt, str) or text[start:end] == vt):
        return start, end, None
    if isinstance(vt, str) and vt:
        anchor = start if ints else 0
        best = -1
        pos = text.find(vt)
        while pos >= 0:
            if best < 0 or abs(pos - anchor) < abs(best - anchor):
                best = pos
            if pos > anchor:
                break
            pos = text.find(vt, pos + 1)
        if best >= 0:
            return best, best + len(vt), "relocated"
    return "offset_mismatch" if in_range else "offset_out_of_range"


def _span_order(span: tuple[str, int, int, str]) -> tuple[int, int, str, str]:
    """Sort key of a (from_name, start, end, label) span: by position, then label, then control."""
    return span[1], span[2], span[3], span[0]


class Parser:
    """Turns one Label Studio task into one resolved document record (or None when skipped)."""

    def __init__(self, spec: TaskSpec, resolve_policy: str, only_reviewed: bool, problems: Problems, stats: Stats):
        self.spec = spec
        self.controls = {c.name: c for c in spec.controls}
        self.multi = {c.name: c.multi for c in spec.choice_controls}
        self.primary = (spec.span_controls or spec.controls)[0].value_field
        self.policy = resolve_policy
        self.only_reviewed = only_reviewed
        self.problems = problems
        self.stats = stats

    # ------------------------------------------------------------------------------ one annotation
    def vote(self, task_id: Any, ann: Mapping, data: Mapping) -> tuple[Vote | None, Any]:
        """One annotation as a Vote with checked labels and offsets (None when unusable)."""
        aid = ann.get("id")
        result = ann.get("result")
        if not isinstance(result, list):
            self.problems.add("bad_result", task_id, f"annotation result must be a list, got {type(result).__name__}", aid)
            return None, None
        choices: dict[str, list[str]] = {}
        spans: set[tuple[str, int, int, str]] = set()
        for r in result:
            if type(r) is not dict and not isinstance(r, Mapping):  # (the type check first: isinstance on an ABC is slow)
                self.problems.add("bad_result", task_id, f"result item must be an object, got {type(r).__name__}", aid)
                continue
            name = r.get("from_name")
            ctrl = self.controls.get(name)
            value = r.get("value")
            if type(value) is not dict and not isinstance(value, Mapping):
                value = {}
            if ctrl is None:
                self.problems.add(
                    "unknown_control", task_id,
                    f"result from_name {name!r} (type {r.get('type')!r}) is not a control of the labeling config; "
                    f"expected one of {sorted(self.controls)}", aid,
                )
                continue
            if ctrl.kind == "choices":
                self._choice(task_id, aid, ctrl, value, choices)
            else:
                self._span(task_id, aid, ctrl, value, data, spans)
        order = (_timestamp(ann.get("updated_at")) or _timestamp(ann.get("created_at")), aid if isinstance(aid, int) else 0)
        vote = Vote(
            annotation_id=aid,
            order=order,
            ground_truth=ann.get("ground_truth") is True,
            choices={k: tuple(v) for k, v in choices.items()},
            spans=frozenset(spans),
        )
        return vote, _annotator(ann)

    def _choice(self, task_id: Any, aid: Any, ctrl: Control, value: Mapping, out: dict) -> None:
        got = value.get("choices")
        if not isinstance(got, list):
            self.problems.add("bad_result", task_id, f"{ctrl.name}: value.choices must be a list, got {got!r}", aid)
            return
        kept = []
        for lbl in got:
            if lbl in ctrl.labels:
                if lbl not in kept:
                    kept.append(lbl)
            else:
                self.problems.add(
                    "unknown_label", task_id, f"{ctrl.name}: choice {lbl!r} is not one of {list(ctrl.labels)}", aid
                )
        if not ctrl.multi and len(kept) > 1:
            self.problems.add(
                "too_many_choices", task_id,
                f"{ctrl.name} is single-choice but got {kept}; kept {kept[0]!r}", aid, action="kept first",
            )
            kept = kept[:1]
        if kept:
            out[ctrl.name] = sorted(set(out.get(ctrl.name, [])) | set(kept)) if ctrl.multi else kept

    def _span(self, task_id: Any, aid: Any, ctrl: Control, value: Mapping, data: Mapping, out: set) -> None:
        text = data.get(ctrl.value_field)
        if not isinstance(text, str):
            self.problems.add("missing_text", task_id, f"{ctrl.name}: data.{ctrl.value_field} is not a string", aid)
            return
        labels = value[ctrl.type] if ctrl.type in value else value.get("labels")
        # the common case, checked in one go: int offsets in range matching the text, no edge whitespace, known labels
        start, end, vt = value.get("start"), value.get("end"), value.get("text")
        if (
            type(start) is int and type(end) is int and 0 <= start < end <= len(text)
            and (vt is None or text[start:end] == vt) and not text[start].isspace() and not text[end - 1].isspace()
            and type(labels) is list and labels and all(lbl in ctrl.labels for lbl in labels)
        ):
            name = ctrl.name
            for lbl in labels:
                out.add((name, start, end, lbl))
            return
        if not isinstance(labels, list) or not labels:
            self.problems.add("bad_result", task_id, f"{ctrl.name}: span has no labels list: {dict(value)!r}", aid)
            return
        bounds = self._repaired_bounds(task_id, aid, ctrl, value, text)
        if bounds is None:
            return
        s, e = bounds
        for lbl in labels:
            if lbl in ctrl.labels:
                out.add((ctrl.name, s, e, lbl))
            else:
                self.problems.add(
                    "unknown_label", task_id, f"{ctrl.name}: span label {lbl!r} is not one of {list(ctrl.labels)}", aid
                )

    def _repaired_bounds(self, task_id: Any, aid: Any, ctrl: Control, value: Mapping,
                         text: str) -> tuple[int, int] | None:
        """A span's offsets relocated onto its text and trimmed of edge whitespace (None: unusable, recorded)."""
        loc = _locate(text, value)
        if isinstance(loc, str):
            self.problems.add(
                loc, task_id,
                f"{ctrl.name}: span [{value.get('start')}, {value.get('end')}) text {value.get('text')!r} "
                f"does not match the document (length {len(text)}) and cannot be relocated", aid,
            )
            return None
        start, end, note = loc
        if note == "relocated":
            self.stats.relocated += 1
            self.problems.add(
                "offset_relocated", task_id,
                f"{ctrl.name}: span [{value.get('start')}, {value.get('end')}) text {value.get('text')!r} "
                f"moved to [{start}, {end})", aid, action="relocated",
            )
        s, e = start, end
        if text[s].isspace() or text[e - 1].isspace():
            while s < e and text[s].isspace():
                s += 1
            while e > s and text[e - 1].isspace():
                e -= 1
        if s == e:
            self.problems.add("empty_span", task_id, f"{ctrl.name}: span [{start}, {end}) is only whitespace", aid)
            return None
        if (s, e) != (start, end):
            self.stats.whitespace_trimmed += 1
        return s, e

    # ------------------------------------------------------------------------------------ one task
    def parse(self, task: Any) -> Parsed | None:
        """Resolved record + per-annotation (annotators, choices, spans) for agreement, or None when skipped."""
        checked = self._checked_task(task)
        if checked is None:
            return None
        tid, data, text = checked
        live = self._live_annotations(task)
        if not live:
            return None
        votes, who = [], []
        for ann in live:
            v, w = self.vote(tid, ann, data)
            if v is not None:
                votes.append(v)
                who.append(w)
        if not votes:
            self.stats.skipped["no_usable_annotations"] += 1
            self.problems.add("no_usable_annotations", tid, "every annotation was unusable", action="skipped")
            return None
        res = resolve(votes, self.policy, self.multi)
        if res.fallback:
            self.stats.gt_fallbacks += 1
            self.problems.add(
                "no_ground_truth", tid, "no annotation is marked ground_truth; used the latest",
                res.final.annotation_id, action="fell back to latest",
            )
        rec, prediction = self._record(task, text, data, live, votes, who, res)
        self.stats.count(rec, votes, who)
        conflict = self._conflict(rec, votes, who) if res.conflict else None
        agree_spans = [  # (agreement needs two annotations or more)
            {c.name: [(s, e, lbl) for n, s, e, lbl in v.spans if n == c.name] for c in self.spec.span_controls}
            for v in votes
        ] if len(votes) > 1 else []
        return Parsed(rec, who, [v.choices for v in votes], agree_spans, conflict, prediction)

    def _checked_task(self, task: Any) -> tuple[int, Mapping, str] | None:
        """The task's id, data and primary text, or None (skipped and recorded) when the task is malformed."""
        st = self.stats
        if not isinstance(task, Mapping):
            st.skipped["bad_task"] += 1
            self.problems.add("bad_task", None, f"task must be an object, got {type(task).__name__}", action="skipped")
            return None
        tid = task.get("id")
        if not isinstance(tid, int) or isinstance(tid, bool):
            st.skipped["bad_task"] += 1
            self.problems.add("bad_task", tid, f"task id must be an integer, got {tid!r}", action="skipped")
            return None
        data = task.get("data")
        text = data.get(self.primary) if isinstance(data, Mapping) else None
        if not isinstance(text, str):
            st.skipped["missing_text"] += 1
            self.problems.add("missing_text", tid, f"data.{self.primary} must be a string", action="skipped")
            return None
        if not text.isascii() and _SURROGATE_RE.search(text):
            st.skipped["invalid_text"] += 1
            self.problems.add(
                "invalid_text", tid, f"data.{self.primary} holds an unpaired surrogate (\\ud800-\\udfff), which no "
                "UTF-8 file can store", action="skipped",
            )
            return None
        return tid, data, text

    def _live_annotations(self, task: Mapping) -> list[Mapping]:
        """The annotations that count (not cancelled; accepted when only_reviewed); empty: skipped, counted."""
        st = self.stats
        anns = [a for a in (task.get("annotations") or ()) if isinstance(a, Mapping)]
        live = [a for a in anns if not a.get("was_cancelled")]
        st.annotations_cancelled += len(anns) - len(live)
        if not live:
            st.skipped["all_cancelled" if anns else "no_annotations"] += 1
            return []
        if self.only_reviewed:
            live = [a for a in live if _accepted(a)]
            if not live:
                st.skipped["not_reviewed"] += 1
        return live

    def _record(self, task: Mapping, text: str, data: Mapping, live: list[Mapping], votes: list[Vote],
                who: list[Any], res: Resolution) -> tuple[dict, list | None]:
        """The data.jsonl record of a resolved task, and the result of its final annotation's parent prediction."""
        tid = task["id"]
        final_ann = next(a for a in live if a.get("id") == res.final.annotation_id)
        origin, model_version, prediction = self._origin(tid, task, final_ann)
        created = [a.get("created_at") for a in live if isinstance(a.get("created_at"), str)]
        updated = [a.get("updated_at") for a in live if isinstance(a.get("updated_at"), str)]
        return {
            "id": tid,
            "text": text,
            "data": dict(data),
            "split": split_of(tid),
            "spans": [
                {"start": s, "end": e, "label": lbl, "text": data[self.controls[n].value_field][s:e], "from_name": n}
                for n, s, e, lbl in sorted(res.spans, key=_span_order)
            ],
            "choices": {c.name: list(res.choices.get(c.name, [])) for c in self.spec.choice_controls},
            "annotators": list(dict.fromkeys(who)),
            "annotation_ids": [v.annotation_id for v in votes],
            "created_at": _earliest(created),
            "updated_at": _latest(updated),
            "origin": origin,
            "model_version": model_version,
        }, prediction

    def _conflict(self, rec: dict, votes: list[Vote], who: list[Any]) -> dict:
        """The conflicts.jsonl entry of a document whose annotations disagree."""
        self.stats.conflicts += 1
        return {
            "id": rec["id"],
            "split": rec["split"],
            "annotations": [
                {
                    "annotation_id": v.annotation_id,
                    "annotator": w,
                    "choices": {k: list(x) for k, x in v.choices.items()},
                    "spans": [list(s) for s in sorted(v.spans, key=_span_order)],
                }
                for v, w in zip(votes, who)
            ],
            "resolved": {
                "choices": rec["choices"],
                "spans": [[s["from_name"], s["start"], s["end"], s["label"]] for s in rec["spans"]],
            },
            "policy": self.policy,
        }

    def _origin(self, tid: Any, task: Mapping, ann: Mapping) -> tuple[str, str | None, list | None]:
        """The final annotation's origin (accepted a pre-annotation, changed it, or had none), model version and
        the parent prediction's result."""
        parent = ann.get("parent_prediction")
        if parent is None:
            return "human", None, None
        pred = next(
            (p for p in (task.get("predictions") or ()) if isinstance(p, Mapping) and p.get("id") == parent), None
        )
        if pred is None:
            self.problems.add(
                "parent_prediction_missing", tid,
                f"parent_prediction {parent!r} is not among the task's predictions; origin counted as human_changed",
                ann.get("id"), action="kept",
            )
            return "human_changed", None, None
        mv = pred.get("model_version")
        mv = None if mv is None else str(mv)
        same = result_key(ann.get("result")) == result_key(pred.get("result"))
        result = pred.get("result")
        return ("prediction_accepted" if same else "human_changed"), mv, (result if isinstance(result, list) else None)
