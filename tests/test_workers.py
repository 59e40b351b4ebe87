"""Several backend worker processes (`goldloop backend --workers 2`: gunicorn), one trainer.

What one worker is taught or another process promotes, every worker serves; START_TRAINING runs one job per
project across the workers with one trigger queued; /metrics adds up every worker. The first tests check the
shared pieces in one process (two registries / queues behave as two processes do: flock and files); the rest
start real gunicorn workers on a free port and hit both (the answering pid is in every response's header).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from ml_backend import online, wsgi
from ml_backend.errors import UnsafePath
from ml_backend.jobs import QUEUED, STARTED, TrainingQueue
from ml_backend.models import SpanMatcher
from ml_backend.registry import ProjectModel, Registry
from ml_backend.routes import WORKER_HEADER
from ml_backend.schema import parse_label_config
from ml_backend.settings import BackendSettings
from server.procs import pid_alive

ROOT = Path(__file__).resolve().parents[1]
SPANS = ('<View><Labels name="ents" toName="text"><Label value="Vendor"/><Label value="Drug"/></Labels>'
         '<Text name="text" value="$text"/></View>')
ROUNDS_ENV = "GOLDLOOP_TEST_ROUNDS_LOG"
ROUND_SECONDS = 3.0


def recording_trainer():
    """A trainer for the workers (GOLDLOOP_BACKEND_TRAINER=tests.test_workers:recording_trainer): each job writes
    its start and end, with the worker's pid, to the file $GOLDLOOP_TEST_ROUNDS_LOG and takes ROUND_SECONDS."""
    path = os.environ[ROUNDS_ENV]

    def trainer(project: str, event: dict) -> None:
        with open(path, "a") as fh:
            fh.write(json.dumps({"at": "start", "pid": os.getpid(), "project": project, "t": time.time()}) + "\n")
        time.sleep(ROUND_SECONDS)
        with open(path, "a") as fh:
            fh.write(json.dumps({"at": "end", "pid": os.getpid(), "project": project, "t": time.time()}) + "\n")

    return trainer


def annotation(text: str, surface: str, label: str) -> dict:
    start = text.index(surface)
    return {"id": 1, "was_cancelled": False, "result": [{"from_name": "ents", "to_name": "text", "type": "labels",
            "value": {"start": start, "end": start + len(surface), "text": surface, "labels": [label]}}]}


# --- the shared pieces, in one process --------------------------------------------------------------


def test_an_annotation_taught_to_one_registry_reaches_another(tmp_path):
    """Two registries on one models dir stand for two worker processes."""
    settings = BackendSettings(model="unused", models_dir=tmp_path / "models")
    spec = parse_label_config(SPANS)
    a, b = Registry(settings), Registry(settings)
    text = "Acme Corp signs with Beta LLC."
    assert a.get("3", spec).predict_texts({"text": [text]})["ents"][0].spans == []
    b.get("3", spec)  # b serves the project already: it must pick the annotation up, not only a later load
    assert a.teach("3", spec, {"text": text}, annotation(text, "Acme Corp", "Vendor")["result"]) is True
    for reg in (a, b, Registry(settings)):  # the third has loaded nothing yet
        spans = reg.get("3", spec).predict_texts({"text": ["ACME CORP pays."]})["ents"][0].spans
        assert [("ACME CORP pays."[s.start:s.end], s.label) for s in spans] == [("ACME CORP", "Vendor")]
    log_path = a.online_log("3", a.get("3", spec).version).path
    assert log_path.parent == tmp_path / "models" / "3" and log_path.name.startswith("online-coldstart-")
    # nothing the models do not learn from is written: the log holds texts and result items of the controls
    (rec,) = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert set(rec) == {"config_hash", "data", "result"} and rec["data"] == {"text": text}


