"""server.stack and the stack commands, without a real Label Studio: ports, data dir, children, processes."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from server import procs, stack, store
from server.cli import main
from server.config import Settings
from server.errors import StackError
from tests.plugins.label_studio import one_line_error, stack_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def listening():
    """A socket listening on a free port (the port is 'taken')."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def run_cli(*args: str):
    """Invoke the CLI in-process; return the click Result."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# --- data dir ------------------------------------------------------------------------------------


def test_up_with_unwritable_data_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = one_line_error(run_cli("up", "--data-dir", str(blocker / "home")))
    assert "not writable" in line


# --- environment of the children -----------------------------------------------------------------


def test_label_studio_env_has_admin_token_and_local_backend_allowed(tmp_path):
    settings = Settings(home=tmp_path)
    env = stack.label_studio_env(settings, "a" * 40, base={})
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str(tmp_path / "label-studio")
    assert env["LABEL_STUDIO_USER_TOKEN"] == "a" * 40
    assert env["LABEL_STUDIO_USERNAME"] == settings.admin_email
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert env["ML_BLOCK_LOCAL_IP"] == "false" and env["SSRF_PROTECTION_ENABLED"] == "false"
    assert env["LATEST_VERSION_CHECK"] == "false" and env["COLLECT_ANALYTICS"] == "false"


def test_backend_env_points_at_label_studio(tmp_path):
    settings = Settings(home=tmp_path, ls_port=18123)
    env = stack.backend_env(settings, "b" * 40, base={})
    assert env["LABEL_STUDIO_URL"] == "http://127.0.0.1:18123"
    assert env["LABEL_STUDIO_API_KEY"] == "b" * 40
    assert env["GOLDLOOP_HOME"] == str(tmp_path)


def test_commands_use_the_executables_of_this_python(tmp_path):
    settings = Settings(home=tmp_path, ls_port=18001, backend_port=19001)
    ls_cmd = stack.label_studio_command(settings)
    assert Path(ls_cmd[0]).name == "label-studio"
    assert ls_cmd[1:] == ["start", "--no-browser", "--internal-host", "127.0.0.1", "-p", "18001"]
    be_cmd = stack.backend_command(settings)
    assert be_cmd[:3] == [sys.executable, "-m", "server.serving"] and be_cmd[-1] == "19001"  # the serving module, not the CLI


# --- ports ---------------------------------------------------------------------------------------


def test_free_port_is_free():
    assert not stack.port_in_use(stack.free_port())


def test_ls_port_taken(tmp_path, listening):
    settings = stack_settings(tmp_path, ls_port=listening)
    with pytest.raises(StackError, match=f"port {listening} for Label Studio.*--ls-port"):
        stack.check_ports(settings)


def test_backend_port_taken(tmp_path, listening):
    settings = stack_settings(tmp_path, backend_port=listening)
    with pytest.raises(StackError, match=f"port {listening} for the ML backend.*--backend-port"):
        stack.check_ports(settings)


def test_same_port_twice(tmp_path):
    port = stack.free_port()
    with pytest.raises(StackError, match="two different ports"):
        stack.check_ports(Settings(home=tmp_path, ls_port=port, backend_port=port))


@pytest.mark.parametrize("which", ["--ls-port", "--backend-port"])
def test_up_with_a_taken_port_starts_nothing(tmp_path, listening, which):
    other = "--backend-port" if which == "--ls-port" else "--ls-port"
    home = tmp_path / "home"
    line = one_line_error(run_cli("up", "--data-dir", str(home), which, str(listening), other, str(stack.free_port())))
    assert f"port {listening}" in line and which in line
    assert store.list_processes(store.open_db(Settings(home=home).data_dir.db_path)) == []


# --- processes -----------------------------------------------------------------------------------


def _spawn_python(code: str, log: Path) -> subprocess.Popen:
    return stack.spawn([sys.executable, "-c", code], dict(os.environ), log, cwd=log.parent)


def _spawn_until(code: str, log: Path, mark: str) -> subprocess.Popen:
    """Spawn code and wait (up to 5 s) until its log shows mark."""
    proc = _spawn_python(code, log)
    for _ in range(50):
        if mark in log.read_text():
            break
        time.sleep(0.1)
    return proc


def test_stop_pid_terminates_the_process_group(tmp_path):
    # the child starts a grandchild: stopping the group stops both
    code = "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); print('up', flush=True); time.sleep(60)"
    proc = _spawn_until(code, tmp_path / "p.log", "up")
    children = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    stack.stop_pid(proc.pid, timeout=5)
    assert not procs.pid_alive(proc.pid)
    for pid in children:
        assert not procs.pid_alive(int(pid))


def test_stop_pid_kills_what_ignores_sigterm(tmp_path):
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    proc = _spawn_until(code, tmp_path / "p.log", "ready")
    t0 = time.monotonic()
    stack.stop_pid(proc.pid, timeout=0.5)
    assert not procs.pid_alive(proc.pid)
    assert time.monotonic() - t0 < 5


def test_wait_healthy_reports_the_log_tail_when_the_process_dies(tmp_path):
    log = tmp_path / "ls.log"
    proc = _spawn_python("import sys; print('django.db.utils.OperationalError: boom'); sys.exit(3)", log)
    with pytest.raises(StackError, match="exited during start-up.*OperationalError: boom"):
        stack.wait_healthy("Label Studio", f"http://127.0.0.1:{stack.free_port()}/health", proc.pid, 30, log)


def test_wait_healthy_times_out(tmp_path):
    log = tmp_path / "x.log"
    proc = _spawn_python("import time; print('still migrating'); time.sleep(30)", log)
    try:
        with pytest.raises(StackError, match="did not answer.*within 1 s.*still migrating"):
            stack.wait_healthy("Label Studio", f"http://127.0.0.1:{stack.free_port()}/health", proc.pid, 1, log)
    finally:
        stack.stop_pid(proc.pid)


def test_up_when_label_studio_fails_to_start(tmp_path, monkeypatch):
    """A Label Studio that dies on start: one line with its log's tail, nothing left running."""
    fake = [sys.executable, "-c", "import sys; print('CommandError: label studio could not start'); sys.exit(1)"]
    monkeypatch.setattr(stack, "label_studio_command", lambda settings: fake)
    monkeypatch.setattr(stack, "backend_command", lambda settings: [sys.executable, "-c", "import time; time.sleep(60)"])
    home = tmp_path / "home"
    line = one_line_error(
        run_cli("up", "--data-dir", str(home), "--ls-port", str(stack.free_port()), "--backend-port", str(stack.free_port()))
    )
    assert "Label Studio exited during start-up" in line and "could not start" in line
    db = store.open_db(Settings(home=home).data_dir.db_path)
    assert store.list_processes(db) == []


