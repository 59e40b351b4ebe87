"""`goldloop predict` against a real Label Studio and a real promoted version: a run cut short by --limit, a run
killed with SIGKILL mid-way, then Ray local (2 CPUs) predicts exactly the rest; every task ends with one prediction
of the serving version, equal to what the backend's /predict answers for it; a further run predicts nothing.
Cold-start-sized models (GOLDLOOP_COLD_START_LABELS high) keep the round to seconds: label prototypes on the encoder
for the sentiment, the span matcher for the companies annotators marked."""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import subprocess
import time
from collections import Counter

import pytest
import requests

from ml_backend.results import choices_of, spans_of
from server import ls_client, store
from server.predict import run_predict
from tests.plugins.backend import DATA, read_jsonl
from tests.plugins.label_studio import ROOT, free_port, goldloop, goldloop_stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MAP = {"Bullish": "positive", "Bearish": "negative", "Neutral": "neutral"}
CASHTAG = re.compile(r"\$[A-Z]{1,5}\b")


def _annotation(task: dict) -> list[dict]:
    text = task["data"]["text"]
    result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [task["data"]["gold"]]}}]
    for m in CASHTAG.finditer(text):
        result.append({"from_name": "entities", "to_name": "text", "type": "labels",
                       "value": {"start": m.start(), "end": m.end(), "text": m.group(), "labels": ["Company"]}})
    return result


@pytest.fixture(scope="module")
def trained(ls_template, tmp_path_factory):
    """financial_news with 60 labeled tweets, a promoted version, 20 pool tweets it pre-annotated, and 130 tweets
    imported after the round (no prediction yet)."""
    tmp = tmp_path_factory.mktemp("e2e-predict")
    env = {"GOLDLOOP_COLD_START_LABELS": "500", "GOLDLOOP_MIN_ANNOTATIONS_TO_TRAIN": "100000"}
    with goldloop_stack(ls_template, tmp, env) as up:
        env.update({"LABEL_STUDIO_URL": up["settings"].ls_url, "LABEL_STUDIO_API_KEY": up["settings"].ls_api_key})
        home, client, db = up["home"], up["client"], up["db"]
        pid = store.get_project_by_name(db, "financial_news")["id"]
        tweets = read_jsonl(DATA / "twitter_financial_news" / "train.jsonl")
        first, later = tmp / "first.jsonl", tmp / "later.jsonl"
        first.write_text("".join(json.dumps({"text": t["text"], "gold": MAP[t["label"]]}) + "\n" for t in tweets[:80]))
        later.write_text("".join(json.dumps({"text": t["text"]}) + "\n" for t in tweets[80:]))
        goldloop("import", "financial_news", str(first), "--no-predict", home=home, env=env)
        for t in list(ls_client.iter_tasks(client, pid))[:60]:
            ls_client.create_annotation(client, t["id"], _annotation(t))
        goldloop("train", "financial_news", home=home, env=env)
        version = json.loads((home / "models" / str(pid) / "serving.json").read_text())["version"]
        goldloop("import", "financial_news", str(later), "--no-predict", home=home, env=env)
        yield {**up, "env": env, "pid": pid, "version": version}


def _by_task(client, pid: int, version: str) -> dict[int, list[dict]]:
    """Each task's predictions of `version`."""
    return {t["id"]: [p for p in t.get("predictions") or [] if p.get("model_version") == version]
            for t in ls_client.iter_tasks(client, pid)}


def _predict_answers(be: str, label_config: str, pid: int, tasks: list[dict]) -> list[dict]:
    out = []
    for i in range(0, len(tasks), 32):
        r = requests.post(be + "/predict", timeout=120, json={"project": f"{pid}.1", "label_config": label_config,
                                                             "tasks": [{"id": t["id"], "data": t["data"]} for t in tasks[i : i + 32]]})
        assert r.status_code == 200, r.text
        out += r.json()["results"]
    return out


