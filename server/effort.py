"""Annotator effort: the seconds and edits each annotation took, read from Label Studio's tasks.

Label Studio records, per annotation, how long the annotator had the task open (``lead_time``, seconds) and the
prediction it started from (``parent_prediction``, an id among the task's predictions). From these, every round
and `goldloop report` store one row per annotation: the seconds (capped, see ``LEAD_TIME_CAP_S``), the model
version and score of the prediction shown, and the edits from that prediction's result to the submitted one
(spans added, deleted, re-labelled, re-bounded; choices changed). An annotation without a parent prediction is
one made from an empty task: its edits are every span and choice it holds. Updates overwrite the row (one row per
annotation id), skips (``was_cancelled``) are kept with their seconds and no edits, and every annotator's
annotation is its own row.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from ml_backend.control_group import in_control_group
from ml_backend.results import choices_of, spans_of
from ml_backend.schema import TaskSpec

# An annotation open longer than this counts as this long: an annotator who leaves a task open over lunch would
# otherwise outweigh a hundred real ones. Ten minutes is well above what one note, clause or news item of the
# loop's domains takes to label; the mean and its interval are taken over the capped values.
LEAD_TIME_CAP_S = 600.0

EDIT_KINDS = ("add", "delete", "relabel", "rebound", "choices")


def span_edits(gold: Iterable[tuple], pred: Iterable[tuple]) -> dict:
    """Edits turning ``pred`` into ``gold`` spans ``(start, end, label)``: exact, add, delete, relabel, rebound (a
    re-bound + re-label counts both); an overlapping predicted span is matched to the gold span it overlaps most."""
    g, p = set(gold), set(pred)
    exact = g & p
    g_left, p_left = sorted(g - exact), sorted(p - exact)
    out = {"exact": len(exact), "add": 0, "delete": 0, "relabel": 0, "rebound": 0}
    same_bounds = {(s, e): x for x in p_left for s, e in [x[:2]]}
    rest_g = []
    for x in g_left:
        y = same_bounds.pop(x[:2], None)
        if y is not None:
            out["relabel"] += 1
            p_left.remove(y)
        else:
            rest_g.append(x)
    for x in rest_g:  # the largest overlap among what is left
        best, size = None, 0
        for y in p_left:
            ov = min(x[1], y[1]) - max(x[0], y[0])
            if ov > size:
                best, size = y, ov
        if best is None:
            out["add"] += 1
            continue
        p_left.remove(best)
        out["rebound"] += 1
        out["relabel"] += best[2] != x[2]
    out["delete"] = len(p_left)
    out["edits"] = out["add"] + out["delete"] + out["relabel"] + out["rebound"]
    return out


def result_edits(spec: TaskSpec, shown: list | None, submitted: list) -> dict:
    """Edits from the result an annotator was shown (None: an empty task) to the one submitted, over every control
    of the labeling config: span edits per span control, and per choice control the choices added plus removed."""
    shown = shown or []
    out = dict.fromkeys(EDIT_KINDS, 0)
    for control in spec.controls:
        if control.kind == "spans":
            e = span_edits(set(spans_of(submitted, control.name)), set(spans_of(shown, control.name)))
            for k in ("add", "delete", "relabel", "rebound"):
                out[k] += e[k]
        else:
            before, after = set(choices_of(shown, control.name)), set(choices_of(submitted, control.name))
            out["choices"] += len(before ^ after)
    out["edits"] = sum(out[k] for k in EDIT_KINDS)
    return out


def capped_seconds(lead_time: Any) -> float | None:
    """An annotation's seconds: its lead time, capped at LEAD_TIME_CAP_S; None when Label Studio recorded none."""
    if isinstance(lead_time, bool) or not isinstance(lead_time, (int, float)) or not math.isfinite(lead_time) or lead_time < 0:
        return None
    return float(min(lead_time, LEAD_TIME_CAP_S))


