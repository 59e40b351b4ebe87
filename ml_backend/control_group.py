"""The control group: a stable share of tasks served without suggestions, so that time saved is measured.

A task is in the control group when a hash of its id falls below the share: the same task is always in or out
(whichever process, whichever round), about ``share`` of any set of tasks is in, and nothing about the task's
content decides it. The backend answers such a task's /predict with an empty result, and rounds and imports
store no prediction for it, so its annotator labels from scratch in the same interface; the effort report
compares the seconds of both groups (server/effort.py).
"""
from __future__ import annotations

import hashlib

DEFAULT_SHARE = 0.05  # GOLDLOOP_CONTROL_SHARE; 0 turns it off
SALT = b"goldloop-control-group:"  # fixed: a task's group never changes


def in_control_group(task_id: object, share: float) -> bool:
    """True when the task with this Label Studio id is served without suggestions; False for share 0 or an id
    that is no integer (a task Label Studio has not stored yet)."""
    if share <= 0 or isinstance(task_id, bool) or not isinstance(task_id, int):
        return False
    digest = hashlib.sha256(SALT + str(task_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def check_share(value: float, name: str = "control share") -> float:
    """A share in [0, 0.5]; ValueError naming ``name`` otherwise (more than half without suggestions defeats the tool)."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 0.5, got {value!r}") from None
    if not 0.0 <= share <= 0.5:
        raise ValueError(f"{name} must be between 0 and 0.5, got {value!r}")
    return share


def shown_result(task_id: object, result: list, share: float) -> list:
    """The result a stored prediction of this task carries: empty for the control group, else ``result``."""
    return [] if in_control_group(task_id, share) else result
