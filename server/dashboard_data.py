"""The dashboard snapshot: a project's aggregates written beside its model versions for the backend's /dashboard page.

The backend must not read the store or Label Studio (``ml_backend`` never imports ``server``), so the server side
writes what the page shows into ``<models>/<project>/dashboard.json`` (``ml_backend.dashboard.SNAPSHOT_FILE``):
label counts, the version rows with their gate decisions, annotator time (``server.effort.summary``, the numbers
`goldloop report` prints, overall and per time bucket), the queue's score histogram, the stopping criterion, the
starter and the last round's line. Aggregates only: its size is bounded by ``ml_backend.dashboard``'s limits,
whatever the number of annotations. Sections a caller cannot give (the queue, the starter, the log line) are
carried over from the previous snapshot with the time they were taken.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import statistics
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ml_backend.dashboard import MAX_BUCKETS, MAX_SNAPSHOT_BYTES, MAX_TEXT, MAX_VERSIONS, QUEUE_BINS, SCHEMA_VERSION, SNAPSHOT_FILE
from ml_backend.registry import Registry
from ml_backend.settings import BackendSettings

from . import store
from .effort import summary
from .errors import ServerError

log = logging.getLogger(__name__)

VERSION_FIELDS = ("version", "trigger", "status", "started_at", "labeled_docs", "pool_docs", "primary", "serving_primary",
                  "serving_version", "pool_agreement", "duration_s", "strategy", "encoder", "dataset_version")
NUMBERS = {"started_at": float, "labeled_docs": int, "pool_docs": int, "primary": float, "serving_primary": float, "pool_agreement": float,
           "duration_s": float}
LOG_TAIL_BYTES = 8192  # the last line of a round's log is within its last few KB
CARRIED = ("queue", "starter", "log_line")


def _short(text: Any, limit: int = MAX_TEXT) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _registry(registry_or_models_dir: Registry | str | Path) -> Registry:
    """The registry that builds the snapshot's path (the one place joining names under the models dir)."""
    if isinstance(registry_or_models_dir, Registry):
        return registry_or_models_dir
    return Registry(BackendSettings(model="", models_dir=Path(registry_or_models_dir)))


def _number(kind: type, value: Any) -> Any:
    """A numeric column as a number: a column sqlite-utils created from a first None is TEXT and returns "0.5"."""
    try:
        return kind(float(value)) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except ValueError:
        return None


def version_rows(versions: list[dict]) -> list[dict]:
    """The newest MAX_VERSIONS version records (oldest first), the columns the page shows, decisions cut short."""
    rows = sorted(versions, key=lambda v: _number(float, v.get("started_at")) or 0)[-MAX_VERSIONS:]
    out = []
    for v in rows:
        row = {k: (_number(NUMBERS[k], v.get(k)) if k in NUMBERS else v.get(k)) for k in VERSION_FIELDS}
        row = {k: x for k, x in row.items() if x is not None}
        row["decision"] = _short(v.get("decision"))
        out.append(row)
    return out


def _group(g: dict) -> dict:
    """One effort group as the page needs it (summary's group without what it does not show)."""
    return {k: g.get(k) for k in ("annotations", "seconds_mean", "seconds_ci", "seconds_median", "edits_mean")}


def effort_section(rows: list[dict]) -> dict:
    """``server.effort.summary`` of every row (the report's numbers), per-version groups bounded to the newest versions."""
    s = summary(rows)
    by_version = list(s["by_version"].items())[-MAX_VERSIONS:]
    return {"annotations": s["annotations"], "skipped": s["skipped"], "with_suggestions": _group(s["with_suggestions"]),
            "control": _group(s["control"]), "without_suggestions": _group(s["without_suggestions"]),
            "by_version": {v: _group(g) for v, g in by_version}, "seconds_saved_per_doc": s["seconds_saved_per_doc"],
            "annotators": len({r.get("annotator") for r in rows if r.get("annotator") is not None})}