def _recorded_stack(tmp_path: Path, ls_seconds: float, backend_seconds: float):
    """Two sleeping children recorded as Label Studio and the backend: (settings, db, ls proc, backend proc)."""
    settings = Settings(home=tmp_path)
    db = store.open_db(settings.data_dir.db_path)
    ls = _spawn_python(f"import time; time.sleep({ls_seconds})", tmp_path / "a.log")
    be = _spawn_python(f"import time; time.sleep({backend_seconds})", tmp_path / "b.log")
    store.record_process(db, store.LABEL_STUDIO, ls.pid, 1, "http://127.0.0.1:1", str(tmp_path / "a.log"), "x")
    store.record_process(db, store.BACKEND, be.pid, 2, "http://127.0.0.1:2", str(tmp_path / "b.log"), "y")
    return settings, db, ls, be


def _stack_info(home: Path, ls_pid: int, backend_pid: int) -> stack.StackInfo:
    return stack.StackInfo(home, "u", "v", ls_pid, backend_pid, home / "t", home / "a.log", home / "b.log", True)


def test_supervise_stops_everything_when_a_child_dies(tmp_path):
    settings, db, short, long = _recorded_stack(tmp_path, 0.5, 60)
    reason = stack.supervise(settings, db, _stack_info(tmp_path, short.pid, long.pid), poll=0.1)
    assert "label_studio" in reason and "exited" in reason
    assert not procs.pid_alive(long.pid)
    assert store.list_processes(db) == []


