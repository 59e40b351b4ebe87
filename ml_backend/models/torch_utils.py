"""Low-level torch / transformers helpers shared by the model classes, fine-tuning and MLM.

Nothing here knows a model kind: the lazy transformers import and its lock, torch's thread count, the
device (``resolve_device``, the process's device, mixed precision on CUDA, CPU state dicts for saving),
padding, length-sorted token-budget batches, softmax/sigmoid and masked mean pooling.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from contextlib import nullcontext
from typing import Sequence

import numpy as np

from ..settings import check_precision

log = logging.getLogger(__name__)

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


DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
# the device a model built without an explicit one runs on; a process serves or trains on one device, set
# once where it starts (the backend's app, `goldloop train`), like torch's thread count
_process_device = "auto"
_process_precision = "auto"  # one of ..settings.PRECISIONS (check_precision)


def resolve_device(spec: str | None = None):
    """``auto | cpu | cuda | cuda:N`` → a ``torch.device``; ``None``: the process's device (``set_process_device``).

    ``auto`` is the current CUDA device when torch sees one, else the CPU. A spec that is none of these, or a
    CUDA device torch does not see, raises ValueError naming the value.
    """
    import torch

    raw = _process_device if spec is None else spec
    value = str(raw).strip().lower()
    if value == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if value == "cpu":
        return torch.device("cpu")
    head, sep, index = value.partition(":")
    if head != "cuda" or (sep and not index.isdigit()):
        raise ValueError(f"device must be {DEVICE_CHOICES}, got {raw!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {raw!r} asked for, but torch sees no CUDA device (torch {torch.__version__}); use auto or cpu")
    n = int(index) if sep else torch.cuda.current_device()
    if n >= torch.cuda.device_count():
        raise ValueError(f"device {raw!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", n)


def set_process_device(spec: str, precision: str | None = None):
    """Make ``spec`` the device of every model built without an explicit one (and ``precision``, when given, the
    process's precision); returns the device resolved (validates both first)."""
    global _process_device
    device = resolve_device(spec)
    if precision is not None:
        set_process_precision(precision)
    _process_device = str(spec)
    return device


def set_process_precision(spec: str) -> str:
    """Make ``spec`` the precision every model of this process trains and predicts in (``amp_dtype``)."""
    global _process_precision
    _process_precision = check_precision(spec)
    return _process_precision


def device_name(device) -> str:
    """How the device is reported: ``cpu``, or ``cuda:N (GPU name)``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def amp_dtype(device):
    """The autocast dtype on a device under the process's precision, None for fp32: on CUDA bf16 where the GPU
    supports it, else fp16 (unless ``fp32``); on the CPU bf16 only when the precision is ``bf16``."""
    import torch

    kind = torch.device(device).type
    if _process_precision == "fp32" or kind not in ("cuda", "cpu"):
        return None
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if _process_precision != "bf16":
        return None
    if not cpu_has_native_bf16():
        _warn_emulated_bf16()
    return torch.bfloat16


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware: x86 with AVX-512 BF16 or AMX, or a CPU oneDNN runs bf16 on
    (Arm with BF16). Elsewhere torch emulates bf16 and autocast makes a step many times slower than fp32."""
    import torch

    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    if any(check is not None and check() for check in checks):
        return True
    return os.uname().machine in ("aarch64", "arm64") and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@functools.lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    log.warning("bf16 asked for on a CPU without AVX-512 BF16 or AMX: torch emulates it there, and a fine-tuning step takes "
                "about 20x as long as in fp32 (docs/gpu.md, 'Precision'); set GOLDLOOP_PRECISION=auto or fp32")


def autocast(device):
    """Autocast to ``amp_dtype`` on the device; a no-op context where that is None (fp32)."""
    import torch

    dtype = amp_dtype(device)
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype) if dtype is not None else nullcontext()


def precision_name(device) -> str:
    """What a model trains or predicts in on ``device``: ``bf16``, ``fp16`` or ``fp32`` (recorded with each fit)."""
    import torch

    return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[amp_dtype(device)]


def grad_scaler(device):
    """A GradScaler, enabled only for fp16 autocast (bf16 and fp32 need none; disabled it passes calls through)."""
    import torch

    return torch.amp.GradScaler("cuda", enabled=amp_dtype(device) == torch.float16)


def cpu_state_dict(model) -> dict:
    """The model's state dict with every tensor on the CPU: what is saved, so a model trained anywhere loads anywhere."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def device_token_budget(device, config, default: int) -> int:
    """Padded tokens per inference batch: ``default`` on the CPU; on CUDA what a quarter of the free memory holds.

    The estimate per token is the widest activations of one layer in half precision (hidden states, the
    feed-forward block and one row of attention scores per head, at the model's window), times two for the
    allocator; clamped to [default, 64 × default].
    """
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return default
    free, _ = torch.cuda.mem_get_info(device)
    hidden = getattr(config, "hidden_size", 768)
    inner = getattr(config, "intermediate_size", 4 * hidden)
    heads = getattr(config, "num_attention_heads", 12)
    window = min(getattr(config, "max_position_embeddings", 512) or 512, 512)
    per_token = 2 * 2 * (3 * hidden + inner + heads * window)
    return int(min(64 * default, max(default, free // 4 // per_token)))


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
