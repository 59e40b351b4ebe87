"""Gold dataset writers + manifest: the only code that writes exports/.

One streaming pass over Label Studio tasks writes every format at once into a temp dir inside
``<out_root>/<slug>/``; the dir is renamed to its version name only when everything is written and
fsynced, so a killed export never leaves a partial version. Layout: see exports/README.md.
"""
from __future__ import annotations

import bisect
import csv
import hashlib
import json
import os
import pickle
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from ml_backend.schema import Control, TaskSpec
from ml_backend.splits import SPLITS, split_of

from .agreement import RESOLVE_POLICIES, AgreementAccumulator, Vote, resolve
from .errors import ExportError

FORMATS = ("jsonl", "conll", "hf", "csv")
ORIGINS = ("prediction_accepted", "human_changed", "human")
MAX_PROBLEMS_IN_MANIFEST = 1000
HF_BATCH_ROWS = 2000  # a Parquet row group holds at most this many documents ...
HF_BATCH_CHARS = 8_000_000  # ... or about this many characters of text, whichever comes first
PARALLEL_MIN_DOCS = 20_000  # larger exports build CoNLL/Parquet in helper processes (measured break-even ~10k)
VERSION_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
TMP_PREFIX = ".tmp-"
DOCSTART = "-DOCSTART- -X- -X- O"
RESERVED_HF_COLUMNS = {"id", "text", "tokens", "ner_tags", "spans"}
OVERLAP_RULE = (
    "BIO formats (CoNLL, hf ner_tags) cannot hold overlapping or nested spans: per span control the longer "
    "span is kept, ties go to the earlier start (then label order); data.jsonl keeps every span"
)
RESOLUTION_RULES = {
    "majority": (
        "single choice: the most voted label, ties go to the label of the most recently updated annotation; "
        "multiple choice and spans: an item is kept if more than half of the annotations have it exactly, "
        "exactly half keeps it only if the most recent annotation has it; annotations that leave a choice "
        "control empty abstain for that control"
    ),
    "latest": "the most recently updated annotation (updated_at, then created_at, then annotation id)",
    "ground-truth": "the annotation marked ground_truth (most recent if several); none marked: latest, recorded",
}
REVIEW_RULE = (
    "only_reviewed keeps an annotation when it has a review with accepted=true (`reviews` list, Label Studio "
    "Enterprise), `review_result` 'accepted'/{'accepted': true}, or ground_truth=true (the open-source "
    "reviewer mark); tasks with no such annotation are skipped and counted"
)
_CJK_CLASS = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0002fa1f"
)
_TOKEN_RE = re.compile(f"[{_CJK_CLASS}]|[^\\s{_CJK_CLASS}]+")
_CJK_RE = re.compile(f"[{_CJK_CLASS}]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")  # unpaired UTF-16 halves (a JSON "\\ud800" escape): not UTF-8
_SENT_POINT = re.compile(r"[.!?]\s+")
_SENT_POINT_CJK = re.compile(r"[.!?]\s+|[。！？]\s*")


@dataclass
class ProjectInfo:
    """The Label Studio project being exported."""

    id: int
    slug: str
    title: str
    label_config: str


@dataclass
class ExportResult:
    """What an export did: the version written (or the unchanged latest one) and its manifest."""

    version_dir: Path | None
    version: str | None
    changed: bool
    manifest: dict
    message: str


# ------------------------------------------------------------------------------------- tokenisation
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


def select_non_overlapping(spans: Iterable[tuple[int, int, str]]) -> tuple[list[tuple[int, int, str]], int]:
    """Keep the longer of overlapping spans (ties: earlier start, then label); return kept and dropped count."""
    ordered = sorted(set(spans))
    if all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:])):
        return ordered, 0
    kept: list[tuple[int, int, str]] = []
    dropped = 0
    for s in sorted(ordered, key=lambda x: (-(x[1] - x[0]), x[0], x[2])):
        if any(s[0] < k[1] and k[0] < s[1] for k in kept):
            dropped += 1
        else:
            kept.append(s)
    kept.sort()
    return kept, dropped


def bio_names(labels: Sequence[str]) -> list[str]:
    """BIO tag names of a span control: O, then B-/I- per label in schema order (I- ids are even)."""
    names = ["O"]
    for lbl in labels:
        names += [f"B-{lbl}", f"I-{lbl}"]
    return names


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


# ------------------------------------------------------------------------------------- reading back
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