def test_supervise_stops_on_sigint_even_when_started_with_sigint_ignored(tmp_path):
    """A script's background job (`cmd &`) inherits SIGINT ignored; `kill -INT` must still stop the stack."""
    _, db, a, b = _recorded_stack(tmp_path, 60, 60)
    code = (
        "from pathlib import Path; from server import stack, store; from server.config import Settings; "
        "from tests.test_stack import _stack_info; "
        f"home = Path({str(tmp_path)!r}); s = Settings(home=home); info = _stack_info(home, {a.pid}, {b.pid}); "
        "print('supervising', flush=True); print(stack.supervise(s, store.open_db(s.data_dir.db_path), info, poll=0.1), flush=True)"
    )
    sup = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # as `&` in a script does
    try:
        assert sup.stdout.readline().strip() == "supervising"
        time.sleep(0.3)
        sup.send_signal(signal.SIGINT)
        out, _ = sup.communicate(timeout=30)
    finally:
        if sup.poll() is None:
            sup.kill()
    assert sup.returncode == 0 and out.strip() == "interrupted"
    assert not procs.pid_alive(a.pid) and not procs.pid_alive(b.pid)
    assert store.list_processes(db) == []


def test_down_and_status_with_nothing_running(tmp_path):
    home = tmp_path / "never-started"
    result = run_cli("down", "--data-dir", str(home))
    assert result.exit_code == 0 and "nothing running" in result.output
    result = run_cli("status", "--data-dir", str(home))
    assert result.exit_code == 0 and "nothing running" in result.output
    assert not home.exists()


