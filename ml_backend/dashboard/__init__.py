"""The per-project dashboard the backend serves at GET /dashboard: HTML with inline CSS and server-side SVG charts.

The backend knows model versions (the registry) but nothing of Label Studio, the store or the loop, so the server
side writes a snapshot of aggregates beside the versions (``<models>/<project>/dashboard.json``,
``server/dashboard_data.py``) after each round and each `goldloop report`; the page is rendered from that snapshot
plus what the registry knows. This module holds the snapshot's contract, shared by both sides: its file name, its
schema version and its bounds. Flask-free.
"""
from __future__ import annotations

import json
import logging

from ..errors import UnsafePath

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "dashboard.json"
SCHEMA_VERSION = 1
# Bounds: the snapshot holds aggregates, never one row per annotation or task, so its size does not grow with the
# project. At most MAX_VERSIONS version rows (the newest; each decision cut at MAX_TEXT chars), MAX_BUCKETS time
# buckets of annotator effort, QUEUE_BINS histogram bins: about 100 KB at the limits; the writer refuses to write
# more than MAX_SNAPSHOT_BYTES (it drops the oldest versions first) and the reader ignores a larger file.
MAX_VERSIONS = 100
MAX_BUCKETS = 40
QUEUE_BINS = 20
MAX_TEXT = 240
MAX_SNAPSHOT_BYTES = 256 * 1024


def read_snapshot(registry, project: str) -> tuple[dict | None, str | None]:
    """(snapshot, None) for a project's readable snapshot, else (None, why it is missing) — never raises for a bad
    file: the page then says what is missing and shows what the registry has."""
    try:
        path = registry.path(project, file=SNAPSHOT_FILE)
    except UnsafePath as exc:
        return None, str(exc)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None, "no dashboard snapshot yet: it is written after each round and by `goldloop report`"
    if size > MAX_SNAPSHOT_BYTES:
        return None, f"the dashboard snapshot is {size} bytes, over the {MAX_SNAPSHOT_BYTES}-byte bound: ignored"
    try:
        snap = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # a half-written or foreign file: the page still renders
        log.warning("project %s: unreadable dashboard snapshot %s: %s", project, path, exc)
        return None, f"the dashboard snapshot is unreadable ({type(exc).__name__})"
    if not isinstance(snap, dict) or snap.get("schema") != SCHEMA_VERSION:
        return None, f"the dashboard snapshot has another schema (expected {SCHEMA_VERSION}); the next round rewrites it"
    return snap, None
