"""End to end: `goldloop pretrain` on a real Label Studio project before anyone annotates, then a round on the
project's own (deliberately wrong) labels meets the pretrained version at the gate and is refused; and the starter
sets of `goldloop up --no-samples` reaching the documents a person imports afterwards.

Kept small: 30 starter documents, so the pretrained entity model is the string matcher (below the fine-tuning
threshold); the path — mapping, stable split, train, evaluate, gate, publish, serve — is the one a starter takes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from ml_backend.splits import split_of
from server import ls_client, stack, store
from tests.plugins.label_studio import goldloop, goldloop_stack, ncbi_span_results, write_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NCBI = Path(__file__).resolve().parents[1] / "server" / "starters" / "medical_records" / "ncbi_disease.jsonl"
MAPS = ["--map", "SpecificDisease=Disease", "--map", "DiseaseClass=Disease", "--map", "CompositeMention=Disease"]


def _ncbi(start: int, n: int) -> list[dict]:
    return [json.loads(line) for line in NCBI.read_text(encoding="utf-8").splitlines() if line.strip()][start : start + n]


@pytest.fixture(scope="module")
def stack_up(ls_template, tmp_path_factory):
    env = {"GOLDLOOP_MIN_ANNOTATIONS_TO_TRAIN": "1000"}
    with goldloop_stack(ls_template, tmp_path_factory.mktemp("e2e-pretrain"), env) as up:
        yield {**up, "env": env}


def test_pretrain_serves_spans_before_any_annotation_and_guards_them_at_the_gate(stack_up, tmp_path):
    home, client, env = stack_up["home"], stack_up["client"], stack_up["env"]
    db = store.open_db(home / "goldloop.db")
    pid = store.get_project_by_name(db, "medical_records")["id"]
    docs = _ncbi(30, 40)  # the project's documents: not among the 30 the starter learns from
    goldloop("import", "medical_records", str(write_jsonl(tmp_path / "docs.jsonl", [{"text": d["text"], "ncbi": d["id"]} for d in docs])),
             "--no-predict", "--no-mask-pii", home=home, env=env)
    data = write_jsonl(tmp_path / "starter.jsonl", _ncbi(0, 30))

    bad = goldloop("pretrain", "medical_records", "--data", str(data), "--map", "Chemical=Drug", home=home, env=env, check=False)
    err = [ln for ln in bad.stderr.splitlines() if ln.startswith("Error:")]
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and len(err) == 1, bad.stderr
    assert "'Drug'" in err[0] and "Disease" in err[0] and "Medication" in err[0]

    out = goldloop("pretrain", "medical_records", "--data", str(data), *MAPS, home=home, env=env).stdout
    rec = next(v for v in store.list_versions(db, pid) if v["trigger"] == "pretrain")
    assert rec["status"] == "promoted", rec
    version = rec["version"]
    report = json.loads(rec["pretrain"])
    assert report["mapping"]["SpecificDisease"] == "Disease" and report["dropped_labels"].get("Modifier", 0) > 0
    assert rec["data_hash"] and rec["dataset_version"] == f"pretrain-{rec['data_hash'][:12]}" and "Modifier" in out
    assert rec["pool_docs"] == len(docs) and rec["labeled_docs"] == 30

    # nobody has annotated yet: Label Studio names the version, the pool carries its spans, /predict serves them
    project = ls_client.get_project(client, pid)
    assert project.model_version == version
    tasks = list(ls_client.iter_tasks(client, pid))
    with_spans = [t for t in tasks if any(p["model_version"] == version and p["result"] for p in t.get("predictions") or [])]
    assert with_spans, "no task was pre-annotated with a span"
    task = with_spans[0]
    pred = requests.post(stack_up["be"] + "/predict", json={"project": f"{pid}.1", "label_config": project.label_config,
                                                           "tasks": [{"id": task["id"], "data": task["data"]}]}, timeout=60).json()
    result = pred["results"][0]
    assert result["model_version"] == version
    spans = [r for r in result["result"] if r["type"] == "labels"]
    assert spans and all(r["value"]["labels"] == ["Disease"] for r in spans)
    text = task["data"]["text"]
    assert all(text[r["value"]["start"] : r["value"]["end"]] == r["value"]["text"] for r in spans)

    # the project's own labels, wrong on the train split (every disease marked Medication): the round is worse on
    # the project's test split than the pretrained version, so the gate keeps the pretrained version serving
    gold = {d["id"]: d for d in docs}
    for t in tasks:
        flip = split_of(t["id"]) != "test"
        ls_client.create_annotation(client, t["id"], ncbi_span_results(gold[t["data"]["ncbi"]], t["data"]["text"], "Medication" if flip else "Disease"))
    goldloop("train", "medical_records", home=home, env=env)
    later = store.list_versions(db, pid)[-1]
    assert later["trigger"] == "cli" and later["status"] == "rejected", later
    assert later["serving_version"] == version and later["primary"] < later["serving_primary"]
    assert ls_client.get_project(client, pid).model_version == version


def test_up_without_samples_then_an_import_trains_the_starters_and_pre_annotates_the_imported_tasks(ls_template, tmp_path):
    """The first steps of a person with their own documents: `goldloop up --no-samples`, then `goldloop import`. The
    starters train on projects without tasks (no failure "nothing to pre-annotate"), and the imported tasks carry the
    starter's predictions, whether they arrived before it was promoted or after. Kept short: the starters' models are
    the cheap ones (GOLDLOOP_COLD_START_LABELS above their sizes); the publishing path is the real encoder's."""
    from server import starters
    from tests.plugins.label_studio import sample_texts, wait_for

    env = {"GOLDLOOP_STARTERS": "1", "GOLDLOOP_COLD_START_LABELS": "100000", "GOLDLOOP_MIN_ANNOTATIONS_TO_TRAIN": "1000"}
    with goldloop_stack(ls_template, tmp_path, env) as up:
        home, client, db = up["home"], up["client"], up["db"]
        med = store.get_project_by_name(db, "medical_records")["id"]
        news = store.get_project_by_name(db, "financial_news")["id"]
        docs = _ncbi(100, 8)
        out = goldloop("import", "medical_records", str(write_jsonl(tmp_path / "docs.jsonl", [{"text": d["text"]} for d in docs])),
                       "--no-mask-pii", home=home, env=env).stdout
        assert "starter set: training" in out or starters.state(db, med)["status"] == "promoted", out  # never "failed"

        wait_for(lambda: not stack.live_processes(db, store.STARTERS), timeout=300, interval=1)  # the background training ended
        rows = [starters.state(db, p) or {} for p in (med, news)]
        log = (home / "logs" / "starters.log").read_text()
        assert [r["status"] for r in rows] == ["promoted", "promoted"], log[-3000:]
        version = rows[0]["version"]
        tasks = list(ls_client.iter_tasks(client, med))
        assert len(tasks) == len(docs)
        assert all(version in [p["model_version"] for p in t["predictions"]] for t in tasks), (version, [t["predictions"] for t in tasks])
        assert any(p["result"] for t in tasks for p in t["predictions"] if p["model_version"] == version)
        assert ls_client.get_project(client, med).model_version == version

        # financial news had no task when its starter was published: the next import gets its predictions from the backend
        news_rec = store.get_version(db, news, rows[1]["version"])
        assert news_rec["pool_docs"] == 0 and "before the project had tasks" in news_rec["decision"], news_rec
        out = goldloop("import", "financial_news", str(write_jsonl(tmp_path / "news.jsonl", [{"text": t} for t in sample_texts("financial_news", 5)])),
                       home=home, env=env).stdout
        assert "starter set" not in out and "pre-annotated: 5" in out, out
        assert all([p["model_version"] for p in t["predictions"]] == [rows[1]["version"]] for t in ls_client.iter_tasks(client, news))
        assert ls_client.get_project(client, news).model_version == rows[1]["version"]
        status = goldloop("status", home=home, env=env).stdout
        assert f"project {med}: starter promoted {version}" in status and "run: goldloop pretrain" not in status, status


