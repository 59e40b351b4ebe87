"""What the backend reads from the configuration: one dataclass, filled by ``server.config.Settings.backend_settings()``."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .auth import normalize_hosts

# autocast precision (models.torch_utils.amp_dtype): auto = bf16 (fp16 without bf16) on CUDA, fp32 on the CPU;
# bf16 = bf16 autocast on the CPU too (faster steps on CPUs with AVX-512 BF16 or AMX, docs/benchmarks.md
# "Precision"); fp32 = no autocast anywhere
PRECISIONS = ("auto", "bf16", "fp32")


def check_precision(spec: str, name: str = "precision") -> str:
    """``auto | bf16 | fp32`` normalised; anything else raises ValueError naming ``name`` and the value."""
    value = str(spec).strip().lower()
    if value not in PRECISIONS:
        raise ValueError(f"{name} must be {', '.join(PRECISIONS)}, got {spec!r}")
    return value


@dataclass(frozen=True)
class BackendSettings:
    """The backend's configuration: the encoder, serving precision and device, limits, where model versions live, auth."""

    model: str  # HF model id or local path of the encoder (cold-start prototypes, fine-tuning base)
    models_dir: Path  # model versions: <models_dir>/<project>/<version>/<control>/
    quantize: str = "none"  # one of ml_backend.models.hf.QUANTIZE_MODES
    threads: int = 0  # torch / ONNX Runtime intra-op threads; 0: one per available core
    device: str = "auto"  # auto | cpu | cuda | cuda:N (models.torch_utils.resolve_device); auto: CUDA when torch sees one
    precision: str = "auto"  # auto | bf16 | fp32 (PRECISIONS above); bf16: autocast on the CPU too
    max_length: int = 256  # tokens per window (incl. special tokens)
    cache_size: int = 50_000  # predictions kept in the LRU cache
    max_text_chars: int = 500_000  # a longer task text gets an empty prediction
    # project models held in memory per process: past it the least recently used is unloaded (reloaded from disk on
    # its next request); each holds one model per control (a fine-tuned MiniLM control ~90 MB, +~25 MB int8)
    max_loaded_projects: int = 8
    # project keys a process accepts (those with a models dir count, plus new ones seen since the start): a request
    # naming a new one past it answers 400, so requests cannot create files or state for unbounded project ids
    max_projects: int = 500
    # share of tasks served without suggestions (ml_backend.control_group): the effort report's control group;
    # goldloop's commands set it from GOLDLOOP_CONTROL_SHARE (default 0.05), a library caller gets none unless it asks
    control_share: float = 0.0
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = field(default=None, repr=False)
    # Host header names answered besides the loopback ones (auth.host_allowed); "*": any
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "allowed_hosts", normalize_hosts(self.allowed_hosts))  # a JSON list comes back a tuple

    def with_overrides(self, **kw) -> "BackendSettings":
        """A copy with the given fields replaced (unknown names and None values are ignored)."""
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in kw.items() if k in known and v is not None})