def annotation_rows(project_id: int, tasks: Iterable[Mapping], spec: TaskSpec, control_share: float = 0.0) -> list[dict]:
    """One effort row per annotation of ``tasks`` (Label Studio's export format: ``annotations`` and ``predictions``
    per task). ``control_share``: the share of tasks served without suggestions (``ml_backend.control_group``); a
    row says whether its task was one."""
    rows = []
    for task in tasks:
        tid = task.get("id")
        if not isinstance(tid, int):
            continue
        predictions = {p.get("id"): p for p in task.get("predictions") or () if isinstance(p, Mapping)}
        for ann in task.get("annotations") or ():
            if not isinstance(ann, Mapping) or not isinstance(ann.get("id"), int):
                continue
            parent = predictions.get(ann.get("parent_prediction")) if ann.get("parent_prediction") is not None else None
            result = ann.get("result") if isinstance(ann.get("result"), list) else []
            skipped = bool(ann.get("was_cancelled"))
            edits = dict.fromkeys(EDIT_KINDS, 0) | {"edits": 0} if skipped else result_edits(spec, (parent or {}).get("result"), result)
            score = (parent or {}).get("score")
            seconds = capped_seconds(ann.get("lead_time"))
            rows.append({
                "annotation_id": ann["id"], "project_id": int(project_id), "task_id": tid,
                "annotator": ann.get("completed_by") if isinstance(ann.get("completed_by"), int) else None,
                "seconds": seconds, "capped": (seconds or 0) >= LEAD_TIME_CAP_S,
                "model_version": str(parent.get("model_version")) if parent and parent.get("model_version") is not None else None,
                "prediction_score": float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
                "suggested": parent is not None and bool(parent.get("result")),
                "control": in_control_group(tid, control_share),
                "skipped": skipped, "updated_at": str(ann.get("updated_at") or ann.get("created_at") or ""),
                **edits,
            })
    return rows


def mean_ci(values: list[float], z: float = 1.96) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high): the mean with a normal-approximation 95% interval (None bounds below two values)."""
    if not values:
        return None, None, None
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, None, None
    half = z * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def summary(rows: list[dict]) -> dict:
    """Seconds and edits per document, with and without suggestions and per model version, and the time saved
    against the control group (tasks served without suggestions) with a 95% interval of the difference."""
    done = [r for r in rows if not r["skipped"]]

    def group(rs: list[dict]) -> dict:
        secs = [r["seconds"] for r in rs if r["seconds"] is not None]
        mean, low, high = mean_ci(secs)
        return {"annotations": len(rs), "seconds_mean": mean, "seconds_ci": [low, high],
                "seconds_median": statistics.median(secs) if secs else None,
                "edits_mean": statistics.fmean(r["edits"] for r in rs) if rs else None}

    with_s = [r for r in done if r["suggested"] and not r["control"]]
    control = [r for r in done if r["control"]]
    out = {"annotations": len(rows), "skipped": len(rows) - len(done), "with_suggestions": group(with_s),
           "control": group(control), "without_suggestions": group([r for r in done if not r["suggested"]]),
           "by_version": {v: group([r for r in with_s if r["model_version"] == v])
                          for v in sorted({r["model_version"] for r in with_s if r["model_version"]})}}
    a = [r["seconds"] for r in control if r["seconds"] is not None]
    b = [r["seconds"] for r in with_s if r["seconds"] is not None]
    if len(a) >= 2 and len(b) >= 2:
        diff = statistics.fmean(a) - statistics.fmean(b)
        half = 1.96 * math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))  # Welch
        out["seconds_saved_per_doc"] = {"mean": diff, "ci": [diff - half, diff + half], "control_n": len(a), "suggested_n": len(b)}
    else:
        out["seconds_saved_per_doc"] = None  # not enough control-group annotations yet to say
    return out


def collect(client, db, project_id: int, spec: TaskSpec, control_share: float) -> dict:
    """Read every annotation of a Label Studio project (one pass over its tasks), store its effort row, and return
    the project's summary over every row stored."""
    from . import ls_client, store

    rows = annotation_rows(project_id, (t for t in ls_client.iter_tasks(client, project_id) if t.get("annotations")), spec, control_share)
    store.record_effort(db, rows)
    return summary(store.list_effort(db, project_id))
