"""The per-project round lock: one holder across processes, the holder named, a killed holder's lock cleared."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from server.datadir import DataDir
from server.locks import LockOwner, RoundLock, RoundRunning

ROOT = Path(__file__).resolve().parents[1]

HOLD = """
import sys, time
from pathlib import Path
from server.locks import RoundLock
lock = RoundLock(Path(sys.argv[1]), 7)
lock.acquire(sys.argv[2], "v-child")
print("held", flush=True)
time.sleep(60)
"""


def _hold_in_child(path: Path, trigger: str) -> subprocess.Popen:
    """A real process that takes the lock and keeps it until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), trigger], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_path_is_per_project_and_only_for_project_ids(tmp_path):
    dd = DataDir(tmp_path)
    assert dd.round_lock_path(3) == tmp_path / "locks" / "round-3.lock"
    assert dd.round_lock_path(3) != dd.round_lock_path(4)
    for bad in ("../x", "/tmp/x", "3", 0, -1, True, 1.5):
        with pytest.raises(ValueError, match="positive integer"):
            dd.round_lock_path(bad)


def test_second_acquire_says_who_runs_since_when(tmp_path):
    path = DataDir(tmp_path).round_lock_path(1)
    first = RoundLock(path, 1)
    assert first.acquire("START_TRAINING", "v1") is None
    with pytest.raises(RoundRunning) as err:
        RoundLock(path, 1).acquire("cli")
    msg = str(err.value)
    assert "already running" in msg and "START_TRAINING" in msg and f"pid {os.getpid()}" in msg and "since" in msg
    assert err.value.owner.version == "v1"
    assert RoundLock(path, 1).holder().trigger == "START_TRAINING"
    first.release()
    assert RoundLock(path, 1).holder() is None
    second = RoundLock(path, 1)
    assert second.acquire("cli") is None  # a clean release leaves no stale owner
    second.release()


def test_other_process_holding_blocks_and_its_kill_frees_the_lock(tmp_path):
    path = DataDir(tmp_path).round_lock_path(7)
    child = _hold_in_child(path, "cli")
    try:
        with pytest.raises(RoundRunning, match=f"pid {child.pid}"):
            RoundLock(path, 7).acquire("START_TRAINING")
        assert RoundLock(path, 7).holder().pid == child.pid
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert RoundLock(path, 7).holder() is None
    lock = RoundLock(path, 7)
    stale = lock.acquire("cli")
    assert isinstance(stale, LockOwner) and stale.pid == child.pid and stale.version == "v-child"
    lock.release()


def test_many_processes_racing_never_hold_it_together(tmp_path):
    path = DataDir(tmp_path).round_lock_path(2)
    journal = tmp_path / "journal"
    racer = (
        "import os, sys, time\nfrom pathlib import Path\nfrom server.locks import RoundLock, RoundRunning\n"
        "lock = RoundLock(Path(sys.argv[1]), 2)\n"
        "for _ in range(40):\n"
        "    try:\n        lock.acquire('race')\n    except RoundRunning:\n        time.sleep(0.01)\n        continue\n"
        "    with open(sys.argv[2], 'a') as fh:\n        fh.write(f'in {os.getpid()}\\n'); fh.flush()\n"
        "        time.sleep(0.05)\n        fh.write(f'out {os.getpid()}\\n')\n"
        "    lock.release()\n    time.sleep(0.01)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", racer, str(path), str(journal)], cwd=ROOT) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    lines = journal.read_text().split("\n")[:-1]
    assert len(lines) >= 8  # several holders, one after the other
    for enter, leave in zip(lines[::2], lines[1::2]):
        assert enter.startswith("in ") and leave == "out " + enter[3:]
    assert RoundLock(path, 2).holder() is None


def test_a_loser_racing_the_holders_first_write_still_names_it(tmp_path):
    """Between the holder's flock and its owner write the file is momentarily unwritten: the loser waits for the name."""
    import fcntl
    import json
    import threading
    import time

    path = tmp_path / "round.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held, nothing written yet (another open file description: flock conflicts)
    owner = {"pid": 4242, "host": "h", "trigger": "START_TRAINING", "started_at": time.time(), "version": ""}
    writer = threading.Timer(0.2, lambda: os.pwrite(fd, json.dumps(owner).encode(), 0))
    writer.start()
    try:
        with pytest.raises(RoundRunning, match=r"started by START_TRAINING \(pid 4242"):
            RoundLock(path, 7).acquire("cli")
        assert RoundLock(path, 7).holder().pid == 4242
    finally:
        writer.join()
        os.close(fd)
