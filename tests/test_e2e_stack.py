"""End to end: `goldloop up --detach` starts a real Label Studio + the ML backend; import, predictions,
webhooks, idempotent `up`, and `down` leaving no process behind. One stack for the whole module."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from server import ls_client, procs, stack, store
from server.config import Settings, local_url
from server.datadir import DataDir
from server.up import project_summaries
from tests.plugins.label_studio import copy_home, free_port, goldloop

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "server" / "samples"
SCHEMAS = ("contracts", "financial_news", "medical_records")


@pytest.fixture(scope="module")
def up(ls_template, tmp_path_factory):
    """A stack started with `goldloop up --detach` from a copy of the migrated template; stopped at the end."""
    home = copy_home(ls_template, tmp_path_factory.mktemp("e2e") / "home")
    ls_port = free_port()
    be_port = free_port()
    while be_port == ls_port:
        be_port = free_port()
    t0 = time.monotonic()
    result = goldloop("up", "--detach", "--ls-port", str(ls_port), "--backend-port", str(be_port), home=home)
    elapsed = time.monotonic() - t0
    db = store.open_db(DataDir(home).db_path)
    pids = [p["pid"] for p in store.list_processes(db)]
    try:
        yield {"home": home, "stdout": result.stdout, "ls_port": ls_port, "be_port": be_port, "elapsed": elapsed, "pids": pids}
    finally:
        goldloop("down", home=home, check=False)
        for pid in pids:  # never leave a server behind, even when down failed
            if procs.pid_alive(pid):
                stack.stop_pid(pid)


@pytest.fixture(scope="module")
def client(up):
    settings = Settings(home=up["home"], ls_url=local_url(up["ls_port"]), ls_api_key=DataDir(up["home"]).read_token())
    return ls_client.connect(settings)


def status_json(home: Path) -> dict:
    return json.loads(goldloop("status", "--json", home=home).stdout)


def projects_by_schema(home: Path) -> dict[str, dict]:
    """Project summaries by schema name (in-process: the CLI's own output is tested in test_status_*)."""
    db = store.open_db(DataDir(home).db_path)
    client = ls_client.connect(Settings(home=home), db)
    return {p["schema"]: p for p in project_summaries(client, db)}


def test_up_prints_url_login_and_where_things_are(up):
    out = up["stdout"]
    assert f"http://127.0.0.1:{up['ls_port']}" in out
    assert "admin@goldloop.local" in out
    assert str(DataDir(up["home"]).token_path) in out
    assert "running in the background" in out
    token = DataDir(up["home"]).read_token()
    assert token not in out


def test_three_projects_with_the_backend_connected(up, client):
    projects = projects_by_schema(up["home"])
    assert set(projects) == set(SCHEMAS)
    backend_url = local_url(up["be_port"])
    for name, p in projects.items():
        backends = client.ml.list(project=p["id"])
        assert [b.url.rstrip("/") for b in backends] == [backend_url]
        assert backends[0].is_interactive
        project = ls_client.get_project(client, p["id"])
        assert project.min_annotations_to_start_training == Settings().min_annotations_to_train
        assert p["model_version"], name


def test_samples_imported_and_pre_annotated(up):
    for name, p in projects_by_schema(up["home"]).items():
        lines = [ln for ln in (SAMPLES / name / "docs.jsonl").read_text().splitlines() if ln.strip()]
        assert 0 < p["tasks"] <= len(lines), name
        assert p["predictions"] >= p["tasks"], name


def test_import_real_documents_with_predictions(up, tmp_path):
    # the medical samples are new documents for the contracts project
    path = tmp_path / "records.jsonl"
    lines = (SAMPLES / "medical_records" / "docs.jsonl").read_text().splitlines()[:5]
    path.write_text("\n".join(lines) + "\n")
    before = projects_by_schema(up["home"])["contracts"]
    result = goldloop("import", "contracts", str(path), home=up["home"])
    assert "imported 5 new task(s)" in result.stdout, result.stdout
    assert "pre-annotated: 5 prediction(s)" in result.stdout, result.stdout + result.stderr
    after = projects_by_schema(up["home"])["contracts"]
    assert after["tasks"] == before["tasks"] + 5
    assert after["predictions"] == before["predictions"] + 5
    again = goldloop("import", "contracts", str(path), home=up["home"])
    assert "imported 0 new task(s)" in again.stdout
    assert projects_by_schema(up["home"])["contracts"]["tasks"] == after["tasks"]


def test_opening_a_task_returns_a_prediction(up, client, tmp_path):
    path = tmp_path / "one.jsonl"
    text = "The patient was started on metformin 500 mg twice daily for type 2 diabetes and reported nausea."
    path.write_text(json.dumps({"text": text}) + "\n")
    goldloop("import", "medical_records", str(path), "--no-predict", home=up["home"])
    pid = projects_by_schema(up["home"])["medical_records"]["id"]
    (task,) = [t for t in ls_client.iter_tasks(client, pid) if t["data"]["text"] == text]
    assert task["predictions"] == []
    opened = ls_client.get_task(client, task["id"])
    assert len(opened["predictions"]) == 1
    pred = opened["predictions"][0]
    assert pred["model_version"] and isinstance(pred["result"], list)


def _metric(url: str, name: str, labels: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_annotation_reaches_the_backend_webhook(up, client):
    backend = local_url(up["be_port"])
    metric, labels = "goldloop_webhook_events_total", 'action="ANNOTATION_CREATED"'
    before = _metric(backend, metric, labels)
    pid = projects_by_schema(up["home"])["medical_records"]["id"]
    task = next(ls_client.iter_tasks(client, pid, page_size=5))
    text = task["data"]["text"]
    word = re.search(r"\w{4,}", text)
    result = [{"from_name": "entities", "to_name": "text", "type": "labels",
               "value": {"start": word.start(), "end": word.end(), "text": word.group(), "labels": ["Disease"]}}]  # fmt: skip
    ls_client.create_annotation(client, task["id"], result)
    assert ls_client.wait_for(lambda: _metric(backend, metric, labels) >= before + 1, timeout=10)


def test_up_again_changes_nothing(up):
    before = status_json(up["home"])
    t0 = time.monotonic()
    result = goldloop("up", "--detach", home=up["home"])
    assert "already running" in result.stdout
    after = status_json(up["home"])
    assert [(p["id"], p["schema"], p["tasks"], p["predictions"]) for p in after["projects"]] == [
        (p["id"], p["schema"], p["tasks"], p["predictions"]) for p in before["projects"]
    ]
    assert [p["pid"] for p in after["processes"]] == [p["pid"] for p in before["processes"]]
    assert time.monotonic() - t0 < 60


def test_status_shows_processes_and_projects(up):
    result = goldloop("status", home=up["home"])
    assert "label_studio" in result.stdout and "backend" in result.stdout and "healthy" in result.stdout
    backend_line = next(line for line in result.stdout.splitlines() if line.strip().startswith("backend"))
    assert backend_line.rstrip().endswith("device cpu")  # --device auto on a machine without CUDA
    for name in SCHEMAS:
        assert name in result.stdout


def test_down_leaves_no_process_behind(up):
    pids = up["pids"]
    assert len(pids) == 2 and all(procs.pid_alive(p) for p in pids)
    result = goldloop("down", home=up["home"])
    assert result.stdout.count("stopped") == 2
    for pid in pids:
        assert not procs.pid_alive(pid)
    assert not stack.port_in_use(up["ls_port"]) and not stack.port_in_use(up["be_port"])
    assert "nothing running" in goldloop("status", home=up["home"]).stdout


def test_foreground_up_stops_both_on_ctrl_c(up, tmp_path):
    """`goldloop up` without --detach stays in the foreground; Ctrl-C (SIGINT) stops both servers cleanly."""
    home = up["home"]
    out = tmp_path / "up.out"
    cmd = [sys.executable, "-m", "server.cli", "up", "--no-samples", "--data-dir", str(home),
           "--ls-port", str(up["ls_port"]), "--backend-port", str(up["be_port"])]  # fmt: skip
    with open(out, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "GOLDLOOP_STARTERS": "0"})  # the two servers only: no starter training
    try:
        deadline = time.monotonic() + 300
        while "press Ctrl-C" not in out.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "press Ctrl-C" in out.read_text(), out.read_text()[-3000:]
        pids = [p["pid"] for p in store.list_processes(store.open_db(DataDir(home).db_path))]
        assert len(pids) == 2 and all(procs.pid_alive(p) for p in pids)
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # goldloop dumps its threads' stacks: say where it hangs
            time.sleep(2)
            pytest.fail("goldloop up did not stop within 60 s of Ctrl-C; its output and stacks:\n" + out.read_text()[-6000:])
        assert code == 0, out.read_text()[-3000:]
        for pid in pids:
            assert not procs.pid_alive(pid)
        assert not stack.port_in_use(up["ls_port"]) and not stack.port_in_use(up["be_port"])
    finally:
        if proc.poll() is None:
            proc.kill()
            goldloop("down", home=home, check=False)


def test_down_after_up_and_up_detach_stops_every_process_of_the_data_dir(ls_template, tmp_path):
    """`goldloop up` (foreground), `goldloop up --detach` on the same data dir (a no-op), `goldloop down`: Label Studio,
    the backend and the starter training all stop; no process names the data dir afterwards."""
    from tests.test_stack import processes_naming

    home = copy_home(ls_template, tmp_path / "home")
    ls_port, be_port = free_port(), free_port()
    while be_port == ls_port:
        be_port = free_port()
    out = tmp_path / "up.out"
    # with the samples: the starters then train for minutes (without documents they would train from their sets alone, and finish sooner)
    cmd = [sys.executable, "-m", "server.cli", "up", "--data-dir", str(home), "--ls-port", str(ls_port), "--backend-port", str(be_port)]
    with open(out, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, text=True, env={**os.environ, "GOLDLOOP_STARTERS": "1"})
    try:
        deadline = time.monotonic() + 300
        while "press Ctrl-C" not in out.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        text = out.read_text()
        found = re.search(r"^starter sets\s+training .* \(pid (\d+);", text, re.M)
        assert "press Ctrl-C" in text and found, text[-3000:]
        starters_pid = int(found.group(1))
        assert procs.pid_alive(starters_pid)
        again = goldloop("up", "--detach", "--no-samples", home=home, env={"GOLDLOOP_STARTERS": "1"})
        assert "already running" in again.stdout, again.stdout
        assert f"already (pid {starters_pid};" in again.stdout, again.stdout  # no second starters process
        assert [r["pid"] for r in store.list_processes(store.open_db(DataDir(home).db_path), store.STARTERS)] == [starters_pid]
        down = goldloop("down", home=home)
        for name in (store.STARTERS, store.BACKEND, store.LABEL_STUDIO):
            assert re.search(rf"^{name}\s+pid \d+\s+stopped$", down.stdout, re.M), down.stdout
        assert proc.wait(timeout=60) == 0 and "stopped by goldloop down" in out.read_text(), out.read_text()[-3000:]
        assert not procs.pid_alive(starters_pid)
        assert processes_naming(home) == []
        assert not stack.port_in_use(ls_port) and not stack.port_in_use(be_port)
    finally:
        if proc.poll() is None:
            proc.kill()
        goldloop("down", home=home, check=False)
