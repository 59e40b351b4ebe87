"""Online learning shared by every backend process: an append-only log of taught annotations per project version.

An annotation from an ANNOTATION_CREATED / ANNOTATION_UPDATED webhook is reduced to what the cold-start models
learn from (the texts the labeling config reads, the result items of its controls) and appended as one JSON
line to ``<models>/<project>/online-<version>.jsonl``. Every worker process replays the lines it has not
applied yet before it serves the project (one ``stat`` per request when nothing changed), so whichever worker
received the webhook, all of them serve what it taught. A promotion starts a new version, hence a fresh log:
the trained version has learned from the labels themselves.

Bounded: a record over ``MAX_RECORD_BYTES`` is not written, and a log that reached ``MAX_LOG_BYTES`` takes no
more lines (online learning of that version pauses until the next round promotes; the promotion removes the older
versions' logs). The path comes from
``Registry.path`` (validated project key and version), never from request data.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

from .schema import TaskSpec

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 4 * 1024 * 1024  # a task at the text limit (500,000 characters) with its result items fits
# per project: a promotion removes the other versions' logs (Registry.drop_online_logs), so one log per project
# grows; with settings.max_projects (500) that bounds the disk the logs take at 8 GiB, and the replay on a worker's
# first load of a project reads at most this much
MAX_LOG_BYTES = 16 * 1024 * 1024
LOG_PREFIX = "online-"


def record_for(spec: TaskSpec, data: dict, result: list, controls: set[str] | None = None) -> dict | None:
    """The part of an annotation the online models learn from, or None when it teaches nothing.

    Keeps the task texts the controls read and the result items of the controls (of ``controls`` when given:
    those whose model learns online), tagged with the labeling config's hash so that a log is only replayed
    into models of the same config.
    """
    names = {c.name for c in spec.controls if controls is None or c.name in controls}
    items = [r for r in result if isinstance(r, dict) and r.get("from_name") in names]
    fields = {c.value_field for c in spec.controls if c.name in names}
    texts = {f: data[f] for f in sorted(fields) if isinstance(data.get(f), str)}
    if not items or not texts:
        return None
    return {"config_hash": spec.config_hash, "data": texts, "result": items}


class OnlineLog:
    """One version's log: ``append`` a record (any process), ``read_from`` an offset (complete lines only)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, record: dict) -> bool:
        """Append one record as a line; False (and a log line) when it is too large or the log is full."""
        try:
            line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as exc:  # a lone surrogate in a result item, say
            log.warning("online learning: annotation not recorded (%s)", type(exc).__name__)
            return False
        if len(line) > MAX_RECORD_BYTES:
            log.warning("online learning: annotation of %d bytes not recorded (limit %d)", len(line), MAX_RECORD_BYTES)
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # one writer at a time: lines never interleave
            if os.fstat(fd).st_size + len(line) > MAX_LOG_BYTES:
                log.warning("online learning: %s is full (%d bytes); paused until the next round promotes", self.path.name, MAX_LOG_BYTES)
                return False
            os.write(fd, line)
        finally:
            os.close(fd)  # drops the flock
        return True

    def read_from(self, offset: int) -> tuple[list[dict], int]:
        """The records after byte ``offset`` and the offset after the last complete line read."""
        size = self.size()
        if size <= offset:
            return [], offset
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read(size - offset)
        end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
        records = []
        for raw in chunk[:end].splitlines():
            try:
                rec = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                log.warning("online learning: skipping an unreadable line in %s", self.path.name)
                continue
            if isinstance(rec, dict) and isinstance(rec.get("data"), dict) and isinstance(rec.get("result"), list):
                records.append(rec)
        return records, offset + end