def test_the_online_log_is_bounded_and_reads_complete_lines_only(tmp_path, monkeypatch):
    log = online.OnlineLog(tmp_path / "online-v1.jsonl")
    rec = {"config_hash": "h", "data": {"text": "x"}, "result": [{"from_name": "ents"}]}
    assert log.append(rec)
    with open(log.path, "ab") as fh:  # a writer half-way through its line
        fh.write(b'{"config_hash": "h", "da')
    records, offset = log.read_from(0)
    assert records == [rec] and offset == len(json.dumps(rec, separators=(",", ":"))) + 1
    assert not log.append({**rec, "data": {"text": "y" * online.MAX_RECORD_BYTES}})
    monkeypatch.setattr(online, "MAX_LOG_BYTES", log.size() + 10)
    assert not log.append(rec)  # full: refused, and the file did not grow
    assert log.read_from(offset) == ([], offset)


def test_online_log_paths_take_validated_names_only(tmp_path):
    reg = Registry(BackendSettings(model="unused", models_dir=tmp_path / "models"))
    for project, version in (("../x", "v1"), ("3", "../../etc"), ("3", "a/b"), ("3.5", "v1")):
        with pytest.raises(UnsafePath):
            reg.online_log(project, version)


def test_two_queues_on_one_models_dir_run_one_job_and_queue_one(tmp_path):
    """Two TrainingQueues stand for two workers: 5 triggers spread over both give two jobs, never at once."""
    runs, lock, release = [], threading.Lock(), threading.Event()
    active = [0]

    def job(project, event):
        with lock:
            active[0] += 1
            runs.append((project, event.get("action"), active[0]))
        release.wait(10)
        with lock:
            active[0] -= 1

    reg = Registry(BackendSettings(model="unused", models_dir=tmp_path / "models"))
    queues = [TrainingQueue(reg.path, job), TrainingQueue(reg.path, job)]
    answers = [queues[i % 2].submit("4", {"action": "START_TRAINING"}) for i in range(5)]
    assert answers == [STARTED] + [QUEUED] * 4
    release.set()
    deadline = time.time() + 10
    while time.time() < deadline and (len(runs) < 2 or any(q.running_here("4") for q in queues)):
        time.sleep(0.05)
    assert [r[:2] for r in runs] == [("4", "START_TRAINING")] * 2 and max(r[2] for r in runs) == 1
    assert not (tmp_path / "models" / "4" / ".training-pending.json").exists()


def test_worker_settings_travel_through_the_environment(tmp_path, monkeypatch):
    settings = BackendSettings(model="m", models_dir=tmp_path / "models", quantize="int8", threads=2, basic_auth_user="u",
                               basic_auth_pass="p")
    assert wsgi.settings_from_env(wsgi.settings_to_env(settings)) == settings
    for env, needle in (({}, "is not set"), ({wsgi.ENV_SETTINGS: "{"}, "not JSON"), ({wsgi.ENV_SETTINGS: "[]"}, "JSON object"),
                        ({wsgi.ENV_SETTINGS: '{"model": "m", "models_dir": "/x", "nope": 1}'}, "unknown fields ['nope']"),
                        ({wsgi.ENV_SETTINGS: '{"model": "m"}'}, "lacks ['models_dir']")):
        with pytest.raises(ValueError, match=re.escape(needle)):
            wsgi.settings_from_env(env)
    with pytest.raises(ValueError, match="module:callable"):
        wsgi.trainer_from_env({wsgi.ENV_TRAINER: "no colon"})
    with pytest.raises(ValueError, match="no callable nothing_here"):
        wsgi.trainer_from_env({wsgi.ENV_TRAINER: "tests.test_workers:nothing_here"})
    monkeypatch.setenv(ROUNDS_ENV, str(tmp_path / "rounds.jsonl"))
    trainer = wsgi.trainer_from_env({wsgi.ENV_TRAINER: "tests.test_workers:recording_trainer"})
    assert trainer.__qualname__ == "recording_trainer.<locals>.trainer" and wsgi.trainer_from_env({}) is None


# --- real gunicorn workers ----------------------------------------------------------------------------