def test_down_stops_recorded_processes_and_verifies_by_pid(tmp_path):
    settings = Settings(home=tmp_path)
    db = store.open_db(settings.data_dir.db_path)
    children = [_spawn_python("import time; time.sleep(60)", tmp_path / f"{n}.log") for n in ("a", "b")]
    store.record_process(db, store.LABEL_STUDIO, children[0].pid, 1, "http://127.0.0.1:1", "a.log", "x")
    store.record_process(db, store.BACKEND, children[1].pid, 2, "http://127.0.0.1:2", "b.log", "y")
    result = run_cli("down", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "stopped" in result.output
    for p in children:
        p.wait(timeout=5)
        assert not procs.pid_alive(p.pid)
    assert store.list_processes(db) == []


def test_the_starters_process_is_stopped_with_the_stack_and_forgotten_once_done(tmp_path):
    settings = Settings(home=tmp_path)
    db = store.open_db(settings.data_dir.db_path)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    store.record_process(db, store.STARTERS, proc.pid, 0, "", str(tmp_path / "starters.log"), "goldloop pretrain --starters")
    [row] = stack.process_status(db)
    assert row["name"] == store.STARTERS and row["alive"] and row["healthy"]  # no URL to ask: alive is healthy
    stopped = stack.stop_stack(settings, db)
    assert [r["name"] for r in stopped] == [store.STARTERS] and stopped[0]["was_alive"] and not stopped[0]["alive"]
    proc.wait(timeout=30)
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    store.record_process(db, store.STARTERS, done.pid, 0, "", str(tmp_path / "starters.log"), "goldloop pretrain --starters")
    assert stack.process_status(db) == [] and store.list_processes(db) == []  # a finished run is not shown as a dead server


# --- start-up waits: as long as the child lives and works --------------------------------------------------------

SERVE = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", PORT), H).serve_forever()
"""


def _serve(port: int) -> str:
    """Python code that answers 200 on every GET at 127.0.0.1:port."""
    return SERVE.replace("PORT", str(port))


def test_wait_healthy_waits_past_the_stall_window_while_the_log_moves(tmp_path):
    """A start that logs for longer than the stall window is not given up on (the old fixed timeout's failure)."""
    log, port = tmp_path / "ls.log", stack.free_port()
    code = "import time\nfor i in range(15):\n    print(f'Applying migration {i}', flush=True); time.sleep(0.2)\n" + _serve(port)
    proc = _spawn_python(code, log)
    seen = []
    try:
        elapsed = stack.wait_healthy("Label Studio", f"http://127.0.0.1:{port}/health", proc.pid, 60, log, seen.append, stall=1)
    finally:
        stack.stop_pid(proc.pid)
    assert elapsed > 2.5  # three stall windows and more
    assert any("waiting for Label Studio" in m and " s: Applying migration" in m for m in seen), seen
    assert all(len(m) <= 78 for m in seen)


def test_wait_healthy_waits_for_a_silent_child_that_uses_cpu(tmp_path):
    """Label Studio migrates its database without a log line: CPU use counts as work."""
    log, port = tmp_path / "ls.log", stack.free_port()
    code = "import time\nprint('Initializing database..', flush=True)\nend = time.time() + 7\nwhile time.time() < end: pass\n" + _serve(port)
    proc = _spawn_python(code, log)
    try:
        elapsed = stack.wait_healthy("Label Studio", f"http://127.0.0.1:{port}/health", proc.pid, 60, log, stall=4)
    finally:
        stack.stop_pid(proc.pid)
    assert elapsed > 6


def test_wait_healthy_gives_up_when_the_child_shows_no_sign_of_work(tmp_path):
    log = tmp_path / "ls.log"
    proc = _spawn_python("import time; print('still migrating', flush=True); time.sleep(60)", log)
    t0 = time.monotonic()
    try:
        with pytest.raises(StackError, match=r"did not answer .* no sign of work .* for 1 s .*still migrating"):
            stack.wait_healthy("Label Studio", f"http://127.0.0.1:{stack.free_port()}/health", proc.pid, 60, log, stall=1)
    finally:
        stack.stop_pid(proc.pid)
    assert time.monotonic() - t0 < 15  # the stall window (+ the CPU of the child's own start), not the hard cap


def test_wait_healthy_fails_fast_when_the_child_dies_after_a_while(tmp_path):
    log = tmp_path / "ls.log"
    code = ("import sys, time\nfor i in range(8):\n    print(f'Applying migration {i}', flush=True); time.sleep(0.2)\n"
            "print('django.db.utils.OperationalError: disk I/O error', flush=True)\nprint(f'dying at {time.time()}', flush=True)\nsys.exit(3)")
    proc = _spawn_python(code, log)
    with pytest.raises(StackError, match="exited during start-up.*OperationalError: disk I/O error") as err:
        stack.wait_healthy("Label Studio", f"http://127.0.0.1:{stack.free_port()}/health", proc.pid, 600, log, stall=600)
    died = float(log.read_text().rsplit("dying at ", 1)[1].split()[0])
    assert time.time() - died < 2.0, str(err.value)


def test_start_timeouts_come_from_the_environment():
    from server.config import ENV_START_STALL_TIMEOUT, ENV_START_TIMEOUT

    s = Settings.from_env({ENV_START_TIMEOUT: "3600", ENV_START_STALL_TIMEOUT: "300"})
    assert (s.ls_start_timeout, s.backend_start_timeout, s.start_stall_timeout) == (3600, 3600, 300)
    assert Settings().ls_start_timeout >= 1800 and Settings().start_stall_timeout == 120
    with pytest.raises(ValueError, match=ENV_START_STALL_TIMEOUT):
        Settings.from_env({ENV_START_STALL_TIMEOUT: "soon"})


# --- one record of every child, whichever `up` started it --------------------------------------------------------


def processes_naming(path: Path) -> list[str]:
    """Live processes whose command line or environment names path: 'pid command' each (Linux /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid() or not procs.pid_alive(pid):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if str(path).encode() in cmdline + environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{pid} {command}")
    return found


def test_every_child_of_a_name_is_recorded_and_down_stops_them_all(tmp_path):
    settings = Settings(home=tmp_path)
    db = store.open_db(settings.data_dir.db_path)
    names = [store.LABEL_STUDIO, store.BACKEND, store.STARTERS, store.STARTERS]
    children = [_spawn_python("import time; time.sleep(60)", tmp_path / f"{i}.log") for i in range(len(names))]
    for i, (name, child) in enumerate(zip(names, children)):
        store.record_process(db, name, child.pid, i, "", str(tmp_path / f"{i}.log"), name)
    assert sorted(r["pid"] for r in store.list_processes(db, store.STARTERS)) == sorted(c.pid for c in children[2:])
    assert store.get_process(db, store.STARTERS)["pid"] == children[3].pid  # the newest of a name
    result = run_cli("down", "--data-dir", str(tmp_path))
    assert result.exit_code == 0 and result.output.count("stopped") == 4, result.output
    assert [ln.split()[0] for ln in result.output.splitlines()] == [store.STARTERS, store.STARTERS, store.BACKEND, store.LABEL_STUDIO]
    for child in children:
        child.wait(timeout=5)
    assert store.list_processes(db) == []


def test_a_process_table_keyed_by_name_is_rekeyed_by_pid(tmp_path):
    import sqlite_utils

    path = tmp_path / "goldloop.db"
    old = sqlite_utils.Database(path)
    old[store.PROCESSES].create(store.PROCESS_COLUMNS, pk="name")
    old[store.PROCESSES].insert({"name": store.STARTERS, "pid": 4242, "port": 0, "url": "", "log_path": "s.log", "command": "c", "started_at": 1.0})
    old.close()
    db = store.open_db(path)
    assert db[store.PROCESSES].pks == ["pid"]
    assert [r["pid"] for r in store.list_processes(db)] == [4242]
    store.record_process(db, store.STARTERS, 4343, 0, "", "s.log", "c")
    assert len(store.list_processes(db, store.STARTERS)) == 2


def test_a_second_up_starts_no_second_starters_process_and_down_stops_it(tmp_path, listening):
    """up; up --detach; down at the level of the process record, with the real `goldloop pretrain --starters` process:
    the second `up` finds it training, `down` stops it, and the process also ends by itself once Label Studio is gone."""
    from server.up import ProjectSync, start_starters

    home = tmp_path / "home"
    settings = Settings(home=home, starters=True)
    settings.data_dir.ensure()
    settings.data_dir.read_or_create_token()
    db = store.open_db(settings.data_dir.db_path)
    # "Label Studio": a live process recorded for the data dir, its URL a socket that accepts and never answers
    ls = _spawn_python("import time; time.sleep(120)", tmp_path / "ls.log")
    store.record_process(db, store.LABEL_STUDIO, ls.pid, listening, f"http://127.0.0.1:{listening}", str(tmp_path / "ls.log"), "ls")
    synced = [ProjectSync("medical_records", 3, "Medical records")]
    try:
        first = start_starters(settings, db, synced)
        [row] = store.list_processes(db, store.STARTERS)
        assert f"(pid {row['pid']};" in first
        again = start_starters(settings, db, synced)  # what `goldloop up --detach` on the running stack does
        assert "already" in again and str(row["pid"]) in again
        assert [r["pid"] for r in store.list_processes(db, store.STARTERS)] == [row["pid"]]
        stopped = stack.stop_stack(settings, db)
        assert {(r["name"], r["pid"]) for r in stopped} == {(store.STARTERS, row["pid"]), (store.LABEL_STUDIO, ls.pid)}
        assert not procs.pid_alive(row["pid"]) and not procs.pid_alive(ls.pid)
        assert processes_naming(home) == [] and store.list_processes(db) == []
    finally:
        for r in store.list_processes(db):
            stack.stop_pid(r["pid"])
        stack.stop_pid(ls.pid)


def test_the_starters_process_ends_when_the_label_studio_it_publishes_to_is_gone(tmp_path):
    from server import starters
    from server.up import ProjectSync, start_starters

    home = tmp_path / "home"
    settings = Settings(home=home, starters=True)
    settings.data_dir.ensure()
    settings.data_dir.read_or_create_token()
    db = store.open_db(settings.data_dir.db_path)
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # Label Studio's URL: accepts, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    port = silent.getsockname()[1]
    ls = _spawn_python("import time; time.sleep(120)", tmp_path / "ls.log")
    store.record_process(db, store.LABEL_STUDIO, ls.pid, port, f"http://127.0.0.1:{port}", str(tmp_path / "ls.log"), "ls")
    conn = None
    try:
        start_starters(settings, db, [ProjectSync("medical_records", 3, "Medical records")])
        [row] = store.list_processes(db, store.STARTERS)
        silent.settimeout(120)
        conn, _ = silent.accept()  # it got past stop_with_stack and asks Label Studio who it is
        stack.stop_pid(ls.pid)  # Label Studio dies (no `goldloop down`: its record stays)
        t0 = time.monotonic()
        while procs.pid_alive(row["pid"]) and time.monotonic() - t0 < starters.WATCH_INTERVAL + 20:
            time.sleep(0.2)
        log = settings.data_dir.log(starters.LOG_NAME).read_text()
        assert not procs.pid_alive(row["pid"]), log[-2000:]
        assert f"Label Studio (pid {ls.pid}) is gone" in log
    finally:
        for r in store.list_processes(db):
            stack.stop_pid(r["pid"])
        stack.stop_pid(ls.pid)
        if conn is not None:
            conn.close()
        silent.close()