TWEETS = Path(__file__).resolve().parents[1] / "server" / "starters" / "financial_news" / "twitter_financial_news_sentiment.jsonl"
MOOD = {"Bullish": "positive", "Bearish": "negative", "Neutral": "neutral"}


def test_a_round_on_the_projects_labels_continues_from_the_pretrained_version_and_serves_one_at_least_as_good(stack_up, tmp_path):
    """The loop compounds: a pretrained (starter-like) sentiment model serves financial_news; the project's own 90
    labels train a round that continues from its weights and rehearses the starter's tweets beside them (the version
    says both), and what serves afterwards is at least as good on the project's test split as the pretrained version
    (within the gate's tolerance)."""
    from server import starters

    home, client, env = stack_up["home"], stack_up["client"], stack_up["env"]
    db = store.open_db(home / "goldloop.db")
    pid = store.get_project_by_name(db, "financial_news")["id"]
    tweets = [json.loads(line) for line in TWEETS.read_text(encoding="utf-8").splitlines() if line.strip()]
    data = write_jsonl(tmp_path / "starter.jsonl", tweets[:100])  # the pretrained version's: 100 tweets, fine-tuned
    cheap = ("--min-steps", "20")  # the real encoder, fewer optimizer steps than a user's round takes
    goldloop("pretrain", "financial_news", "--data", str(data), "--control", "sentiment", *cheap,
             *[a for k, v in MOOD.items() for a in ("--map", f"{k}={v}")], home=home, env=env)
    pre = next(v for v in store.list_versions(db, pid) if v["trigger"] == "pretrain")
    assert pre["status"] == "promoted" and pre["project_labels"] == 0, pre
    assert json.loads(pre["models"])[0]["kind"] == "sequence_classifier"
    # the starter record `goldloop pretrain --starters` leaves (its 1,500 tweets train too long for this test): a project
    # its starter served rehearses the starter's training tweets in its rounds
    db[starters.TABLE].create(starters.COLUMNS, pk="project_id", if_not_exists=True)
    db[starters.TABLE].upsert({"project_id": pid, "schema": "financial_news", "language": "en", "status": "promoted",
                               "version": pre["version"]}, pk="project_id", alter=True)

    mine = tweets[100:190]  # the project's own documents and labels
    goldloop("import", "financial_news", str(write_jsonl(tmp_path / "mine.jsonl", [{"text": t["text"], "i": i} for i, t in enumerate(mine)])),
             "--no-predict", "--no-mask-pii", home=home, env=env)
    for t in ls_client.iter_tasks(client, pid):
        mood = MOOD[mine[t["data"]["i"]]["label"]]
        ls_client.create_annotation(client, t["id"], [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [mood]}}])
    goldloop("train", "financial_news", *cheap, "--epochs", "1", home=home, env=env)
    rnd = store.list_versions(db, pid)[-1]
    mood = next(ci for ci in json.loads(rnd["models"]) if ci["control"] == "sentiment")
    own = mood["train_docs"] - mood["rehearsed"]["documents"]  # the project's train split, the floor of starter tweets beside it
    assert mood["rehearsed"] == {"documents": 128, "from": "starter financial_news (en)"} and 0 < own < len(mine), mood
    assert rnd["trigger"] == "cli" and rnd["status"] in ("promoted", "rejected"), rnd
    assert json.loads(rnd["started_from"]) == {"sentiment": pre["version"]} and rnd["project_labels"] == len(mine), rnd
    assert rnd["serving_version"] == pre["version"]
    served = rnd["primary"] if rnd["status"] == "promoted" else rnd["serving_primary"]
    assert served >= rnd["serving_primary"] - 0.005  # on the project's own test split
    if rnd["status"] == "promoted":
        assert ls_client.get_project(client, pid).model_version == rnd["version"]
    else:  # the pretrained version keeps serving (published before the project had tasks: Label Studio names none of it)
        assert [v["version"] for v in store.list_versions(db, pid) if v["status"] == "promoted"][-1] == pre["version"]
