"""The one train/val/test split: a stable hash of the task id, 70/15/15. Shared by training and export."""
from __future__ import annotations

import hashlib

SPLITS = ("train", "dev", "test")
_TRAIN, _DEV = 70, 85  # percent thresholds: [0,70) train, [70,85) dev, [85,100) test


def split_of(task_id: object) -> str:
    """Return 'train', 'dev' or 'test' for a task id; never changes for a given id."""
    h = int.from_bytes(hashlib.sha256(str(task_id).encode("utf-8")).digest()[:8], "big") % 100
    if h < _TRAIN:
        return "train"
    if h < _DEV:
        return "dev"
    return "test"
