"""Low-level torch / transformers helpers shared by the model classes, fine-tuning and MLM.

Nothing here knows a model kind: the lazy transformers import and its lock, torch's thread count,
padding, length-sorted token-budget batches, softmax/sigmoid and masked mean pooling.
"""
from __future__ import annotations

import os
import threading
from typing import Sequence

import numpy as np

# transformers resolves its attributes lazily and that is not thread-safe: two threads loading models at
# once (the backend warms several projects in parallel) can see "no attribute 'AutoTokenizer'". Every
# access to it goes through this lock.
LOAD_LOCK = threading.RLock()
_threads_set = False


def transformers_module():
    """The transformers module, quiet, with the classes goldloop uses resolved under the load lock."""
    with LOAD_LOCK:
        import transformers

        for name in ("AutoTokenizer", "AutoModel", "AutoModelForTokenClassification", "AutoModelForSequenceClassification"):
            getattr(transformers, name)
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        return transformers


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def set_torch_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads from the machine (once per process unless a number is given)."""
    global _threads_set
    import torch

    n = threads or available_cores()
    if threads or not _threads_set:
        torch.set_num_threads(n)
        _threads_set = True
    return torch.get_num_threads()


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int):
    """Right-padded ``input_ids`` [n, longest] and the matching ``attention_mask`` (1 on real tokens), as long tensors."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids, mask


def length_batches(lengths: Sequence[int], batch_size: int | None, token_budget: int | None) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most ``batch_size`` items and ``token_budget`` padded tokens.

    Sorting keeps padding small; ``None`` lifts a limit. A sequence longer than the budget runs alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in order:
        width = lengths[i]  # sorted ascending: the newcomer is the widest
        full = batch_size is not None and len(batch) >= batch_size
        over = token_budget is not None and width * (len(batch) + 1) > token_budget
        if batch and (full or over):
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Element-wise logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def mean_pool(hidden, attention_mask):
    """The attention-masked mean of hidden states [n, T, d] → [n, d] (padding never counts)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def pooled_output(model, input_ids, attention_mask):
    """The vector a mean-pooling classification head sees: the masked mean of the last hidden states."""
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return mean_pool(hidden, attention_mask)