def _free_port() -> int:
    from server.stack import free_port

    return free_port()


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """`goldloop backend --workers 2` on a free port, with the recording trainer; yields url, home, master pid."""
    home = tmp_path_factory.mktemp("workers")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), wsgi.ENV_TRAINER: "tests.test_workers:recording_trainer",
           ROUNDS_ENV: str(home / "rounds.jsonl"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = open(home / "backend.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "backend", "--workers", "2", "--threads", "4",
                             "--data-dir", str(home), "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, (home / "backend.log").read_text()[-3000:]
            try:
                if requests.get(url + "/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("the workers did not answer in 120 s: " + (home / "backend.log").read_text()[-3000:])
        yield {"url": url, "home": home, "pid": proc.pid, "proc": proc}
    finally:
        from server.stack import stop_pid

        stop_pid(proc.pid, timeout=15)
        log.close()


def worker_pids(master: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def spread(call, want: set[int], n: int = 16, rounds: int = 25) -> dict[int, list]:
    """Answers of `call` grouped by the worker pid that answered, from concurrent calls, until every pid in
    `want` answered (gunicorn hands a connection to whichever worker accepts first: load spreads them)."""
    seen: dict[int, list] = {}
    with ThreadPoolExecutor(n) as pool:
        for _ in range(rounds):
            for pid, answer in pool.map(lambda _: call(), range(n)):
                seen.setdefault(pid, []).append(answer)
            if want <= set(seen):
                break
    return seen


def predict(url: str, project: str, text: str) -> tuple[int, dict]:
    r = requests.post(url + "/predict", timeout=60, json={"project": project, "label_config": SPANS,
                                                          "tasks": [{"id": 1, "data": {"text": text}}]})
    assert r.status_code == 200, r.text
    item = r.json()["results"][0]
    return int(r.headers[WORKER_HEADER]), (item["model_version"], [(x["value"]["text"], x["value"]["labels"][0]) for x in item["result"]])


def test_two_workers_answer_and_the_master_keeps_the_cli_pid(workers):
    pids = worker_pids(workers["pid"])
    assert len(pids) == 2 and workers["pid"] not in pids
    seen = spread(lambda: (int((r := requests.get(workers["url"] + "/health", timeout=10)).headers[WORKER_HEADER]), r.json()["pid"]), pids)
    assert set(seen) == pids and all(pid == answer for pid, answers in seen.items() for answer in answers)


def test_a_promotion_reaches_both_workers(workers):
    url, pids = workers["url"], worker_pids(workers["pid"])
    text = "Take aspirin daily."
    before = spread(lambda: predict(url, "21.1", text), pids)
    cold = {json.dumps(a) for answers in before.values() for a in answers}
    assert set(before) == pids and len(cold) == 1 and json.loads(cold.pop())[1] == []  # one cold-start version, no span
    spec = parse_label_config(SPANS)
    matcher = SpanMatcher(["Vendor", "Drug"])
    matcher.add("aspirin", "Drug")
    settings = BackendSettings(model="unused", models_dir=workers["home"] / "models")
    Registry(settings).promote("21", ProjectModel(spec, "v-promoted", {"ents": matcher}))  # as a `goldloop train` child does
    after = spread(lambda: predict(url, "21.1", text), pids)
    assert set(after) == pids
    assert {a for answers in after.values() for a in map(json.dumps, answers)} == {json.dumps(("v-promoted", [("aspirin", "Drug")]))}


def test_a_string_learned_from_a_webhook_reaches_both_workers(workers):
    url, pids = workers["url"], worker_pids(workers["pid"])
    text = "This Agreement is made between Acme Corp and Beta LLC."
    assert set(spread(lambda: predict(url, "22.1", "Acme Corp pays."), pids)) == pids  # both serve the project
    hook = requests.post(url + "/webhook", timeout=10, json={"action": "ANNOTATION_CREATED", "project": {"id": 22},
                         "task": {"id": 1, "data": {"text": text}}, "annotation": annotation(text, "Acme Corp", "Vendor")})
    assert hook.status_code == 200 and hook.json()["learned"] is True
    after = spread(lambda: predict(url, "22.1", "Acme Corp shall pay. ACME CORP agrees."), pids)
    assert set(after) == pids
    assert all(spans == [("Acme Corp", "Vendor"), ("ACME CORP", "Vendor")] for answers in after.values() for _, spans in answers)


def test_five_start_training_calls_give_one_round_and_one_queued(workers):
    url, rounds = workers["url"], workers["home"] / "rounds.jsonl"

    def trigger(_):
        r = requests.post(url + "/webhook", timeout=10, json={"action": "START_TRAINING", "project": {"id": 23}})
        assert r.status_code == 201, r.text
        return int(r.headers[WORKER_HEADER]), r.json()["training"]

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(trigger, range(5)))
    said = [a for _, a in answers]
    assert said.count("started") == 1 and said.count("queued after the running job") == 4, answers

    def jobs():
        lines = [json.loads(x) for x in rounds.read_text().splitlines()] if rounds.exists() else []
        return [x for x in lines if x["project"] == "23"]

    deadline = time.time() + 4 * ROUND_SECONDS + 20
    while time.time() < deadline and sum(x["at"] == "end" for x in jobs()) < 2:
        time.sleep(0.2)
    time.sleep(ROUND_SECONDS + 1)  # a third job, were there one, would have started by now
    events = jobs()
    assert [x["at"] for x in events] == ["start", "end", "start", "end"], events  # two jobs, one after the other


def _sample(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_metrics_add_up_every_worker_and_forget_a_dead_ones_gauges(workers):
    url, pids = workers["url"], worker_pids(workers["pid"])
    seen = spread(lambda: (int(requests.get(url + "/openapi.json", timeout=10).headers[WORKER_HEADER]), 1), pids, n=8, rounds=10)
    assert set(seen) == pids
    sent = sum(len(v) for v in seen.values())
    name = 'goldloop_requests_total{endpoint="/openapi.json",status="200"}'
    scrapes = spread(lambda: (int((r := requests.get(url + "/metrics", timeout=10)).headers[WORKER_HEADER]), r.text), pids, n=4)
    assert set(scrapes) == pids  # whichever worker answers, it answers for all
    for text in (t for texts in scrapes.values() for t in texts):
        assert _sample(text, name) == sent and _sample(text, "goldloop_worker_processes") == 2
        assert 'goldloop_model_info{project="21",version="v-promoted"} 1.0' in text

    victim = min(pids)
    os.kill(victim, signal.SIGKILL)  # gunicorn starts a new worker; the dead one's counts stay in the sums
    deadline = time.time() + 90
    while time.time() < deadline and (victim in (now := worker_pids(workers["pid"])) or len(now) < 2):
        time.sleep(0.3)
    text = ""
    while time.time() < deadline:
        try:
            text = requests.get(url + "/metrics", timeout=10).text
        except requests.RequestException:
            text = ""
        if _sample(text, "goldloop_worker_processes") == 2:
            break
        time.sleep(0.3)
    assert _sample(text, "goldloop_worker_processes") == 2 and _sample(text, name) == sent, text[-2000:]


def test_stopping_the_master_stops_every_worker(workers):
    from server.stack import stop_pid

    pids = worker_pids(workers["pid"])
    stop_pid(workers["pid"], timeout=15)
    assert workers["proc"].poll() is not None
    assert not any(pid_alive(p) for p in pids)


@pytest.mark.e2e
def test_up_with_two_backend_workers_then_status_and_down(ls_template, tmp_path):
    """`goldloop up` with GOLDLOOP_BACKEND_WORKERS=2: Label Studio connects every project to the gunicorn
    backend, `goldloop status` shows its master healthy, `goldloop down` stops the master and both workers."""
    from tests.plugins.label_studio import goldloop, goldloop_stack

    with goldloop_stack(ls_template, tmp_path, {"GOLDLOOP_BACKEND_WORKERS": "2"}) as up:
        out = json.loads(goldloop("status", "--json", home=up["home"]).stdout)
        (be,) = [p for p in out["processes"] if p["name"] == "backend"]
        assert be["healthy"] and be["url"] == up["be"]
        pids = worker_pids(be["pid"])
        assert len(pids) == 2
        metrics = requests.get(up["be"] + "/metrics", timeout=10).text
        assert _sample(metrics, "goldloop_worker_processes") == 2
        assert _sample(metrics, 'goldloop_requests_total{endpoint="/setup",status="200"}') >= 1  # Label Studio connected
        assert out["projects"] and all(p["model_version"] for p in out["projects"])
        goldloop("down", home=up["home"])
        assert not any(pid_alive(p) for p in pids | {be["pid"]})  # a zombie left for init to reap is no process
