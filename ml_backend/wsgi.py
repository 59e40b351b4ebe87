"""The backend as a WSGI app for several worker processes: ``gunicorn -c python:ml_backend.wsgi ml_backend.wsgi:app``.

`goldloop backend --workers N` runs exactly that. Each worker builds its own app from the environment the
first time ``app`` is read (importing this module builds nothing, so gunicorn's master stays light and
forks no model):

- ``GOLDLOOP_BACKEND_SETTINGS``: a JSON object of ``BackendSettings`` fields (``settings_to_env`` writes it);
- ``GOLDLOOP_BACKEND_TRAINER`` (optional): ``"module:callable"``, called once per worker with no argument; it
  returns the START_TRAINING trainer or None (goldloop's own: ``server.serving:worker_trainer``).

Read as a gunicorn config module (``-c python:ml_backend.wsgi``) it also gives the hooks that make /metrics
add up every worker: ``on_starting`` points ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory (a fresh temp
dir unless one is set: emptied then) before any worker starts, ``child_exit`` marks a dead worker's live
gauges gone, ``on_exit`` removes the temp dir it made. What the workers share otherwise lives in the models
dir: promotions (serving.json), online learning (``online``), the training queue (``jobs``).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from .settings import BackendSettings

ENV_SETTINGS = "GOLDLOOP_BACKEND_SETTINGS"
ENV_TRAINER = "GOLDLOOP_BACKEND_TRAINER"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_OWN_DIR_ENV = "GOLDLOOP_METRICS_DIR_OWNED"  # set when on_starting made the directory (on_exit removes it)
WORKER_TIMEOUT_S = 120  # a /predict batch may take Label Studio's 100 s; a worker silent longer is restarted
GRACEFUL_TIMEOUT_S = 10  # below `goldloop down`'s SIGKILL after 15 s

_built: dict[str, Any] = {}
_build_lock = threading.Lock()


def settings_to_env(settings: BackendSettings) -> dict[str, str]:
    """The environment entry a worker rebuilds ``settings`` from."""
    raw = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    return {ENV_SETTINGS: json.dumps(raw)}


def settings_from_env(env: dict[str, str] | None = None) -> BackendSettings:
    """``BackendSettings`` from ``GOLDLOOP_BACKEND_SETTINGS``; ValueError naming what is missing or wrong."""
    env = os.environ if env is None else env
    text = env.get(ENV_SETTINGS)
    if not text:
        raise ValueError(f"{ENV_SETTINGS} is not set: start the workers with `goldloop backend --workers N`, "
                         "or set it to a JSON object of BackendSettings fields (at least model and models_dir)")
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError(f"{ENV_SETTINGS} is not JSON") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{ENV_SETTINGS} must be a JSON object, got {type(raw).__name__}")
    known = {f.name for f in fields(BackendSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{ENV_SETTINGS} has unknown fields {unknown}; known: {sorted(known)}")
    missing = sorted({"model", "models_dir"} - set(raw))
    if missing:
        raise ValueError(f"{ENV_SETTINGS} lacks {missing}")
    raw["models_dir"] = Path(raw["models_dir"])
    return BackendSettings(**raw)


def trainer_from_env(env: dict[str, str] | None = None):
    """The trainer the ``GOLDLOOP_BACKEND_TRAINER`` factory returns, or None when it is not set."""
    env = os.environ if env is None else env
    spec = env.get(ENV_TRAINER)
    if not spec:
        return None
    module, sep, name = spec.partition(":")
    if not sep or not module or not name.isidentifier():
        raise ValueError(f"{ENV_TRAINER} must be 'module:callable', got {spec!r}")
    factory = getattr(importlib.import_module(module), name, None)
    if not callable(factory):
        raise ValueError(f"{ENV_TRAINER}: {module} has no callable {name}")
    return factory()


def app_from_env(env: dict[str, str] | None = None):
    """A new backend app from the environment (settings and trainer)."""
    from . import create_app

    return create_app(settings_from_env(env), trainer=trainer_from_env(env))


def __getattr__(name: str):
    """``app``: this process's app, built on first use (module attribute lookup: PEP 562)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _build_lock:
        if "app" not in _built:
            _built["app"] = app_from_env()
    return _built["app"]


def gunicorn_args(host: str, port: int, workers: int, threads: int, worker_class: str = "gthread") -> list[str]:
    """gunicorn's command-line arguments for ``workers`` processes on host:port.

    gthread (the default): ``threads`` threads per process, so /health answers while a /predict runs; sync: one
    request at a time per process.
    """
    bind = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    return [
        "--config", f"python:{__name__}", "--bind", bind, "--workers", str(workers),
        "--worker-class", worker_class, "--threads", str(threads),
        "--timeout", str(WORKER_TIMEOUT_S), "--graceful-timeout", str(GRACEFUL_TIMEOUT_S),
        f"{__name__}:app",
    ]  # fmt: skip


# --- gunicorn server hooks (read from this module by `-c python:ml_backend.wsgi`) -------------------------


# no control socket in ~/.gunicorn (newer gunicorn makes one per master: two backends would share it);
# a gunicorn without that feature ignores the name
control_socket_disable = True


def on_starting(server) -> None:  # noqa: ARG001 - gunicorn hook signature
    """In the master, before any worker: an empty metrics directory for this start, in the workers' environment."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for entry in Path(path).glob("*.db"):  # values of a previous start are no values of this one
            entry.unlink()
    else:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="goldloop-metrics-")
        os.environ[_OWN_DIR_ENV] = "1"


def child_exit(server, worker) -> None:  # noqa: ARG001 - gunicorn hook signature
    """A worker ended: its live gauges (cache, worker count) leave /metrics; its counters stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ.get(MULTIPROC_ENV))


def on_exit(server) -> None:  # noqa: ARG001 - gunicorn hook signature
    if os.environ.get(_OWN_DIR_ENV) and os.environ.get(MULTIPROC_ENV):
        shutil.rmtree(os.environ[MULTIPROC_ENV], ignore_errors=True)
