"""One round per project across every process: a file lock in the data dir that names its holder.

``goldloop train``, the backend's START_TRAINING / every-N trigger (a ``goldloop train`` child) and any further
backend worker take the same lock, ``<data dir>/locks/round-<project id>.lock``, with ``fcntl.flock``. The kernel
drops a flock when its process ends, however it ends, so a killed round never blocks the next one. While held, the
file holds the owner (pid, host, trigger, start time, version) as JSON; a clean release empties it, so an owner
still written there when the lock is free is a round that was killed: ``acquire`` reports it as stale, and the
caller repairs what that round left behind. A second round while one runs is not queued here: it raises
RoundRunning ("already running (started by …, since …)"); the backend queues one trigger per project itself.
Needs a local file system (flock on NFS is not reliable).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import LoopError

log = logging.getLogger(__name__)

EXIT_ROUND_RUNNING = 75  # `goldloop train`'s exit status when the project's round lock is held (EX_TEMPFAIL)


@dataclass(frozen=True)
class LockOwner:
    """Who holds (or held) a round lock."""

    pid: int
    host: str
    trigger: str
    started_at: float
    version: str = ""

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        return f"started by {self.trigger} (pid {self.pid} on {self.host}), since {since}"

    @classmethod
    def parse(cls, text: str) -> "LockOwner | None":
        """The owner written in a lock file, None when empty or unreadable (a clean release, a half write)."""
        try:
            raw = json.loads(text)
            return cls(int(raw["pid"]), str(raw["host"]), str(raw["trigger"]), float(raw["started_at"]), str(raw.get("version", "")))
        except (ValueError, KeyError, TypeError):
            return None


class RoundRunning(LoopError):
    """A round of this project already runs in some process."""

    def __init__(self, project: int | str, owner: LockOwner | None):
        self.owner = owner
        who = owner.describe() if owner else "started by another process"
        super().__init__(f"project {project}: a training round is already running ({who})")


class RoundLock:
    """The round lock of one project: ``acquire`` without waiting, ``release``, or ``with``."""

    def __init__(self, path: Path, project: int | str):
        self.path = Path(path)
        self.project = project
        self._fd: int | None = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def acquire(self, trigger: str, version: str = "") -> LockOwner | None:
        """Take the lock or raise RoundRunning; returns the stale owner a killed round left, else None."""
        if self._fd is not None:
            raise LoopError(f"project {self.project}: this round lock is already held by this object")
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _wait_for_owner(fd)
            os.close(fd)
            raise RoundRunning(self.project, owner) from None
        stale = LockOwner.parse(_read(fd))
        owner = LockOwner(os.getpid(), socket.gethostname(), trigger, time.time(), version)
        data = json.dumps(asdict(owner)).encode()
        os.pwrite(fd, data, 0)  # write, then cut: the file never reads empty while held
        os.ftruncate(fd, len(data))
        self._fd = fd
        if stale is not None:
            log.warning("project %s: cleared the round lock of a round that did not finish (%s)", self.project, stale.describe())
        return stale

    def release(self) -> None:
        """Empty the file (a clean end) and drop the lock; a no-op when not held."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def holder(self) -> LockOwner | None:
        """The owner while some process holds the lock, None when it is free."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _wait_for_owner(fd) or LockOwner(0, "?", "another process", time.time())
            return None
        finally:
            os.close(fd)

    def __enter__(self) -> "RoundLock":
        self.acquire("unknown")
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _wait_for_owner(fd: int, seconds: float = 1.0) -> LockOwner | None:
    """The holder's owner record; a holder that has just taken the lock writes it within microseconds, so poll briefly."""
    deadline = time.monotonic() + seconds
    while True:
        owner = LockOwner.parse(_read(fd))
        if owner is not None or time.monotonic() >= deadline:
            return owner
        time.sleep(0.02)


def _read(fd: int) -> str:
    """The whole file behind fd (small: one JSON object)."""
    return os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