def effort_buckets(rows: list[dict], max_buckets: int = MAX_BUCKETS) -> list[dict]:
    """Seconds and edits per document over time: the rows (oldest first) cut into at most ``max_buckets`` runs of
    equal size, each summarised by ``server.effort.summary`` (the same computation as the whole), with the
    cumulative annotation count at its end and its first and last timestamps."""
    if not rows:
        return []
    size = max(1, -(-len(rows) // max_buckets))
    out = []
    for i in range(0, len(rows), size):
        part = rows[i : i + size]
        s = summary(part)
        out.append({"until": i + len(part), "from_time": str(part[0].get("updated_at") or ""), "to_time": str(part[-1].get("updated_at") or ""),
                    "with_suggestions": {k: s["with_suggestions"][k] for k in ("annotations", "seconds_mean", "edits_mean")},
                    "control": {k: s["control"][k] for k in ("annotations", "seconds_mean", "edits_mean")},
                    "without_suggestions": {k: s["without_suggestions"][k] for k in ("annotations", "seconds_mean", "edits_mean")}})
    return out


def queue_scores_of(tasks: Iterable[dict]) -> list[float]:
    """The queue's order scores: per task without a finished annotation, the score of its newest prediction (Label
    Studio serves the lowest first)."""
    out = []
    for task in tasks:
        if any(not a.get("was_cancelled") for a in task.get("annotations") or ()):
            continue
        preds = [p for p in task.get("predictions") or () if isinstance(p, dict) and isinstance(p.get("score"), (int, float))]
        if preds:
            newest = max(preds, key=lambda p: (str(p.get("created_at") or ""), p.get("id") or 0))
            out.append(float(newest["score"]))
    return out


def queue_section(scores: Iterable[float], strategy: str | None) -> dict:
    """A histogram of the queue's scores over [0, 1] in QUEUE_BINS bins, with their count, mean and median."""
    vals = [min(1.0, max(0.0, float(s))) for s in scores]
    bins = [0] * QUEUE_BINS
    for v in vals:
        bins[min(QUEUE_BINS - 1, int(v * QUEUE_BINS))] += 1
    return {"tasks": len(vals), "bins": bins, "mean": statistics.fmean(vals) if vals else None,
            "median": statistics.median(vals) if vals else None, "strategy": strategy, "as_of": time.time()}


def last_log_line(path: str | Path | None) -> str | None:
    """The last non-empty line of a log file (read from its tail), None when there is none."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return _short(lines[-1], 400) if lines else None


def build_snapshot(db, project_id: int, *, title: str | None = None, stopping: dict | None = None, queue_scores: Iterable[float] | None = None,
                   starter: dict | None = None, log_path: str | Path | None = None, previous: dict | None = None) -> dict:
    """The snapshot dict of a project from the store (versions, effort rows) and what the caller knows."""
    pid = int(project_id)
    versions = store.list_versions(db, pid)
    rows = store.list_effort(db, pid)
    project = store.get_project(db, pid) or {}
    vrows = version_rows(versions)
    evaluated = [v for v in vrows if v.get("labeled_docs")]
    last = versions[-1] if versions else None
    snap: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "project_id": pid, "title": title or project.get("title") or f"project {pid}",
        "schema_name": project.get("schema_name"), "written_at": time.time(),
        "labels": {"annotations": len(rows), "completed": sum(1 for r in rows if not r.get("skipped")),
                   "labeled_docs": evaluated[-1]["labeled_docs"] if evaluated else None,
                   "pool_docs": evaluated[-1].get("pool_docs") if evaluated else None},
        "versions": vrows, "versions_total": len(versions),
        "effort": effort_section(rows), "effort_over_time": effort_buckets(rows),
        "stopping": {k: stopping.get(k) for k in ("stop", "reason", "pool_agreement", "metric_gain_per_100_labels")} if stopping else None,
        "last_round": ({"version": last["version"], "status": last.get("status"), "started_at": last.get("started_at"),
                        "line": _short(f"{last['version']}: {last.get('status')} — {last.get('decision')}", 400)} if last else None),
    }
    strategy = next((v.get("strategy") for v in reversed(vrows) if v.get("status") == "promoted" and v.get("strategy")), None)
    fresh = {"queue": queue_section(queue_scores, strategy) if queue_scores is not None else None,
             "starter": ({k: (_short(v) if isinstance(v, str) else v) for k, v in starter.items() if k != "pid"} | {"as_of": time.time()}
                         if starter else None),
             "log_line": {"line": line, "as_of": time.time()} if (line := last_log_line(log_path)) else None}
    for key in CARRIED:  # what this caller cannot see stays as the previous snapshot had it, with its own time
        snap[key] = fresh[key] if fresh[key] is not None else (previous or {}).get(key)
    return snap


def _fit(snap: dict) -> bytes:
    """The snapshot as JSON within MAX_SNAPSHOT_BYTES: drop the oldest versions (then per-version effort) until it fits."""
    data = json.dumps(snap, separators=(",", ":"), default=str).encode()
    while len(data) > MAX_SNAPSHOT_BYTES and (snap["versions"] or snap["effort"]["by_version"]):
        if snap["versions"]:
            snap["versions"] = snap["versions"][len(snap["versions"]) // 2 :] if len(snap["versions"]) > 1 else []
        else:
            snap["effort"]["by_version"] = {}
        data = json.dumps(snap, separators=(",", ":"), default=str).encode()
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise ValueError(f"dashboard snapshot of project {snap['project_id']} is {len(data)} bytes, over {MAX_SNAPSHOT_BYTES}")
    return data


def write_snapshot(db, registry_or_models_dir: Registry | str | Path, project_id: int, *, title: str | None = None,
                   stopping: dict | None = None, queue_scores: Iterable[float] | None = None, client=None,
                   starter: dict | None = None, log_path: str | Path | None = None) -> Path:
    """Write a project's dashboard snapshot (atomically) to ``<models>/<project>/dashboard.json``; returns its path.

    stopping: ``server.loop.stopping_report`` of the project's versions; queue_scores: the unlabeled tasks' order
    scores, or client: a Label Studio client to read them from (one pass over the tasks); starter:
    ``server.starters.state``; log_path: the round's log, whose last line is shown. What is not given is carried over
    from the previous snapshot (stopping and the store's numbers are always fresh).
    """
    registry = _registry(registry_or_models_dir)
    key = str(int(project_id))
    path = registry.path(key, file=SNAPSHOT_FILE)
    if queue_scores is None and client is not None:
        from . import ls_client

        queue_scores = queue_scores_of(ls_client.iter_tasks(client, int(project_id)))
    try:
        previous = json.loads(path.read_text(encoding="utf-8")) if path.stat().st_size <= MAX_SNAPSHOT_BYTES else None
    except (OSError, ValueError):  # none yet, or unreadable: nothing to carry over
        previous = None
    snap = build_snapshot(db, int(project_id), title=title, stopping=stopping, queue_scores=queue_scores, starter=starter,
                          log_path=log_path, previous=previous if isinstance(previous, dict) else None)
    data = _fit(snap)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = registry.path(key, file=f".dashboard-{uuid.uuid4().hex}.json")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)  # the backend reads a whole snapshot or the previous one, never half of one
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; left only by a failed write
    return path


def write_snapshot_quietly(ctx, stopping: dict | None = None, *, starter: dict | None = None, read_queue: bool = True,
                           queue_scores: Iterable[float] | None = None) -> Path | None:
    """``write_snapshot`` for an open ``server.project.ProjectContext`` (after a round, in `goldloop report`), with the
    queue's scores given (a job's publish computed them) or read from its Label Studio client (``read_queue``), and the last line of the project's round log; None
    instead of an error, since a job or a report must not fail for its dashboard."""
    try:
        return write_snapshot(ctx.db, ctx.registry, ctx.pid, title=getattr(ctx.project, "title", None), stopping=stopping,
                              queue_scores=queue_scores, client=ctx.client if read_queue and queue_scores is None else None, starter=starter,
                              log_path=ctx.settings.data_dir.log(f"train-{ctx.pid}"))
    except (OSError, ValueError, sqlite3.Error, ServerError) as exc:  # a full disk, a locked store, Label Studio gone
        log.warning("project %s: dashboard snapshot not written: %s", ctx.pid, exc)
        return None