def test_limit_kill_then_ray_predict_each_task_once_as_predict_does(trained):
    k, client, pid, version = trained, trained["client"], trained["pid"], trained["version"]
    before = _by_task(client, pid, version)
    n_tasks = len(before)
    pre_annotated = {tid for tid, preds in before.items() if preds}
    assert n_tasks == 210 and len(pre_annotated) == 20  # the round pre-annotated its pool, nothing else

    # 1. in-process, cut short by --limit
    out = goldloop("predict", "financial_news", "--limit", "25", "--batch-size", "8", "--json", home=k["home"], env=k["env"])
    first = json.loads(out.stdout)
    assert (first["predicted"], first["remaining"], first["engine"], first["version"]) == (25, True, "in-process", version)
    after_limit = _by_task(client, pid, version)
    missing = [tid for tid, preds in before.items() if not preds]  # in Label Studio's listing order
    assert {tid for tid, preds in after_limit.items() if preds} == pre_annotated | set(missing[:25])

    # 2. in-process again, killed (SIGKILL) once some batches are in
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "predict", "financial_news", "--batch-size", "4",
                             "--data-dir", str(k["home"])], cwd=ROOT, env={**os.environ, **k["env"]},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ls_client.get_project(client, pid).total_predictions_number >= 45 + 12, timeout=300, interval=0.2)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = _by_task(client, pid, version)
    done_before_ray = sum(1 for p in killed.values() if p)
    assert 45 + 12 <= done_before_ray < n_tasks

    # 3. Ray local (2 CPUs): exactly the rest
    ray_run = run_predict(k["settings"], "financial_news", ray="local", num_cpus=2, batch_size=16, progress=False, client=client)
    assert ray_run.engine == "ray local" and ray_run.actors == 2 and ray_run.startup_s > 0
    assert ray_run.predicted == n_tasks - done_before_ray and ray_run.skipped_has_version == done_before_ray

    final = _by_task(client, pid, version)
    assert Counter(len(p) for p in final.values()) == Counter({1: n_tasks})  # every task once, none twice

    # 4. what Label Studio holds equals what the backend's /predict answers for the same tasks
    tasks = list(ls_client.iter_tasks(client, pid))
    label_config = ls_client.get_project(client, pid).label_config
    answers = _predict_answers(k["be"], label_config, pid, tasks)
    with_spans = 0
    for task, want in zip(tasks, answers):
        got = final[task["id"]][0]
        assert want["model_version"] == version
        assert got["score"] == pytest.approx(want["score"], abs=1e-4), task["id"]
        assert sorted(spans_of(got["result"])) == sorted(spans_of(want["result"])), task["id"]
        assert choices_of(got["result"]) == choices_of(want["result"]), task["id"]
        with_spans += bool(list(spans_of(got["result"])))
    assert with_spans >= 10  # the matcher proposed the companies annotators marked: spans were compared, not only choices

    # 5. nothing left: a further run predicts nothing
    again = run_predict(k["settings"], "financial_news", progress=False, client=client)
    assert again.predicted == 0 and again.skipped_has_version == n_tasks


def test_bad_input_is_a_one_line_error(trained):
    k = trained
    cases = [
        (("predict", "no_such_project"), "unknown project 'no_such_project'"),
        (("predict", "contracts"), "has no trained model version yet"),
        (("predict", "financial_news", "--ray", f"127.0.0.1:{free_port()}"), "no Ray cluster answers at 127.0.0.1:"),
        (("predict", "financial_news", "--ray", "nowhere"), "--ray expects 'local', 'auto', HOST:PORT"),
    ]
    for args, expected in cases:
        t0 = time.monotonic()
        out = goldloop(*args, home=k["home"], env=k["env"], check=False)
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        assert len(lines) == 1 and lines[0].startswith("Error:") and expected in lines[0], out.stderr
        assert time.monotonic() - t0 < 60
