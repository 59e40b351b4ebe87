"""Start, stop and check the local stack: a real Label Studio and the goldloop ML backend, as child processes."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests

from . import store
from .config import ENV_HOME, ENV_LS_API_KEY, ENV_LS_URL, LOCAL_HOST, Settings, local_url
from .errors import StackError
from .procs import group_cpu_seconds, pid_alive

Progress = Callable[[str], None]
_START_MARK = "--- goldloop: starting "
STOPPED_BY_DOWN = "stopped by goldloop down"


@dataclass
class StackInfo:
    """Where the running stack is: URLs, pids, token file, logs."""

    data_dir: Path
    ls_url: str
    backend_url: str
    ls_pid: int
    backend_pid: int
    token_path: Path
    ls_log: Path
    backend_log: Path
    started: bool  # False when it was already running


# --- logs ----------------------------------------------------------------------------------------


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, joined with ' | ' so they fit in a one-line error."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    if _START_MARK in text:  # this start's lines only
        text = text.rsplit(_START_MARK, 1)[-1].split("\n", 1)[-1]
    tail = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(tail) if tail else "(empty log)"


# --- ports and processes -------------------------------------------------------------------------


def port_in_use(port: int, host: str = LOCAL_HOST) -> bool:
    """True when something already listens on host:port (or the port cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # servers set SO_REUSEADDR too: a port in TIME_WAIT is free for them
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A port nothing listens on right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        return sock.getsockname()[1]


def check_ports(settings: Settings) -> None:
    """Raise StackError when the Label Studio or backend port is taken (checked before starting anything)."""
    if settings.ls_port == settings.backend_port:
        raise StackError(f"--ls-port and --backend-port are both {settings.ls_port}; pick two different ports")
    for port, what, flag in ((settings.ls_port, "Label Studio", "--ls-port"), (settings.backend_port, "the ML backend", "--backend-port")):
        if port_in_use(port):
            raise StackError(f"port {port} for {what} is already in use; stop what listens there or pass {flag} PORT")


def _reap(pid: int) -> None:
    """Collect the exit status of our own child so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group of pid, wait, SIGKILL it when needed; StackError when it survives."""
    if not pid_alive(pid):
        _reap(pid)
        return

    def _signal(sig: int) -> None:
        try:
            os.killpg(pid, sig)  # children run in their own session: pgid == pid
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        _signal(sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                return
            time.sleep(0.1)
    raise StackError(f"process {pid} is still alive after SIGKILL; stop it by hand (kill -9 {pid})")


def label_studio_executable() -> str:
    """The label-studio script installed next to this Python."""
    candidate = Path(sys.executable).parent / "label-studio"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("label-studio")
    if found:
        return found
    raise StackError(f"no label-studio executable next to {sys.executable}; install it: pip install label-studio==1.23.2")


def label_studio_command(settings: Settings) -> list[str]:
    """The command line that starts Label Studio on 127.0.0.1:ls_port."""
    return [label_studio_executable(), "start", "--no-browser", "--internal-host", LOCAL_HOST, "-p", str(settings.ls_port)]


def backend_command(settings: Settings) -> list[str]:
    """The command line that starts the goldloop ML backend on 127.0.0.1:backend_port (a gunicorn master with
    workers when backend_workers > 1: the recorded pid is the master's, stopping its group stops every worker)."""
    workers = ["--workers", str(settings.backend_workers)] if settings.backend_workers > 1 else []
    return [
        sys.executable, "-m", "server.serving", *workers,  # server/serving.py main()
        "--data-dir", str(settings.home), "--host", LOCAL_HOST, "--port", str(settings.backend_port),
    ]  # fmt: skip


def label_studio_env(settings: Settings, token: str, base: dict[str, str] | None = None, database=None) -> dict[str, str]:
    """Environment of the Label Studio process: known admin and token, local ML backend allowed, no telemetry; its
    database is the data dir's (server/database.py) unless one is given."""
    from .database import apply_ls_env, current

    env = apply_ls_env(dict(os.environ if base is None else base), database or current(settings.data_dir))
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(settings.data_dir.ls_data),
            "LABEL_STUDIO_USERNAME": settings.admin_email,
            "LABEL_STUDIO_PASSWORD": settings.ls_admin_password(),
            "LABEL_STUDIO_USER_TOKEN": token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def backend_env(settings: Settings, token: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the backend process: where Label Studio is and its token, so it can pull labels."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            ENV_HOME: str(settings.home),
            ENV_LS_URL: local_url(settings.ls_port),
            ENV_LS_API_KEY: token,
            "PYTHONUNBUFFERED": "1",
        }
    )
    # the backend must import this checkout's packages even when started from another directory
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def spawn(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """Start a child in its own session (so it can be stopped as a group), output appended to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        fh.write(f"\n{_START_MARK}{' '.join(command)} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        fh.flush()
        try:
            return subprocess.Popen(
                command, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            raise StackError(f"cannot start {command[0]}: {exc.strerror or exc}") from None


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET url answers 2xx."""
    try:
        return requests.get(url, timeout=timeout).ok
    except requests.RequestException:
        return False


def health(url: str, timeout: float = 2.0) -> dict:
    """The JSON a healthy process answers on GET url ({} when it does not answer or answers no JSON object)."""
    try:
        body = requests.get(url, timeout=timeout).json()
    except (requests.RequestException, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def last_log_line(path: Path, width: int = 200) -> str:
    """The last non-empty line of a log file (read from its end), cut to width; "" when there is none."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:width] if lines else ""


def _log_state(path: Path) -> tuple[int, int]:
    """Size and mtime of a log file ((0, 0) when missing): it moved when this changed."""
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_size, st.st_mtime_ns)


CPU_STEP = 0.2  # CPU seconds a silent child must use to count as busy (Label Studio migrates without a log line)
CPU_EVERY = 2.0  # seconds between two CPU readings (each reads /proc/*/stat)


class _Activity:
    """Whether a starting child still works: its log moved or its process group used CPU since the last look."""

    def __init__(self, pid: int, log: Path):
        self.pid, self.log = pid, log
        self.log_state = _log_state(log)
        self.cpu = group_cpu_seconds(pid)
        self.cpu_at = time.monotonic()
        self.measured = self.cpu is not None  # without /proc, a silent child cannot be told from a stuck one

    def moved(self) -> bool:
        log_state = _log_state(self.log)
        moved, self.log_state = log_state != self.log_state, log_state
        if self.measured and not moved and time.monotonic() - self.cpu_at >= CPU_EVERY:
            cpu, self.cpu_at = group_cpu_seconds(self.pid), time.monotonic()
            if cpu is not None and cpu - self.cpu >= CPU_STEP:
                moved, self.cpu = True, cpu
        return moved


def wait_healthy(
    name: str, url: str, pid: int, timeout: float, log: Path, progress: Progress | None = None, stall: float | None = None,
    poll: float = 0.5,
) -> float:
    """Poll url until it answers; return the seconds it took.

    Waits as long as the process lives and works: its log grows or its process group uses CPU (Label Studio migrates
    its database without a log line). StackError with the log's tail when the process dies (noticed within a poll),
    when it shows no sign of work for `stall` seconds (default Settings.start_stall_timeout; where CPU cannot be
    measured only the hard cap applies), or when `timeout` seconds pass in all.
    """
    stall = Settings.start_stall_timeout if stall is None else stall
    start = last_work = time.monotonic()
    activity = _Activity(pid, log)
    while True:
        now = time.monotonic()
        elapsed, idle = now - start, now - last_work
        if progress:
            head = f"waiting for {name} … {elapsed:.0f} s" + (f" (log and CPU idle {idle:.0f} s)" if idle >= 10 else "")
            line = last_log_line(log)
            progress(f"{head}: {line}"[:78] if line else head)
        if http_ok(url):
            return elapsed
        if not pid_alive(pid):
            _reap(pid)
            raise StackError(f"{name} exited during start-up; last lines of {log}: {log_tail(log)}")
        if activity.moved():
            last_work = time.monotonic()
        elif activity.measured and time.monotonic() - last_work > stall:
            raise StackError(
                f"{name} did not answer {url} and showed no sign of work (no log line, no CPU) for {stall:.0f} s "
                f"after {elapsed:.0f} s; last lines of {log}: {log_tail(log)}"
            )
        if elapsed > timeout:
            raise StackError(f"{name} did not answer {url} within {timeout:.0f} s; last lines of {log}: {log_tail(log)}")
        time.sleep(poll)


def check_token(url: str, token: str) -> None:
    """Raise StackError when Label Studio does not accept the stored token."""
    try:
        resp = requests.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=10)
    except requests.RequestException as exc:
        raise StackError(f"Label Studio at {url} is not reachable: {exc}") from None
    if resp.status_code in (401, 403):
        raise StackError(
            f"Label Studio at {url} refuses the token in the data dir ({resp.status_code}); "
            "its database was created with another token: use a fresh --data-dir"
        )


# --- the stack -----------------------------------------------------------------------------------


def _recorded(db, name: str) -> dict | None:
    """The newest recorded process called name when it is still alive, else None (and forget it)."""
    row = store.get_process(db, name)
    if row and pid_alive(row["pid"]):
        return row
    if row:
        store.forget_process(db, name, row["pid"])
    return None


def live_processes(db, name: str) -> list[dict]:
    """The recorded processes called name that are alive (the dead ones are forgotten)."""
    alive = []
    for row in store.list_processes(db, name):
        if pid_alive(row["pid"]):
            alive.append(row)
        else:
            _reap(row["pid"])
            store.forget_process(db, name, row["pid"])
    return alive


def running_stack(settings: Settings, db) -> StackInfo | None:
    """The stack recorded in db when both processes are alive and Label Studio answers, else None."""
    ls, be = _recorded(db, store.LABEL_STUDIO), _recorded(db, store.BACKEND)
    if not (ls and be) or not http_ok(f"{ls['url']}/health", timeout=3):
        return None
    return StackInfo(
        data_dir=settings.data_dir.home, ls_url=ls["url"], backend_url=be["url"], ls_pid=ls["pid"], backend_pid=be["pid"],
        token_path=settings.data_dir.token_path, ls_log=Path(ls["log_path"]), backend_log=Path(be["log_path"]), started=False,
    )  # fmt: skip


def start_stack(settings: Settings, db, progress: Progress | None = None) -> StackInfo:
    """Start Label Studio and the backend (or find them running); return where they are."""
    running = running_stack(settings, db)
    if running:
        return running
    stop_stack(settings, db)  # a half-dead stack: stop what is left before starting again
    check_ports(settings)
    data_dir = settings.data_dir
    token = data_dir.read_or_create_token()
    data_dir.ls_data.mkdir(parents=True, exist_ok=True)
    home = data_dir.home
    ls_log, be_log = data_dir.log(store.LABEL_STUDIO), data_dir.log(store.BACKEND)
    ls_url, be_url = local_url(settings.ls_port), local_url(settings.backend_port)

    ls_cmd, be_cmd = label_studio_command(settings), backend_command(settings)
    ls_proc = spawn(ls_cmd, label_studio_env(settings, token), ls_log, cwd=home)
    store.record_process(db, store.LABEL_STUDIO, ls_proc.pid, settings.ls_port, ls_url, str(ls_log), " ".join(ls_cmd))
    try:
        be_proc = spawn(be_cmd, backend_env(settings, token), be_log, cwd=home)
        store.record_process(db, store.BACKEND, be_proc.pid, settings.backend_port, be_url, str(be_log), " ".join(be_cmd))
        stall = settings.start_stall_timeout
        wait_healthy("Label Studio", f"{ls_url}/health", ls_proc.pid, settings.ls_start_timeout, ls_log, progress, stall)
        check_token(ls_url, token)
        wait_healthy("the ML backend", f"{be_url}/health", be_proc.pid, settings.backend_start_timeout, be_log, progress, stall)
    except BaseException:
        stop_stack(settings, db)
        raise
    return StackInfo(
        data_dir=home, ls_url=ls_url, backend_url=be_url, ls_pid=ls_proc.pid, backend_pid=be_proc.pid,
        token_path=data_dir.token_path, ls_log=ls_log, backend_log=be_log, started=True,
    )  # fmt: skip


STOP_ORDER = (store.STARTERS, store.BACKEND, store.LABEL_STUDIO)  # what publishes through Label Studio stops first


def stop_stack(settings: Settings, db) -> list[dict]:
    """Stop every recorded process of the data dir, whichever `goldloop up` started it (starters, then the backend,
    then Label Studio; anything else first); return what was stopped, each verified by pid."""
    def order(row: dict) -> tuple[int, float]:
        return (STOP_ORDER.index(row["name"]) + 1 if row["name"] in STOP_ORDER else 0, -(row["started_at"] or 0.0))

    stopped = []
    for row in sorted(store.list_processes(db), key=order):
        was_alive = pid_alive(row["pid"])
        stop_pid(row["pid"], settings.stop_timeout)
        store.forget_process(db, row["name"], row["pid"])
        stopped.append({"name": row["name"], "pid": row["pid"], "was_alive": was_alive, "alive": pid_alive(row["pid"])})
    return stopped


def process_status(db) -> list[dict]:
    """Each recorded process: name, pid, port, url, alive, healthy."""
    out = []
    for row in store.list_processes(db):
        alive = pid_alive(row["pid"])
        if row["name"] == store.STARTERS and not alive:  # finished (its outcome is in the projects' starter lines)
            store.forget_process(db, row["name"], row["pid"])
            continue
        healthy = alive and (not row["url"] or http_ok(f"{row['url']}/health", timeout=2))  # the starters serve nothing
        entry = {"name": row["name"], "pid": row["pid"], "port": row["port"], "url": row["url"], "alive": alive,
                 "healthy": healthy, "log": row["log_path"]}  # fmt: skip
        if healthy and row["name"] == store.BACKEND:  # where the backend's models run (cpu, cuda:0)
            entry["device"] = health(f"{row['url']}/health").get("device")
        out.append(entry)
    return out


def supervise(settings: Settings, db, info: StackInfo, poll: float = 1.0) -> str:
    """Block until Ctrl-C / SIGTERM or until a child dies; then stop both; return why it stopped."""
    reason = "interrupted"

    def _on_term(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    # SIGINT too: a process started from a script in the background (`cmd &`) inherits SIGINT ignored,
    # and Python then never raises KeyboardInterrupt, so `kill -INT` would not stop the stack
    previous = {sig: signal.signal(sig, _on_term) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            for name, pid, log in ((store.LABEL_STUDIO, info.ls_pid, info.ls_log), (store.BACKEND, info.backend_pid, info.backend_log)):
                if not pid_alive(pid):
                    _reap(pid)
                    time.sleep(1.0)  # `goldloop down` forgets a process right after stopping it
                    if store.process_by_pid(db, pid) is None:
                        reason = STOPPED_BY_DOWN
                    else:
                        reason = f"{name} (pid {pid}) exited; last lines of {log}: {log_tail(log, 5)}"
                    raise KeyboardInterrupt
            time.sleep(poll)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_stack(settings, db)
    return reason
