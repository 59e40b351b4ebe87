"""One training job per project across every process of the backend, with one queued trigger.

The job lock is ``<models>/<project>/.training.lock`` (``fcntl.flock``, dropped by the kernel when its holder
dies, however it dies); the queue is one file, ``<models>/<project>/.training-pending.json``. A START_TRAINING
that finds the lock free takes it and runs the job in a background thread. One that finds it held (by a
thread of this process or by another worker) writes the pending file, which folds any number of triggers into
one, and tries the lock once more in case the job ended meanwhile. The holder, after each job, takes the
pending trigger and runs it; after dropping the lock it looks once more, so a trigger written between its
last look and the release is never lost. The job itself (a ``goldloop train`` child) also takes the round lock
of ``server/locks.py``, which keeps a CLI round and a backend round apart.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

STARTED = "started"
QUEUED = "queued after the running job"
LOCK_FILE = ".training.lock"
PENDING_FILE = ".training-pending.json"


class TrainingQueue:
    """``submit(project, event)`` runs ``job(project, event)`` in the background: once at a time per project
    across processes, with at most one trigger waiting. ``dir_of(project)`` is the project's directory (validated
    by the caller: ``Registry.path``)."""

    def __init__(self, dir_of: Callable[[str], Path], job: Callable[[str, dict], None]):
        self.dir_of = dir_of
        self.job = job
        self._threads: dict[str, threading.Thread] = {}
        self._guard = threading.Lock()

    def _try_lock(self, project: str) -> int | None:
        """The job lock's descriptor when taken, None when some thread or process holds it."""
        d = self.dir_of(project)
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the job's child processes
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _put_pending(self, project: str, event: dict) -> None:
        d = self.dir_of(project)
        tmp = d / f".training-pending-{os.getpid()}-{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps({"action": str(event.get("action", "webhook"))[:64]}))
        os.replace(tmp, d / PENDING_FILE)  # many triggers, one file: the queue holds one

    def _take_pending(self, project: str) -> dict | None:
        """The waiting trigger, removed from the queue (only the lock holder calls this), or None."""
        path = self.dir_of(project) / PENDING_FILE
        try:
            text = path.read_text()
            path.unlink()
        except FileNotFoundError:
            return None
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        return event if isinstance(event, dict) else {"action": "webhook"}

    def submit(self, project: str, event: dict) -> str:
        """STARTED when this call started the job, QUEUED when one runs (here or in another process)."""
        fd = self._try_lock(project)
        if fd is None:
            self._put_pending(project, event)
            fd = self._try_lock(project)  # the holder may have finished between the two looks
            if fd is None:
                return QUEUED
            event = self._take_pending(project) or event
        thread = threading.Thread(target=self._run, args=(project, event, fd), name=f"train-{project}", daemon=True)
        with self._guard:
            self._threads[project] = thread
        thread.start()
        return STARTED

    def _run(self, project: str, event: dict | None, fd: int) -> None:
        while True:
            try:
                while event is not None:
                    self.job(project, event)
                    event = self._take_pending(project)
            finally:
                os.close(fd)  # drops the lock
            if not (self.dir_of(project) / PENDING_FILE).exists():
                return
            fd = self._try_lock(project)
            if fd is None:  # another process took the lock: it runs the waiting trigger
                return
            event = self._take_pending(project)

    def running_here(self, project: str) -> bool:
        """True while a thread of this process runs (or waits to run) a job of the project."""
        with self._guard:
            thread = self._threads.get(project)
        return bool(thread and thread.is_alive())
