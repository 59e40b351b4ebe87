"""The versioned job runner: every job that may make a new model version (a round, pretrain, a starter, a
distillation) runs through ``run_job``, which holds the project's round lock, settles versions a killed process left
"running", records the version as running, runs the job's build step, and records how it ended (promoted, rejected,
not started, failed, with why and how long). Jobs differ only in how they build and judge their candidate.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from typing import Any, Callable

from ml_backend.registry import new_version_name

from . import ls_client, store
from .errors import ExportError, LoopError
from .project import ProjectContext

log = logging.getLogger(__name__)


def recover_interrupted(ctx: ProjectContext) -> list[dict]:
    """Settle the versions of a project that a killed process left "running"; call it holding the round lock.

    A job killed after serving.json named its version did promote (Label Studio adopted it first); any other is
    "interrupted": its files were never named by serving.json, so nothing serves or lists them, and Label Studio's
    project version goes back to the one that serves when the killed job had already switched it.
    """
    pid, registry = ctx.pid, ctx.registry
    serving = registry.current_version(ctx.key)
    settled = []
    for row in store.running_versions(ctx.db, pid):
        if row["version"] == serving:
            change = {"status": "promoted", "decision": "promoted; the round's process ended before it recorded the result"}
        else:
            change = {"status": "interrupted", "decision": "the round's process ended before the round finished (killed?)"}
        store.record_version(ctx.db, project_id=pid, version=row["version"], **change)
        settled.append({**row, **change})
        log.warning("project %s: round %s %s", pid, row["version"], change["decision"])
    interrupted = {r["version"] for r in settled if r["status"] == "interrupted"}
    for v in interrupted:  # a half-saved version folder: serving.json never named it, nothing lists or serves it
        vdir = registry.path(ctx.key, v)
        if vdir.is_dir():
            shutil.rmtree(vdir, ignore_errors=True)
    if interrupted:
        current = getattr(ls_client.get_project(ctx.client, pid), "model_version", None)
        if current in interrupted and not serving.startswith("coldstart"):
            ls_client.adopt_model_version(ctx.client, pid, serving)
    return settled


def run_job(ctx: ProjectContext, build: Callable[[str], dict], *, kind: str, trigger: str, strategy: str,
            hyperparameters: dict, record: dict | None = None) -> dict:
    """Run one versioned job of a project; returns (and stores) its version record.

    build(version) makes, judges and (when it promotes) publishes the candidate, returning the record's columns.
    An export with nothing to train on leaves the version "not started"; a job error (LoopError, ValueError) leaves
    it "failed" with the message; any other exception too, with its traceback in the log: a crashed job never
    touches the serving version. RoundRunning (another process holds the project's lock) propagates.
    """
    version = new_version_name()
    lock = ctx.lock(trigger, version)
    try:
        recover_interrupted(ctx)
        started = time.time()
        row: dict[str, Any] = {"project_id": ctx.pid, "version": version, "trigger": trigger, "started_at": started, "status": "running",
                               "hyperparameters": json.dumps(hyperparameters, default=str), "strategy": strategy, **(record or {})}
        store.record_version(ctx.db, **row)
        try:
            row.update(build(version))
        except (ExportError, LoopError, ValueError) as exc:
            row.update(status="not started" if isinstance(exc, ExportError) else "failed", decision=str(exc))
            log.warning("project %s: %s %s did not run: %s", ctx.pid, kind, version, exc)
        except Exception as exc:  # a crashed job must leave the serving version untouched and say why
            row.update(status="failed", decision=f"{type(exc).__name__}: {exc}")
            log.exception("project %s: %s %s failed", ctx.pid, kind, version)
        row["duration_s"] = round(time.time() - started, 2)
        store.record_version(ctx.db, **row)
        return store.get_version(ctx.db, ctx.pid, version)
    finally:
        lock.release()
