"""Fixtures for a real Label Studio server.

Label Studio's first start migrates its database (~40 s on 2 cores); a start from a copy of a migrated data dir
takes ~4 s. So the session migrates once into a template goldloop data dir (Label Studio data + admin token)
and every test or module gets its own copy. Set GOLDLOOP_LS_TEMPLATE=DIR to keep the template between sessions.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from server import stack, store
from server.config import Settings, local_url
from server.datadir import DB_FILENAME, LOGS_DIRNAME

ROOT = Path(__file__).resolve().parents[2]
ENV_TEMPLATE = "GOLDLOOP_LS_TEMPLATE"
READY_MARK = ".goldloop-template-ready"


def free_port() -> int:
    """A port nothing listens on now."""
    return stack.free_port()


def stack_settings(home: Path, **kw) -> Settings:
    """Settings for a test data dir: free ports, defaults otherwise (the environment is ignored)."""
    kw.setdefault("starters", False)  # no background starter training unless a test asks for it
    kw.setdefault("ls_port", free_port())
    kw.setdefault("backend_port", free_port())
    while kw["backend_port"] == kw["ls_port"]:
        kw["backend_port"] = free_port()
    return Settings(home=Path(home), **kw)


def start_label_studio(settings: Settings) -> subprocess.Popen:
    """Start Label Studio alone (no backend) for a data dir and wait until it answers with the token."""
    data_dir = settings.data_dir
    data_dir.ensure()
    token = data_dir.read_or_create_token()
    data_dir.ls_data.mkdir(parents=True, exist_ok=True)
    log = data_dir.log(store.LABEL_STUDIO)
    proc = stack.spawn(stack.label_studio_command(settings), stack.label_studio_env(settings, token), log, cwd=data_dir.home)
    try:
        url = local_url(settings.ls_port)
        stack.wait_healthy("Label Studio", f"{url}/health", proc.pid, settings.ls_start_timeout, log)
        stack.check_token(url, token)
    except BaseException:
        stack.stop_pid(proc.pid)
        raise
    return proc


def make_template(home: Path) -> Path:
    """Migrate Label Studio's database once into home (a goldloop data dir)."""
    if (home / READY_MARK).exists():
        return home
    if home.exists():
        shutil.rmtree(home)
    settings = stack_settings(home)
    proc = start_label_studio(settings)
    stack.stop_pid(proc.pid)
    (home / READY_MARK).write_text("ok\n")
    return home


def copy_home(template: Path, dest: Path) -> Path:
    """A fresh goldloop data dir copied from the migrated template (logs left out)."""
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns(LOGS_DIRNAME, READY_MARK, f"{DB_FILENAME}*"))
    return dest


@pytest.fixture(scope="session")
def ls_template(tmp_path_factory) -> Path:
    """A goldloop data dir with a migrated Label Studio database (made once per session)."""
    cached = os.environ.get(ENV_TEMPLATE)
    home = Path(cached) if cached else tmp_path_factory.mktemp("ls-template") / "home"
    return make_template(home)


@pytest.fixture
def ls_home(ls_template, tmp_path) -> Path:
    """A fresh goldloop data dir for one test, its Label Studio already migrated."""
    return copy_home(ls_template, tmp_path / "home")


@dataclass
class RunningLabelStudio:
    """A Label Studio process for a test: its settings (URL, token) and a client factory."""

    settings: Settings
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return local_url(self.settings.ls_port)

    @property
    def token(self) -> str:
        return self.settings.data_dir.read_token()

    def client(self):
        from server import ls_client

        return ls_client.connect(self.settings.with_overrides(ls_url=self.url, ls_api_key=self.token))


def _running(home: Path):
    """Start Label Studio for a data dir, record it in the data dir's db (so the CLI finds it), yield, stop."""
    settings = stack_settings(home)
    proc = start_label_studio(settings)
    db = store.open_db(settings.data_dir.db_path)
    url = local_url(settings.ls_port)
    store.record_process(db, store.LABEL_STUDIO, proc.pid, settings.ls_port, url, str(settings.data_dir.log(store.LABEL_STUDIO)), "label-studio")
    try:
        yield RunningLabelStudio(settings, proc)
    finally:
        stack.stop_pid(proc.pid)
        store.forget_process(db, store.LABEL_STUDIO)


