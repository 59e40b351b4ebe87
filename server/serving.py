"""Serving the ML backend: waitress in this process, or a gunicorn master with --workers N; who may reach it; and the
START_TRAINING trainer the backend is given (a round in a child process). `goldloop backend` parses its options and
calls ``serve``; `goldloop up` starts that command as a child (server/stack.py).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Callable

from .config import Settings
from .errors import ConfigError, LoopError
from .locks import EXIT_ROUND_RUNNING

log = logging.getLogger(__name__)

TRAINER_SPEC = "server.serving:worker_trainer"  # what gunicorn workers import (ml_backend.wsgi reads it from the environment)


def serve(settings: Settings, host: str, port: int, threads: int | None, insecure: bool, echo: Callable[[str], None] = print) -> None:
    """Serve until stopped: check access first, then gunicorn (this process becomes its master) or waitress."""
    check_access(settings, host, port, insecure, echo)
    if settings.backend_workers < 1:
        raise ConfigError(f"GOLDLOOP_BACKEND_WORKERS must be 1 or more, got {settings.backend_workers}")
    if settings.backend_workers > 1:
        exec_gunicorn(settings, host, port, threads or 8, echo)  # does not return
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # one process: its own metrics, as they always were
    from ml_backend import create_app  # heavy imports only when serving

    import waitress

    app = create_app(settings.backend_settings())
    if settings.ls_url and settings.ls_api_key:
        # START_TRAINING runs a full round server-side, promoting into this process's registry
        app.extensions["goldloop"].trainer = backend_trainer(settings)
    echo(f"goldloop backend on http://{host}:{port} (model {settings.model}, quantize {settings.quantize}, "
         f"device {app.extensions['goldloop'].device})")
    waitress.serve(app, host=host, port=port, threads=threads or 8, ident="goldloop")


def exec_gunicorn(settings: Settings, host: str, port: int, threads: int, echo: Callable[[str], None] = print) -> None:
    """Become a gunicorn master (the same pid: `goldloop down` and `goldloop status` find it) serving
    settings.backend_workers processes of ml_backend.wsgi; each rebuilds the settings from the environment."""
    import importlib.util

    from ml_backend import wsgi

    from .config import ENV_DEVICE, ENV_HOME, ENV_MODEL, ENV_QUANTIZE

    if importlib.util.find_spec("gunicorn") is None:
        raise ConfigError("--workers above 1 needs gunicorn: pip install gunicorn")
    n = settings.backend_workers
    backend = settings.backend_settings()
    if not backend.threads:  # torch threads: the cores shared among the workers, not every core for each
        backend = backend.with_overrides(threads=max(1, len(os.sched_getaffinity(0)) // n))
    env = {**os.environ, **wsgi.settings_to_env(backend), ENV_HOME: str(settings.home), ENV_MODEL: settings.model_name,
           ENV_QUANTIZE: settings.quantize, ENV_DEVICE: settings.device}
    if settings.ls_url and settings.ls_api_key:
        env.setdefault(wsgi.ENV_TRAINER, TRAINER_SPEC)
    echo(f"goldloop backend on http://{host}:{port}: {n} gunicorn workers x {threads} threads (model {settings.model}, "
         f"quantize {settings.quantize}, {backend.threads} torch threads each)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "gunicorn", *wsgi.gunicorn_args(host, port, n, threads)], env)


def worker_trainer():
    """The START_TRAINING trainer of one gunicorn worker (``GOLDLOOP_BACKEND_TRAINER=server.serving:worker_trainer``,
    read by ml_backend.wsgi): the round the one-process backend runs, or None without Label Studio."""
    settings = Settings.from_env()
    if not (settings.ls_url and settings.ls_api_key):
        return None
    return backend_trainer(settings)


def check_access(settings: Settings, host: str, port: int, insecure: bool, echo: Callable[[str], None] = print) -> None:
    """Refuse basic auth without a strong password and a public --host without auth (unless --insecure, then warn
    loudly); say which Host names a public backend answers."""
    from ml_backend.auth import ANY_HOST, check_basic_auth, is_loopback
    from ml_backend.errors import BackendConfigError

    from .config import ENV_ALLOWED_HOSTS, ENV_BASIC_AUTH_PASS, ENV_BASIC_AUTH_USER

    try:
        check_basic_auth(settings.basic_auth_user, settings.basic_auth_pass, ENV_BASIC_AUTH_USER, ENV_BASIC_AUTH_PASS)
    except BackendConfigError as exc:
        raise ConfigError(str(exc)) from None
    if is_loopback(host):
        return
    if not settings.basic_auth_user:
        if not insecure:
            raise ConfigError(f"--host {host} is reachable from other machines: set {ENV_BASIC_AUTH_USER} and "
                              f"{ENV_BASIC_AUTH_PASS}, or pass --insecure")
        warning = (f"--insecure: the backend on {host}:{port} has no authentication and is reachable from other machines: "
                   "anyone who reaches it can predict, train and read model versions")
        log.warning(warning)
        print(f"WARNING: {warning}", file=sys.stderr)
    allowed = settings.backend_settings().allowed_hosts
    if ANY_HOST not in allowed:
        names = ", ".join(("loopback names", *allowed))
        print(f"the backend answers requests addressed to {names} only; set {ENV_ALLOWED_HOSTS} to the names "
              f"other machines use (comma-separated, or {ANY_HOST})", file=sys.stderr)


def backend_trainer(settings: Settings):
    """The training callback the backend is given: START_TRAINING runs a round (server.jobs.train, the auto-distill
    rule included).

    The round runs as a child process (``python -m server.jobs round``) at lower CPU priority: /predict keeps
    answering from the serving version, a crashed or killed job cannot touch the server, and the backend picks the
    promoted version up from serving.json on its next request. When another process (`goldloop train`, another
    worker) holds the project's round lock, the child exits EXIT_ROUND_RUNNING and the trigger is dropped: the
    running round already trains on the labels that fired it.
    """
    from .config import ENV_DEVICE, ENV_QUANTIZE

    def trainer(project: str, event: dict) -> None:
        cmd = [sys.executable, "-m", "server.jobs", "round", str(project), "--data-dir", str(settings.home),
               "--trigger", str(event.get("action", "webhook"))]
        log_path = settings.data_dir.log(f"train-{project}")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # the round serves what the backend serves: with int8 it prebuilds the graph before promoting
        env = {**os.environ, ENV_QUANTIZE: settings.quantize, ENV_DEVICE: settings.device}
        with open(log_path, "ab") as log_file:
            proc = subprocess.run(cmd, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(10),
                                  check=False, env=env)
        if proc.returncode == EXIT_ROUND_RUNNING:  # another process runs this project's round: this trigger is served by it
            log.info("project %s: %s skipped, a round of this project already runs in another process (see %s)",
                     project, event.get("action", "webhook"), log_path)
            return
        if proc.returncode != 0:
            raise LoopError(f"training round for project {project} exited {proc.returncode}; see {log_path}")

    return trainer


def main(argv=None) -> int:
    """``python -m server.serving --data-dir DIR --host H --port P [--workers N]``: the backend `goldloop up` starts
    (what `goldloop backend` serves in the foreground)."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m server.serving")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {"backend_workers": args.workers} if args.workers else {}
    settings = Settings.from_env(home=Path(args.data_dir).expanduser().resolve(), host=args.host, backend_port=args.port, **overrides)
    try:
        serve(settings, args.host, args.port, None, insecure=False, echo=lambda line: print(line, flush=True))
    except ConfigError as exc:  # one line in the backend's log, as `goldloop backend` prints it
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
