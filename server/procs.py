"""Process liveness checks shared by the stack (its pid files) and exports (their temp-dir owners); the CPU a process
group used (the stack's start-up waits tell a busy child from a stuck one by it)."""
from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int | None) -> bool:
    """True when the process exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _stat_fields(path: Path) -> list[str] | None:
    """The fields of a /proc/<pid>/stat after the command name (state first), None when unreadable."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def group_cpu_seconds(pgid: int) -> float | None:
    """CPU seconds used so far by the processes of a process group (user + system, with their reaped children);
    None where /proc cannot tell (not Linux). A child started in its own session leads a group of its own pid."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    ticks = 0
    for stat in proc.glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields and len(fields) > 14 and fields[2] == str(pgid):  # pgrp; utime stime cutime cstime at 11-14
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")