@pytest.fixture
def label_studio(ls_home):
    """A running Label Studio (no ML backend) on a free port, from a copy of the migrated template."""
    yield from _running(ls_home)


@pytest.fixture(scope="module")
def label_studio_module(ls_template, tmp_path_factory):
    """One running Label Studio (no ML backend) shared by a test module."""
    yield from _running(copy_home(ls_template, tmp_path_factory.mktemp("ls-module") / "home"))


@pytest.fixture(scope="module")
def ls_projects(label_studio_module):
    """The module's Label Studio, with one project per repo schema (no backend connected): (running, settings, db, client)."""
    from server import ls_client
    from server.schema_files import load_schemas
    from server.up import ensure_project

    s = label_studio_module.settings.with_overrides(ls_url=label_studio_module.url, ls_api_key=label_studio_module.token)
    db = store.open_db(s.data_dir.db_path)
    client = ls_client.connect(s, db)
    for schema in load_schemas():
        ensure_project(client, schema, s, db)
    return label_studio_module, s, db, client


def sample_texts(schema: str, n: int | None = None) -> list[str]:
    """Texts of the repo's sample documents of a schema."""
    lines = (ROOT / "server" / "samples" / schema / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(ln)["text"] for ln in lines if ln.strip()][:n]


def write_jsonl(path: Path, records: list[object]) -> Path:
    """Write records (a str is written as the raw line) as a JSONL file."""
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def ncbi_span_results(doc: dict, text: str, label: str = "Disease") -> list[dict]:
    """An NCBI document's disease mentions (Modifiers left out) as Label Studio `entities` results on its imported
    text: import collapses whitespace, so each mention is found again, in order."""
    at, result = 0, []
    for s in sorted(doc["spans"], key=lambda s: s["start"]):
        mention = doc["text"][s["start"]:s["end"]]
        start = text.find(mention, at)
        if s["label"] == "Modifier" or start < 0:
            continue
        at = start + len(mention)
        result.append({"from_name": "entities", "to_name": "text", "type": "labels",
                       "value": {"start": start, "end": at, "text": mention, "labels": [label]}})
    return result


def one_line_error(result) -> str:
    """The CLI's error line of a click Result; asserts it is one line, non-zero, without a traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def goldloop(*args: str, home: Path, timeout: float = 600, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the goldloop CLI in a subprocess (as a user would) and return the completed process."""
    cmd = [sys.executable, "-m", "server.cli", *args, "--data-dir", str(home)]
    full_env = {**os.environ, "GOLDLOOP_STARTERS": "0", **(env or {})}  # a test that wants starters passes "1"
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


@contextlib.contextmanager
def goldloop_stack(template: Path, tmp: Path, env: dict[str, str]):
    """`goldloop up --detach --no-samples` on a copy of the migrated data dir; yields what e2e tests share, then
    stops both servers (and any process `down` missed)."""
    from server import ls_client, procs
    from server.datadir import DataDir

    home = copy_home(template, tmp / "home")
    ls_port, be_port = free_port(), free_port()
    while be_port == ls_port:
        be_port = free_port()
    goldloop("up", "--detach", "--no-samples", "--ls-port", str(ls_port), "--backend-port", str(be_port), home=home, env=env)
    db = store.open_db(home / "goldloop.db")
    pids = [p["pid"] for p in store.list_processes(db)]
    settings = Settings(home=home, ls_url=local_url(ls_port), ls_api_key=DataDir(home).read_token())
    try:
        yield {"home": home, "settings": settings, "client": ls_client.connect(settings), "be": local_url(be_port), "db": db}
    finally:
        goldloop("down", home=home, check=False)
        for pid in pids:
            if procs.pid_alive(pid):
                stack.stop_pid(pid)


def wait_for(predicate, timeout: float = 240.0, interval: float = 0.5):
    """Poll until predicate returns something truthy and return it; AssertionError after timeout seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")
