"""End to end: a real Label Studio project through two active-learning rounds.

annotations → START_TRAINING (Label Studio → backend webhook) → new version promoted and serving →
pool pre-annotated → /next serves the least confident task first; then a deliberately worse round
(train-split labels flipped) through `goldloop train` is refused by the gate and nothing changes.
"""
from __future__ import annotations

import json
import time

import pytest
import requests

from ml_backend.splits import split_of
from server import ls_client, stack, store
from server.config import Settings
from tests.plugins.backend import DATA, read_jsonl
from tests.plugins.label_studio import copy_home, free_port, goldloop

pytestmark = pytest.mark.e2e
MAP = {"Bullish": "positive", "Bearish": "negative", "Neutral": "neutral"}
FLIP = {"positive": "negative", "negative": "positive", "neutral": "positive"}


@pytest.fixture(scope="module")
def stack_up(ls_template, tmp_path_factory):
    home = copy_home(ls_template, tmp_path_factory.mktemp("e2e-loop") / "home")
    ls_port, be_port = free_port(), free_port()
    while be_port == ls_port:
        be_port = free_port()
    env = {"GOLDLOOP_COLD_START_LABELS": "500", "GOLDLOOP_MIN_ANNOTATIONS_TO_TRAIN": "1000"}
    goldloop("up", "--detach", "--no-samples", "--ls-port", str(ls_port), "--backend-port", str(be_port), home=home, env=env)
    db = store.open_db(home / "goldloop.db")
    pids = [p["pid"] for p in store.list_processes(db)]
    settings = Settings(home=home, ls_url=stack.url_for(ls_port), ls_api_key=stack.read_token(Settings(home=home)))
    try:
        yield {"home": home, "settings": settings, "client": ls_client.connect(settings), "be": f"http://127.0.0.1:{be_port}", "env": env}
    finally:
        goldloop("down", home=home, check=False)
        for pid in pids:
            if stack.pid_alive(pid):
                stack.stop_pid(pid)


def wait_for(predicate, timeout=240.0, interval=1.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")


def test_two_rounds(stack_up, tmp_path):
    home, client, settings = stack_up["home"], stack_up["client"], stack_up["settings"]
    db = store.open_db(home / "goldloop.db")
    pid = store.get_project_by_name(db, "financial_news")["id"]
    tweets = read_jsonl(DATA / "twitter_financial_news" / "train.jsonl")
    path = tmp_path / "tweets.jsonl"
    path.write_text("".join(json.dumps({"text": t["text"], "gold": MAP[t["label"]]}) + "\n" for t in tweets))
    goldloop("import", "financial_news", str(path), "--no-predict", home=home, env=stack_up["env"])
    tasks = list(ls_client.iter_tasks(client, pid))
    assert len(tasks) >= 200
    labeled, pool = tasks[:170], tasks[170:]
    for t in labeled:
        ls_client.create_annotation(client, t["id"], [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [t["data"]["gold"]]}}])

    # round 1: Label Studio's START_TRAINING → the backend runs the round in the background
    ml_id = store.get_project(db, pid)["ml_backend_id"]
    ls_client.train(client, ml_id)
    rec = wait_for(lambda: next((v for v in store.list_versions(db, pid) if v["status"] not in ("running",)), None))
    assert rec["status"] == "promoted", rec
    assert rec["trigger"] == "START_TRAINING" and rec["labeled_docs"] == 170 and rec["pool_docs"] == len(pool)
    version = rec["version"]
    metrics = json.loads(rec["metrics"])
    assert metrics["controls"]["sentiment"]["n"] == sum(1 for t in labeled if split_of(t["id"]) == "test")

    # serving: /setup answers the new version; the project's model_version follows it
    setup = requests.post(stack_up["be"] + "/setup", json={"project": f"{pid}.1", "schema": ls_client.get_project(client, pid).label_config}, timeout=5)
    assert setup.json()["model_version"] == version
    assert ls_client.get_project(client, pid).model_version == version
    # the pool is pre-annotated by the new version, and /next serves its least confident task first
    scores = {}
    for t in ls_client.iter_tasks(client, pid):
        preds = [p for p in t.get("predictions") or [] if p.get("model_version") == version]
        if not t.get("annotations"):
            assert preds, f"pool task {t['id']} has no prediction of {version}"
            scores[t["id"]] = preds[0]["score"]
    assert len(scores) == len(pool)
    nxt = ls_client.next_task(client, pid)
    assert nxt is not None and scores[nxt["id"]] == pytest.approx(min(scores.values()))

    # round 2, deliberately worse: flip every train-split label; `goldloop train` (another process) is gated
    for t in ls_client.iter_tasks(client, pid):
        if t.get("annotations") and split_of(t["id"]) == "train":
            ann = t["annotations"][0]
            client.annotations.update(id=ann["id"], result=[{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [FLIP[t["data"]["gold"]]]}}])
    out = goldloop("train", "financial_news", home=home, env={**stack_up["env"], "LABEL_STUDIO_URL": settings.ls_url, "LABEL_STUDIO_API_KEY": settings.ls_api_key}, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rejected" in out.stdout and "worse than serving" in out.stdout
    rows = store.list_versions(db, pid)
    assert [r["status"] for r in rows] == ["promoted", "rejected"]
    assert rows[1]["primary"] < rows[1]["serving_primary"]
    # nothing changed: same serving version everywhere
    setup = requests.post(stack_up["be"] + "/setup", json={"project": f"{pid}.1", "schema": ls_client.get_project(client, pid).label_config}, timeout=5)
    assert setup.json()["model_version"] == version and ls_client.get_project(client, pid).model_version == version
    listing = goldloop("versions", "financial_news", home=home, env={"LABEL_STUDIO_URL": settings.ls_url, "LABEL_STUDIO_API_KEY": settings.ls_api_key})
    assert version in listing.stdout and "rejected" in listing.stdout
    rep = goldloop("report", "financial_news", "--out", str(tmp_path / "report"), home=home, env={"LABEL_STUDIO_URL": settings.ls_url, "LABEL_STUDIO_API_KEY": settings.ls_api_key})
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "report" / "confusion_sentiment.png").stat().st_size > 1000