# ------------------------------------------------------------------------------------------ writing
class _HashingFile:
    """A text sink writing UTF-8 bytes to a file while computing their sha256."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "wb", buffering=1 << 20)
        self._h = hashlib.sha256()
        self.bytes = 0

    def write(self, s: str) -> int:
        self.write_bytes(s.encode("utf-8"))
        return len(s)

    def write_bytes(self, b: bytes) -> None:
        self._h.update(b)
        self._f.write(b)
        self.bytes += len(b)

    def write_json(self, obj: Any) -> None:
        """Write `obj` as one JSON Lines record."""
        self.write_bytes(_json_line(obj))

    def close(self) -> str:
        """Flush, fsync, close; return the hex sha256."""
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        return self._h.hexdigest()


def _close_quietly(files: Iterable[_HashingFile]) -> None:
    """Close files on an abort path, where a failing close must not hide the original error."""
    for f in files:
        try:
            f.close()
        except OSError:
            pass


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _json_line(obj: Any) -> bytes:
    """`obj` as one compact JSON Lines record in UTF-8, non-ASCII kept.

    orjson writes it (ten times faster than the standard library; the JSON encoding was a fifth of a large
    export's own CPU time); a value orjson cannot hold (an integer beyond 64 bits, a non-string key, an
    unpaired surrogate) falls back to the standard library, with \\u escapes where UTF-8 cannot hold a string.
    Both give the same JSON values; orjson writes small floats without an exponent (0.00001, not 1e-05) and
    NaN as null (the standard library writes NaN, which is not JSON).
    """
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        line = _dumps(obj) + "\n"
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate in some other field: keep it as a \u escape
        return (json.dumps(obj, separators=(",", ":")) + "\n").encode("ascii")


class _Problems:
    """Recorded problems: counts by kind, the first entries for the manifest, all of them in problems.jsonl."""

    def __init__(self, sink: _HashingFile):
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


# ------------------------------------------------------------------------------------ task parsing
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


@dataclass
class _Stats:
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


class _Parser:
    """Turns one Label Studio task into one resolved document record (or None when skipped)."""

    def __init__(self, spec: TaskSpec, resolve_policy: str, only_reviewed: bool, problems: _Problems, stats: _Stats):
        self.spec = spec
        self.controls = {c.name: c for c in spec.controls}
        self.multi = {c.name: c.multi for c in spec.choice_controls}
        self.primary = (spec.span_controls or spec.controls)[0].value_field
        self.policy = resolve_policy
        self.only_reviewed = only_reviewed
        self.problems = problems
        self.stats = stats

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
        loc = _locate(text, value)
        if isinstance(loc, str):
            self.problems.add(
                loc, task_id,
                f"{ctrl.name}: span [{value.get('start')}, {value.get('end')}) text {value.get('text')!r} "
                f"does not match the document (length {len(text)}) and cannot be relocated", aid,
            )
            return
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
            return
        if (s, e) != (start, end):
            self.stats.whitespace_trimmed += 1
        for lbl in labels:
            if lbl in ctrl.labels:
                out.add((ctrl.name, s, e, lbl))
            else:
                self.problems.add(
                    "unknown_label", task_id, f"{ctrl.name}: span label {lbl!r} is not one of {list(ctrl.labels)}", aid
                )

    def parse(self, task: Any) -> tuple[dict, list, list, list, Any] | None:
        """Resolved record + per-annotation (annotators, choices, spans) for agreement, or None when skipped."""
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
        anns = [a for a in (task.get("annotations") or ()) if isinstance(a, Mapping)]
        live = [a for a in anns if not a.get("was_cancelled")]
        st.annotations_cancelled += len(anns) - len(live)
        if not live:
            st.skipped["all_cancelled" if anns else "no_annotations"] += 1
            return None
        if self.only_reviewed:
            live = [a for a in live if _accepted(a)]
            if not live:
                st.skipped["not_reviewed"] += 1
                return None
        votes, who = [], []
        for ann in live:
            v, w = self.vote(tid, ann, data)
            if v is not None:
                votes.append(v)
                who.append(w)
        if not votes:
            st.skipped["no_usable_annotations"] += 1
            self.problems.add("no_usable_annotations", tid, "every annotation was unusable", action="skipped")
            return None
        res = resolve(votes, self.policy, self.multi)
        if res.fallback:
            st.gt_fallbacks += 1
            self.problems.add(
                "no_ground_truth", tid, "no annotation is marked ground_truth; used the latest",
                res.final.annotation_id, action="fell back to latest",
            )
        final_ann = next(a for a in live if a.get("id") == res.final.annotation_id)
        origin, model_version = self._origin(tid, task, final_ann)
        split = split_of(tid)
        spans = [
            {"start": s, "end": e, "label": lbl, "text": data[self.controls[n].value_field][s:e], "from_name": n}
            for n, s, e, lbl in sorted(res.spans, key=lambda x: (x[1], x[2], x[3], x[0]))
        ]
        choices = {c.name: list(res.choices.get(c.name, [])) for c in self.spec.choice_controls}
        annotators = list(dict.fromkeys(who))
        created = [a.get("created_at") for a in live if isinstance(a.get("created_at"), str)]
        updated = [a.get("updated_at") for a in live if isinstance(a.get("updated_at"), str)]
        rec = {
            "id": tid,
            "text": text,
            "data": dict(data),
            "split": split,
            "spans": spans,
            "choices": choices,
            "annotators": annotators,
            "annotation_ids": [v.annotation_id for v in votes],
            "created_at": _earliest(created),
            "updated_at": _latest(updated),
            "origin": origin,
            "model_version": model_version,
        }
        st.documents += 1
        st.per_split[split] += 1
        st.annotations_counted += len(votes)
        st.origin[origin] += 1
        if model_version is not None:
            st.model_versions[model_version] += 1
        for w in who:
            st.annotators[str(w)] += 1
        for sp in spans:
            st.spans[split][sp["from_name"]][sp["label"]] += 1
        for name, labels in choices.items():
            for lbl in labels:
                st.choices[split][name][lbl] += 1
        conflict = None
        if res.conflict:
            st.conflicts += 1
            conflict = {
                "id": tid,
                "split": split,
                "annotations": [
                    {
                        "annotation_id": v.annotation_id,
                        "annotator": w,
                        "choices": {k: list(x) for k, x in v.choices.items()},
                        "spans": [list(s) for s in sorted(v.spans, key=lambda x: (x[1], x[2], x[3], x[0]))],
                    }
                    for v, w in zip(votes, who)
                ],
                "resolved": {"choices": choices, "spans": [[s["from_name"], s["start"], s["end"], s["label"]] for s in spans]},
                "policy": self.policy,
            }
        agree_spans = [  # (agreement needs two annotations or more)
            {c.name: [(s, e, lbl) for n, s, e, lbl in v.spans if n == c.name] for c in self.spec.span_controls}
            for v in votes
        ] if len(votes) > 1 else []
        return rec, who, [v.choices for v in votes], agree_spans, conflict

    def _origin(self, tid: Any, task: Mapping, ann: Mapping) -> tuple[str, str | None]:
        parent = ann.get("parent_prediction")
        if parent is None:
            return "human", None
        pred = next(
            (p for p in (task.get("predictions") or ()) if isinstance(p, Mapping) and p.get("id") == parent), None
        )
        if pred is None:
            self.problems.add(
                "parent_prediction_missing", tid,
                f"parent_prediction {parent!r} is not among the task's predictions; origin counted as human_changed",
                ann.get("id"), action="kept",
            )
            return "human_changed", None
        mv = pred.get("model_version")
        mv = None if mv is None else str(mv)
        same = _result_key(ann.get("result")) == _result_key(pred.get("result"))
        return ("prediction_accepted" if same else "human_changed"), mv


def _result_key(result: Any) -> frozenset:
    """A comparable form of a result list: ids, scores and other bookkeeping ignored."""
    out = set()
    for r in result or ():
        if not isinstance(r, Mapping):
            continue
        v = r.get("value") if isinstance(r.get("value"), Mapping) else {}
        if "choices" in v:
            out.add((r.get("from_name"), "choices", tuple(sorted(map(str, v["choices"])))))
        elif "start" in v and "end" in v:
            labels = v.get(r.get("type") or "labels", v.get("labels")) or []
            out.add((r.get("from_name"), "span", v.get("start"), v.get("end"), tuple(sorted(map(str, labels)))))
        else:
            out.add((r.get("from_name"), "other", json.dumps(v, sort_keys=True, default=str)))
    return frozenset(out)


# ------------------------------------------------------------------------------------ format writers
class _TokenOutputs:
    """The outputs that need the token layout: CoNLL per split and Parquet per split.

    The most expensive part of an export; it runs in the export's process, or in a helper process
    (see _TokenWorker) that the export feeds records to, with identical results.
    """

    def __init__(self, root: Path, spec: TaskSpec, formats: Sequence[str], primary: str,
                 splits: Sequence[str] = SPLITS, hf_schema: tuple[Any, list[tuple[str, str]]] | None = None):
        self.root = root
        self.splits = tuple(splits)  # the splits whose files this instance owns (all of them when in-process)
        self.bio_controls = bio_controls(spec, primary)
        self.label_index = {c.name: {lbl: i for i, lbl in enumerate(c.labels)} for c in self.bio_controls}
        self.names = {c.name: bio_names(c.labels) for c in self.bio_controls}
        self.conll_paths = conll_paths(spec, formats, primary)
        self.files: dict[str, _HashingFile] = {}
        for paths in self.conll_paths.values():
            for sp in self.splits:
                self.files[paths[sp]] = _HashingFile(root / paths[sp])
        self.hf = (
            _HFWriter(root / "hf", spec, self.bio_controls, self.names, self.splits, hf_schema)
            if "hf" in formats else None
        )
        self.need_tokens = bool(self.bio_controls) and ("conll" in formats or "hf" in formats)
        self.overlaps_dropped: Counter = Counter()

    def write(self, rec: dict) -> None:
        tokens: list[str] = []
        tag_ids: dict[str, list[int]] = {}
        if self.need_tokens:
            bio: dict[str, list] = {}
            for c in self.bio_controls:
                kept, dropped = select_non_overlapping(
                    (s["start"], s["end"], s["label"]) for s in rec["spans"] if s["from_name"] == c.name
                )
                bio[c.name] = kept
                if dropped:
                    self.overlaps_dropped[c.name] += dropped
            lay = layout_document(rec["text"], bio, self.label_index, self.names, conll=bool(self.conll_paths))
            tokens, tag_ids = lay.tokens, lay.tag_ids
            split = rec["split"]
            for c, paths in self.conll_paths.items():
                self.files[paths[split]].write(lay.conll[c])
        if self.hf is not None:
            self.hf.add(rec, tokens, tag_ids)

    def close(self) -> dict:
        """Close (flush + fsync) every file; the sha256 and size of each, overlap counts, Parquet facts."""
        hashes, sizes = {}, {}
        for rel, f in self.files.items():
            hashes[rel] = f.close()
            sizes[rel] = f.bytes
        hf_info = None
        if self.hf is not None:
            for rel in self.hf.close():
                path = self.root / rel
                hashes[rel] = _sha256_file(path)
                sizes[rel] = path.stat().st_size
            hf_info = {
                "rows": {sp: self.hf.rows.get(sp, 0) for sp in self.splits},
                "columns": self.hf.column_texts,
            }
        return {"hashes": hashes, "sizes": sizes, "overlaps_dropped": dict(self.overlaps_dropped), "hf": hf_info}

    def abort(self) -> None:
        """Close whatever is open without caring about the content."""
        _close_quietly(self.files.values())
        if self.hf is not None:
            self.hf.abort()


def bio_controls(spec: TaskSpec, primary: str) -> list[Control]:
    """The span controls on the primary text: the ones CoNLL and the Parquet tag columns hold."""
    return [c for c in spec.span_controls if c.value_field == primary]


def conll_paths(spec: TaskSpec, formats: Sequence[str], primary: str) -> dict[str, dict[str, str]]:
    """CoNLL file per (span control, split): conll/<split>.conll, or conll/<control>/<split>.conll for several."""
    if "conll" not in formats:
        return {}
    controls = bio_controls(spec, primary)
    single = len(controls) == 1
    return {
        c.name: {sp: (f"conll/{sp}.conll" if single else f"conll/{c.name}/{sp}.conll") for sp in SPLITS}
        for c in controls
    }


def _token_worker(conn: Any, root: str, spec: TaskSpec, formats: Sequence[str], primary: str,
                  splits: Sequence[str], hf_schema: Any) -> None:
    """Helper process body: build token outputs from record batches until None, then report (or the error)."""
    outputs = None
    try:
        outputs = _TokenOutputs(Path(root), spec, formats, primary, splits, hf_schema)
        conn.send(("ready", None))
        while True:
            batch = conn.recv()
            if batch is None:
                break
            for rec in batch:
                outputs.write(rec)
        conn.send(("done", outputs.close()))
    except EOFError:  # the export went away (aborted or killed): stop writing
        if outputs is not None:
            outputs.abort()
    except Exception as exc:  # noqa: BLE001 - reported to the export process, which raises it
        if outputs is not None:
            outputs.abort()
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        conn.close()


TOKEN_OUTPUT_KEYS = ("id", "text", "split", "spans", "choices")  # the record fields _TokenOutputs reads
_END = pickle.dumps(None)  # the end mark a helper receives after the last batch


class _TokenWorker:
    """_TokenOutputs in a helper process (spawned), fed batches of records over a pipe.

    A sender thread writes pickled batches to the pipe from a queue of at most QUEUE batches, so the export
    runs ahead of a busy helper instead of waiting for it at every batch (in lock-step the other helper
    starved whenever the export waited). The bounded queue keeps memory flat: a full one blocks the export
    until the helper catches up.
    """

    BATCH = 256
    QUEUE = 16  # batches the export may run ahead of its helper (16 x 256 abstracts: about 6 MB)

    def __init__(self, root: Path, spec: TaskSpec, formats: Sequence[str], primary: str, splits: Sequence[str],
                 hf_schema: Any = None):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_token_worker, args=(child, str(root), spec, tuple(formats), primary, tuple(splits), hf_schema),
            daemon=True,
            name="goldloop-export-tokens",
        )
        self.proc.start()
        child.close()
        self.batch: list[dict] = []
        self.queue: queue.Queue = queue.Queue(self.QUEUE)
        self.pipe_broken = threading.Event()
        self.sender = threading.Thread(target=self._pump, name="goldloop-export-send", daemon=True)
        self.sender.start()

    def _pump(self) -> None:
        """Sender thread: pipe queued batches to the helper until the end mark or a broken pipe."""
        while True:
            buf = self.queue.get()
            try:
                self.conn.send_bytes(buf)
            except OSError:  # the helper stopped: the export's next send reports why
                self.pipe_broken.set()
                return
            if buf is _END:
                return

    def _recv(self) -> tuple[str, Any]:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise ExportError(f"export helper process exited (code {self.proc.exitcode}) before finishing") from None

    def _reply(self, expect: str) -> Any:
        kind, payload = self._recv()
        if kind == "error":
            raise ExportError(f"export helper process failed: {payload}")
        if kind != expect:
            raise ExportError(f"export helper process answered {kind!r}, expected {expect!r}")
        return payload

    def _send(self, obj: Any) -> None:
        buf = _END if obj is None else pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        while not self.pipe_broken.is_set():
            try:
                self.queue.put(buf, timeout=0.5)
                return
            except queue.Full:
                continue
        self._helper_stopped()

    def _helper_stopped(self) -> None:
        """The pipe broke: the helper stopped; its last message (if any) says why."""
        while True:
            kind, payload = self._recv()  # raises "exited" once the pipe is drained
            if kind == "error":
                raise ExportError(f"export helper process failed: {payload}") from None

    def write(self, rec: dict) -> None:
        # only what CoNLL and Parquet read crosses the pipe (pickling is the helper's overhead)
        self.batch.append({k: rec[k] for k in TOKEN_OUTPUT_KEYS})
        if len(self.batch) >= self.BATCH:
            self._send(self.batch)
            self.batch = []

    def finish(self) -> None:
        """Send what is buffered and the end mark (the helper then closes its files)."""
        if self.batch:
            self._send(self.batch)
            self.batch = []
        self._send(None)
        self.sender.join()
        if self.pipe_broken.is_set():
            self._helper_stopped()

    def result(self) -> dict:
        """Wait for the helper's report (after finish)."""
        self._reply("ready")
        result = self._reply("done")
        self.conn.close()
        self.proc.join(timeout=60)
        return result

    def abort(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        try:  # let the sender thread end (if it is sending, the dead helper's pipe ends it)
            self.queue.put_nowait(_END)
        except queue.Full:
            pass


# helper processes by split: each owns whole files, so every file keeps the record order without merging;
# train is ~70% of documents, dev + test ~30%, and the export process itself takes the remaining load
HELPER_SPLITS = (("train",), ("dev", "test"))


class _TokenWorkers:
    """One _TokenWorker per group of splits (HELPER_SPLITS); records go to the helper owning their split."""

    def __init__(self, root: Path, spec: TaskSpec, formats: Sequence[str], primary: str):
        self.workers: list[_TokenWorker] = []
        hf_schema = None
        if "hf" in formats:
            bio = bio_controls(spec, primary)
            hf_schema = hf_layout(spec, bio, {c.name: bio_names(c.labels) for c in bio})
        try:
            for group in HELPER_SPLITS:
                self.workers.append(_TokenWorker(root, spec, formats, primary, group, hf_schema))
        except BaseException:
            self.abort()
            raise
        self.route = {sp: w for w, group in zip(self.workers, HELPER_SPLITS) for sp in group}

    def write(self, rec: dict) -> None:
        self.route[rec["split"]].write(rec)

    def close(self) -> dict:
        for w in self.workers:
            w.finish()
        merged: dict = {"hashes": {}, "sizes": {}, "overlaps_dropped": Counter(), "hf": None}
        for w in self.workers:
            r = w.result()
            merged["hashes"].update(r["hashes"])
            merged["sizes"].update(r["sizes"])
            merged["overlaps_dropped"].update(r["overlaps_dropped"])
            if r["hf"] is not None:
                hf = merged["hf"] or {"rows": {}, "columns": r["hf"]["columns"]}
                hf["rows"].update(r["hf"]["rows"])
                merged["hf"] = hf
        if merged["hf"] is not None:
            merged["hf"]["rows"] = {sp: merged["hf"]["rows"][sp] for sp in SPLITS}
        merged["overlaps_dropped"] = dict(merged["overlaps_dropped"])
        return merged

    def abort(self) -> None:
        for w in self.workers:
            w.abort()


class _Writers:
    """Every per-format output of one export, written incrementally.

    JSONL and CSV are written here; CoNLL and Parquet (tokenisation, the costly part) by _TokenOutputs, in
    a helper process once the export is large enough for a second core to pay (``parallel``: None = auto).
    """

    def __init__(self, root: Path, spec: TaskSpec, formats: Sequence[str], primary: str,
                 parallel: bool | None = None, expected: int | None = None):
        self.root = root
        self.spec = spec
        self.formats = formats
        self.primary = primary
        self.files: dict[str, _HashingFile] = {}
        self.hashes: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.conll_paths = conll_paths(spec, formats, primary)
        self.hf_info: dict | None = None
        self.overlaps_dropped: dict[str, int] = {}
        if "jsonl" in formats:
            self._open("data.jsonl")
        self.csv_writer = None
        if "csv" in formats and spec.choice_controls:
            self.csv_writer = csv.writer(self._open("data.csv"), lineterminator="\n")
            self.csv_writer.writerow(["id", "text", "split", *(c.name for c in spec.choice_controls)])
        self.has_hf = "hf" in formats
        wanted = bool(self.conll_paths) or self.has_hf
        self._pending: list[dict] | None = None
        if parallel is None:
            parallel = wanted and (os.cpu_count() or 1) > 1
            if parallel and (expected or 0) < PARALLEL_MIN_DOCS:
                self._pending = []  # size unknown or small: decide once PARALLEL_MIN_DOCS are seen
        self.tokens: _TokenOutputs | _TokenWorkers | None = None
        if wanted and self._pending is None:
            self.tokens = (_TokenWorkers if parallel else _TokenOutputs)(root, spec, formats, primary)

    def _open(self, rel: str) -> _HashingFile:
        self.files[rel] = _HashingFile(self.root / rel)
        return self.files[rel]

    def _start_tokens(self, parallel: bool) -> None:
        pending, self._pending = self._pending or [], None
        self.tokens = (_TokenWorkers if parallel else _TokenOutputs)(self.root, self.spec, self.formats, self.primary)
        for rec in pending:
            self.tokens.write(rec)

    def write(self, rec: dict) -> None:
        """Write one resolved document to every open format."""
        if "data.jsonl" in self.files:
            self.files["data.jsonl"].write_json(rec)
        if self.csv_writer is not None:
            self.csv_writer.writerow(
                [rec["id"], rec["text"], rec["split"],
                 *("|".join(rec["choices"][c.name]) for c in self.spec.choice_controls)]
            )
        if self._pending is not None:
            self._pending.append(rec)
            if len(self._pending) >= PARALLEL_MIN_DOCS:
                self._start_tokens(parallel=True)
        elif self.tokens is not None:
            self.tokens.write(rec)

    def close(self) -> None:
        """Close (flush + fsync) every file and record its sha256 and size."""
        for rel, f in self.files.items():
            self.hashes[rel] = f.close()
            self.sizes[rel] = f.bytes
        if self._pending is not None:
            self._start_tokens(parallel=False)  # small export: a helper process would cost more than it saves
        if self.tokens is not None:
            result = self.tokens.close()
            self.hashes.update(result["hashes"])
            self.sizes.update(result["sizes"])
            self.overlaps_dropped = result["overlaps_dropped"]
            self.hf_info = result["hf"]

    def abort(self) -> None:
        """Close whatever is open without caring about the content."""
        _close_quietly(self.files.values())
        if self.tokens is not None:
            self.tokens.abort()


def _hf_column_names(spec: TaskSpec, bio_controls: Sequence[Control]) -> tuple[dict[str, str], dict[str, str]]:
    """Parquet column of each span control's tags and of each choice control (renamed off reserved names)."""
    tag_columns = {c.name: ("ner_tags" if len(bio_controls) == 1 else f"ner_tags_{c.name}") for c in bio_controls}
    choice_columns = {
        c.name: (f"choice_{c.name}" if c.name in RESERVED_HF_COLUMNS or c.name.startswith("ner_tags") else c.name)
        for c in spec.choice_controls
    }
    return tag_columns, choice_columns


def hf_layout(spec: TaskSpec, bio_controls: Sequence[Control], names: Mapping[str, Sequence[str]]) -> tuple[Any, list[tuple[str, str]]]:
    """The Parquet export's Arrow schema (typed `datasets` Features in its metadata) and column descriptions."""
    import datasets  # imported here: heavy, and only needed when hf is asked for

    tag_columns, choice_columns = _hf_column_names(spec, bio_controls)
    V, L, CL = datasets.Value, datasets.List, datasets.ClassLabel
    feats: dict[str, Any] = {"id": V("int64"), "text": V("string")}
    if bio_controls:
        feats["tokens"] = L(V("string"))
        for c in bio_controls:
            feats[tag_columns[c.name]] = L(CL(names=list(names[c.name])))
    feats["spans"] = L(
        {"start": V("int64"), "end": V("int64"), "label": V("string"), "text": V("string"), "from_name": V("string")}
    )
    for c in spec.choice_controls:
        feats[choice_columns[c.name]] = L(CL(names=list(c.labels))) if c.multi else CL(names=list(c.labels))
    features = datasets.Features(feats)
    return features.arrow_schema, [(name, _feature_text(feat)) for name, feat in features.items()]


class _HFWriter:
    """Parquet per split with Hugging Face `datasets` Features in the schema metadata, in row-group batches."""

    def __init__(self, root: Path, spec: TaskSpec, bio_controls: list[Control], names: Mapping[str, list[str]],
                 splits: Sequence[str] = SPLITS, layout: tuple[Any, list[tuple[str, str]]] | None = None):
        self.root = root
        self.splits = tuple(splits)
        root.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.bio_controls = bio_controls
        self.tag_columns, self.choice_columns = _hf_column_names(spec, bio_controls)
        self.choice_index = {c.name: {lbl: i for i, lbl in enumerate(c.labels)} for c in spec.choice_controls}
        # (Arrow schema with the `datasets` Features in its metadata, column descriptions): built once by
        # hf_layout, passed to helper processes so they need not import `datasets`
        self.schema, self.column_texts = layout or hf_layout(spec, bio_controls, names)
        self.columns = [f.name for f in self.schema]
        self.flat_columns = {"tokens", *self.tag_columns.values()}
        self.buffers: dict[str, dict[str, list]] = {sp: self._empty() for sp in self.splits}
        self.writers: dict[str, Any] = {}
        self.rows: Counter = Counter()

    def _empty(self) -> dict[str, list]:
        buf: dict[str, list] = {k: [] for k in self.columns}
        buf["_offsets"] = [0]
        buf["_chars"] = [0]
        return buf

    def add(self, rec: dict, tokens: list[str], tag_ids: Mapping[str, list[int]]) -> None:
        """Buffer one document; flush its split's buffer as a row group when full."""
        buf = self.buffers[rec["split"]]
        buf["id"].append(rec["id"])
        buf["text"].append(rec["text"])
        buf["_chars"][0] += len(rec["text"])
        if self.bio_controls:
            # token-level columns are kept flat (+ offsets) and become Arrow list arrays without nesting
            buf["tokens"] += tokens
            buf["_offsets"].append(len(buf["tokens"]))
            for c in self.bio_controls:
                buf[self.tag_columns[c.name]] += tag_ids[c.name]
        buf["spans"].append(rec["spans"])
        for c in self.spec.choice_controls:
            idx = self.choice_index[c.name]
            got = [idx[lbl] for lbl in rec["choices"][c.name]]
            buf[self.choice_columns[c.name]].append(got if c.multi else (got[0] if got else -1))
        if len(buf["id"]) >= HF_BATCH_ROWS or buf["_chars"][0] >= HF_BATCH_CHARS:
            self._flush(rec["split"])

    def _writer(self, split: str) -> Any:
        import pyarrow.parquet as pq

        if split not in self.writers:
            self.writers[split] = pq.ParquetWriter(self.root / f"{split}.parquet", self.schema)
        return self.writers[split]

    def _flush(self, split: str) -> None:
        import pyarrow as pa

        buf = self.buffers[split]
        if not buf["id"]:
            return
        offsets = pa.array(buf["_offsets"], type=pa.int32())
        arrays = []
        for f in self.schema:
            if f.name in self.flat_columns:
                arrays.append(pa.ListArray.from_arrays(offsets, pa.array(buf[f.name], type=f.type.value_type)))
            else:
                arrays.append(pa.array(buf[f.name], type=f.type))
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        self._writer(split).write_table(table)
        self.rows[split] += table.num_rows
        self.buffers[split] = self._empty()

    def close(self) -> list[str]:
        """Flush and close every split file (an empty split gets a schema-only file); return relative paths."""
        out = []
        for split in self.splits:
            self._flush(split)
            w = self._writer(split)
            if self.rows[split] == 0:
                w.write_table(self.schema.empty_table())
            w.close()
            path = self.root / f"{split}.parquet"
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            out.append(f"hf/{split}.parquet")
        return out

    def abort(self) -> None:
        """Close open writers, ignoring errors."""
        for w in self.writers.values():
            try:
                w.close()
            except (OSError, ValueError):
                pass


# --------------------------------------------------------------------------------------- label check
def _suspect_labels(rows: list[tuple[Any, str, dict[str, str]]], spec: TaskSpec) -> tuple[list[dict], list[str]]:
    """Likely mislabeled documents per single-choice control (TF-IDF + LR, 5-fold CV, confident learning)."""
    import numpy as np
    from cleanlab.filter import find_label_issues
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    out: list[dict] = []
    notes: list[str] = []
    for ctrl in spec.choice_controls:
        if ctrl.multi:
            notes.append(f"{ctrl.name}: multiple-choice control not checked (single-label check only)")
            continue
        items = [(tid, text, labels[ctrl.name]) for tid, text, labels in rows if ctrl.name in labels]
        counts = Counter(lbl for _, _, lbl in items)
        classes = sorted(counts, key=list(ctrl.labels).index)
        if len(classes) < 2 or min(counts.values()) < 2:
            notes.append(
                f"{ctrl.name}: not checked: needs at least 2 labels with 2 documents each, got {dict(counts)}"
            )
            continue
        cls_index = {lbl: i for i, lbl in enumerate(classes)}
        y = np.array([cls_index[lbl] for _, _, lbl in items])
        x = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit_transform([t for _, t, _ in items])
        folds = StratifiedKFold(n_splits=min(5, min(counts.values())))
        probs = cross_val_predict(LogisticRegression(max_iter=1000), x, y, cv=folds, method="predict_proba")
        issues = find_label_issues(labels=y, pred_probs=probs, return_indices_ranked_by="self_confidence")
        for i in issues:
            tid, text, given = items[int(i)]
            k = int(np.argmax(probs[i]))
            out.append({
                "id": tid,
                "control": ctrl.name,
                "text": text,
                "given_label": given,
                "suggested_label": classes[k],
                "confidence": round(float(probs[i][k]), 4),
                "given_label_probability": round(float(probs[i][cls_index[given]]), 4),
            })
        notes.append(f"{ctrl.name}: {len(issues)} of {len(items)} documents flagged")
    return out, notes


# --------------------------------------------------------------------------------------------- driver
def _check_args(formats: Sequence[str], resolve_policy: str, project: ProjectInfo) -> None:
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"export formats must be a non-empty subset of {list(FORMATS)}, got {list(formats)}")
    if resolve_policy not in RESOLVE_POLICIES:
        raise ExportError(f"--resolve must be one of {list(RESOLVE_POLICIES)}, got {resolve_policy!r}")
    slug = project.slug
    if not slug or slug in (".", "..") or "/" in slug or "\\" in slug or slug.startswith("."):
        raise ExportError(f"project slug must be a plain directory name, got {slug!r}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_tmp(project_dir: Path, max_age_s: float = 3600.0) -> list[Path]:
    """Remove temp dirs left by killed exports (owner process gone, or older than max_age_s)."""
    removed = []
    if not project_dir.is_dir():
        return removed
    for p in project_dir.iterdir():
        if not p.name.startswith(TMP_PREFIX) or not p.is_dir():
            continue
        parts = p.name[len(TMP_PREFIX):].split("-", 1)
        pid = int(parts[0]) if parts[0].isdigit() else None
        try:
            old = time.time() - p.stat().st_mtime > max_age_s
        except OSError:
            continue
        if old or pid is None or (pid != os.getpid() and not _pid_alive(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def list_versions(project_dir: Path) -> list[str]:
    """Version names of a project's exports, oldest first (temp dirs ignored)."""
    if not project_dir.is_dir():
        return []
    return sorted(p.name for p in project_dir.iterdir() if p.is_dir() and VERSION_RE.match(p.name))


def _latest_manifest(project_dir: Path) -> tuple[str, dict] | None:
    for name in reversed(list_versions(project_dir)):
        try:
            return name, json.loads((project_dir / name / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


def export_dataset(
    tasks: Iterable[dict],
    spec: TaskSpec,
    project: ProjectInfo,
    out_root: Path,
    formats: Sequence[str] = FORMATS,
    resolve: str = "majority",
    only_reviewed: bool = False,
    check_labels: bool = False,
    goldloop_version: str = "0.1.0",
    progress: bool | None = None,
    total: int | None = None,
    parallel: bool | None = None,
) -> ExportResult:
    """Export a project's annotated tasks as a new versioned gold dataset (or report that nothing changed).

    ``parallel``: build CoNLL and Parquet in a helper process (True), in this one (False), or decide by size
    (None: a helper once more than PARALLEL_MIN_DOCS documents arrive and a second core exists; from the
    start when ``total``, the number of tasks, says so). Both give byte-identical files.
    """
    formats = tuple(dict.fromkeys(formats))
    _check_args(formats, resolve, project)
    project_dir = Path(out_root) / project.slug
    try:
        project_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=project_dir))
    except OSError as exc:
        raise ExportError(f"cannot write exports under {project_dir}: {exc.strerror or exc}") from None
    clean_stale_tmp(project_dir)
    try:
        return _export_into(
            tmp, project_dir, tasks, spec, project, formats, resolve, only_reviewed, check_labels,
            goldloop_version, progress, total, parallel,
        )
    except OSError as exc:
        raise ExportError(f"cannot write export to {project_dir}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _export_into(
    tmp: Path, project_dir: Path, tasks: Iterable[dict], spec: TaskSpec, project: ProjectInfo,
    formats: tuple[str, ...], policy: str, only_reviewed: bool, check_labels: bool,
    goldloop_version: str, progress: bool | None, total: int | None, parallel: bool | None,
) -> ExportResult:
    from tqdm import tqdm

    stats = _Stats()
    problems_file = _HashingFile(tmp / "problems.jsonl")
    conflicts_file = _HashingFile(tmp / "conflicts.jsonl")
    problems = _Problems(problems_file)
    parser = _Parser(spec, policy, only_reviewed, problems, stats)
    agreement = AgreementAccumulator(
        {c.name: (c.labels, c.multi) for c in spec.choice_controls}, [c.name for c in spec.span_controls]
    )
    if total is None and hasattr(tasks, "__len__"):
        total = len(tasks)  # type: ignore[arg-type]
    writers = _Writers(tmp, spec, formats, parser.primary, parallel, expected=total)
    label_rows: list[tuple[Any, str, dict[str, str]]] = []
    want_check = check_labels and bool(spec.choice_controls)
    show = sys.stderr.isatty() if progress is None else progress
    try:
        for task in tqdm(tasks, total=total, disable=not show, unit="task", desc=f"export {project.slug}"):
            stats.tasks_seen += 1
            parsed = parser.parse(task)
            if parsed is None:
                continue
            rec, who, choice_votes, span_votes, conflict = parsed
            agreement.add_document([str(w) for w in who], choice_votes, span_votes)
            if conflict is not None:
                conflicts_file.write_json(conflict)
            writers.write(rec)
            if want_check:
                single = {k: v[0] for k, v in rec["choices"].items() if len(v) == 1}
                if single:
                    label_rows.append((rec["id"], rec["text"], single))
    except BaseException:
        writers.abort()
        problems_file.close()
        conflicts_file.close()
        raise
    if stats.documents == 0:
        writers.abort()
        problems_file.close()
        conflicts_file.close()
        why = (
            "has no reviewed annotations (only_reviewed)"
            if only_reviewed and stats.skipped.get("not_reviewed")
            else "has no completed annotations"
        )
        raise ExportError(
            f"project {project.id} ({project.slug}) {why}; nothing exported "
            f"({stats.tasks_seen} tasks seen, skipped: {dict(stats.skipped) or 'none'})"
        )
    writers.close()
    stats.overlaps_dropped = Counter(writers.overlaps_dropped)
    files = dict(writers.hashes)
    sizes = dict(writers.sizes)
    check_notes: list[str] = []
    if check_labels and not spec.choice_controls:
        check_notes.append("check_labels: the labeling config has no Choices control; nothing checked")
    if want_check:
        suspects, check_notes = _suspect_labels(label_rows, spec)
        sf = _HashingFile(tmp / "suspect_labels.jsonl")
        for row in suspects:
            sf.write_json(row)
        files["suspect_labels.jsonl"], sizes["suspect_labels.jsonl"] = sf.close(), sf.bytes
    for name, f in (("problems.jsonl", problems_file), ("conflicts.jsonl", conflicts_file)):
        files[name], sizes[name] = f.close(), f.bytes

    options = {"formats": list(formats), "resolve": policy, "only_reviewed": only_reviewed, "check_labels": check_labels}
    agreement_summary = agreement.summary()
    summary_core = {"agreement": agreement_summary, "overlaps_dropped_in_bio": dict(stats.overlaps_dropped)}
    content_hash = hashlib.sha256(
        _dumps({
            "files": dict(sorted(files.items())),
            "options": options,
            "label_config_hash": spec.config_hash,
            "summary": summary_core,
        }).encode("utf-8")
    ).hexdigest()

    latest = _latest_manifest(project_dir)
    if latest is not None and latest[1].get("content_hash") == content_hash:
        return ExportResult(project_dir / latest[0], latest[0], False, latest[1], f"no change since {latest[0]}")

    now = datetime.now(timezone.utc)
    version = f"{now:%Y%m%dT%H%M%SZ}-{content_hash[:8]}"
    if "hf" in formats:
        card = _hf_card(project, spec, writers, stats)
        (tmp / "hf" / "README.md").write_text(card, encoding="utf-8")
        files["hf/README.md"] = hashlib.sha256(card.encode("utf-8")).hexdigest()
        sizes["hf/README.md"] = len(card.encode("utf-8"))
    manifest = _manifest(
        version, content_hash, now, project, spec, options, stats, problems, agreement_summary, goldloop_version,
        writers, check_notes,
    )
    datasheet = _datasheet(manifest, project, spec)
    (tmp / "README.md").write_text(datasheet, encoding="utf-8")
    files["README.md"] = hashlib.sha256(datasheet.encode("utf-8")).hexdigest()
    sizes["README.md"] = len(datasheet.encode("utf-8"))
    manifest["files"] = {k: {"sha256": files[k], "bytes": sizes[k]} for k in sorted(files)}
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    for rel in ("README.md", "manifest.json", "hf/README.md"):
        if (tmp / rel).exists():
            _fsync_path(tmp / rel)
    for d in {tmp, *(p.parent for p in tmp.rglob("*") if p.is_file())}:
        _fsync_path(d)
    final = project_dir / version
    if final.exists():
        raise ExportError(f"export version {version} already exists in {project_dir}; run the export again")
    os.rename(tmp, final)
    _fsync_path(project_dir)
    return ExportResult(final, version, True, manifest, f"exported {stats.documents} documents to {final}")


def _nested(d: Mapping) -> dict:
    return {k: (_nested(v) if isinstance(v, Mapping) else v) for k, v in sorted(d.items())}


def _manifest(
    version: str, content_hash: str, now: datetime, project: ProjectInfo, spec: TaskSpec, options: dict,
    stats: _Stats, problems: _Problems, agreement_summary: dict, goldloop_version: str, writers: _Writers,
    check_notes: list[str],
) -> dict:
    spans_per_label: dict[str, Counter] = defaultdict(Counter)
    choices_per_label: dict[str, Counter] = defaultdict(Counter)
    for split_counts in stats.spans.values():
        for ctrl, c in split_counts.items():
            spans_per_label[ctrl].update(c)
    for split_counts in stats.choices.values():
        for ctrl, c in split_counts.items():
            choices_per_label[ctrl].update(c)
    return {
        "version": version,
        "content_hash": content_hash,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "goldloop_version": goldloop_version,
        "project": {"id": project.id, "slug": project.slug, "title": project.title},
        "label_config_hash": spec.config_hash,
        "controls": [
            {"name": c.name, "kind": c.kind, "type": c.type, "to_name": c.to_name, "value_field": c.value_field,
             "labels": list(c.labels), "multi": c.multi}
            for c in spec.controls
        ],
        "options": options,
        "resolution": {"policy": options["resolve"], "rule": RESOLUTION_RULES[options["resolve"]],
                       "ground_truth_fallbacks": stats.gt_fallbacks},
        "review_rule": REVIEW_RULE if options["only_reviewed"] else None,
        "counts": {
            "tasks_seen": stats.tasks_seen,
            "documents": stats.documents,
            "per_split": {sp: stats.per_split.get(sp, 0) for sp in SPLITS},
            "skipped_tasks": dict(sorted(stats.skipped.items())),
            "annotations_counted": stats.annotations_counted,
            "annotations_cancelled": stats.annotations_cancelled,
            "spans_per_label": _nested(spans_per_label),
            "choices_per_label": _nested(choices_per_label),
            "per_split_label": {
                sp: {"spans": _nested(stats.spans.get(sp, {})), "choices": _nested(stats.choices.get(sp, {}))}
                for sp in SPLITS
            },
            "origin": {o: stats.origin.get(o, 0) for o in ORIGINS},
            "conflicts": stats.conflicts,
            "overlaps_dropped_in_bio": dict(sorted(stats.overlaps_dropped.items())),
            "spans_whitespace_trimmed": stats.whitespace_trimmed,
            "spans_relocated": stats.relocated,
        },
        "overlap_rule": OVERLAP_RULE,
        "annotators": [{"id": k, "annotations": v} for k, v in sorted(stats.annotators.items())],
        "agreement": agreement_summary,
        "model_versions": dict(sorted(stats.model_versions.items())),
        "formats": {
            "jsonl": "data.jsonl" if "jsonl" in options["formats"] else None,
            "conll": writers.conll_paths or None,
            "hf": (
                {sp: f"hf/{sp}.parquet" for sp in SPLITS}
                if writers.has_hf else None
            ),
            "csv": "data.csv" if writers.csv_writer is not None else None,
        },
        "check_labels": check_notes,
        "problem_counts": dict(sorted(problems.counts.items())),
        "problems": problems.items,
        "problems_truncated": sum(problems.counts.values()) > len(problems.items),
    }


def _fmt(x: Any) -> str:
    return "n/a" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def _datasheet(m: dict, project: ProjectInfo, spec: TaskSpec) -> str:
    c = m["counts"]
    lines = [
        f"# {project.title} — gold dataset {m['version']}",
        "",
        "## What",
        f"Documents exported from Label Studio project {project.id} (`{project.slug}`), labeling config hash "
        f"`{m['label_config_hash']}`, content hash `{m['content_hash']}`, goldloop {m['goldloop_version']}.",
        f"{c['documents']} documents ({c['tasks_seen']} tasks seen; skipped: {c['skipped_tasks'] or 'none'}).",
        "",
        "## How it was labeled",
        f"{c['annotations_counted']} annotations by {len(m['annotators'])} annotator(s) "
        f"({c['annotations_cancelled']} cancelled annotations ignored). Origin of the final annotation: "
        + ", ".join(f"{k} {v}" for k, v in c["origin"].items())
        + ". Model versions that pre-annotated: "
        + (", ".join(f"{k} ({v})" for k, v in m["model_versions"].items()) or "none")
        + ".",
        f"Conflict resolution: **{m['resolution']['policy']}** — {m['resolution']['rule']}. "
        f"{c['conflicts']} documents had disagreeing annotations (see conflicts.jsonl).",
    ]
    if m["review_rule"]:
        lines.append(f"Only reviewed: {m['review_rule']}.")
    lines += ["", "## Labels"]
    for ctrl in spec.controls:
        kind = "span labels" if ctrl.kind == "spans" else ("multiple choice" if ctrl.multi else "single choice")
        lines.append(f"- `{ctrl.name}` ({kind} on `${ctrl.value_field}`): " + ", ".join(f"`{x}`" for x in ctrl.labels))
    lines += ["", "| control | label | count |", "|---|---|---|"]
    for key in ("spans_per_label", "choices_per_label"):
        for ctrl, labels in c[key].items():
            for lbl, n in labels.items():
                lines.append(f"| {ctrl} | {lbl} | {n} |")
    lines += [
        "",
        "## Splits",
        "Stable hash of the task id (ml_backend.splits.split_of): 70/15/15. "
        + ", ".join(f"{k}: {v}" for k, v in c["per_split"].items()),
        "",
        "## Agreement",
    ]
    ag = m["agreement"]
    lines.append(f"{ag['multi_annotated_documents']} of {ag['documents']} documents have 2+ annotations.")
    for ctrl, a in ag["choices"].items():
        lines.append(
            f"- `{ctrl}`: Fleiss' kappa {_fmt(a['fleiss_kappa'])}, Cohen's kappa {_fmt(a['cohen_kappa'])} "
            f"over {a['items']} items"
        )
    for ctrl, a in ag["spans"].items():
        lines.append(f"- `{ctrl}`: pairwise exact span F1 {_fmt(a['f1'])} over {a['pairs']} annotation pairs")
    lines += [
        "",
        "## Known limits",
        f"- {m['overlap_rule']}. Dropped from BIO: {c['overlaps_dropped_in_bio'] or 'none'}.",
        "- CoNLL tokens: whitespace tokens, each CJK character a token, split at entity boundaries; "
        "a sentence ends after `.`/`!`/`?` plus whitespace or after `。！？`, never inside an entity.",
        f"- Span whitespace trimmed: {c['spans_whitespace_trimmed']}; spans relocated to the nearest exact text "
        f"match: {c['spans_relocated']}.",
        f"- Problems recorded: {m['problem_counts'] or 'none'} (all in problems.jsonl).",
    ]
    if m["check_labels"]:
        lines.append("- Label check: " + "; ".join(m["check_labels"]))
    return "\n".join(lines) + "\n"


def _hf_card(project: ProjectInfo, spec: TaskSpec, writers: _Writers, stats: _Stats) -> str:
    hf = writers.hf_info
    assert hf is not None
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *(f"  - split: {'validation' if sp == 'dev' else sp}\n    path: {sp}.parquet" for sp in SPLITS),
        "---",
        f"# {project.title}",
        "",
        f"Gold labels from Label Studio project {project.id} (`{project.slug}`). One Parquet file per split; the "
        "Hugging Face `datasets` features are stored in each file's schema metadata.",
        "",
        "```python",
        "from datasets import load_dataset",
        "ds = load_dataset('parquet', data_files={'train': 'train.parquet', 'validation': 'dev.parquet', "
        "'test': 'test.parquet'})",
        "```",
        "",
        "## Rows per split",
        *(f"- {sp}: {hf['rows'][sp]}" for sp in SPLITS),
        "",
        "## Columns",
    ]
    for name, text in hf["columns"]:
        lines.append(f"- `{name}`: {text}")
    lines.append("")
    return "\n".join(lines)


def _feature_text(feat: Any) -> str:
    names = getattr(feat, "names", None)
    if names is not None:
        return f"ClassLabel {list(names)}"
    inner = getattr(feat, "feature", None)
    if inner is not None:
        return f"list of {_feature_text(inner) if not isinstance(inner, dict) else 'struct ' + str(list(inner))}"
    return str(getattr(feat, "dtype", feat))
