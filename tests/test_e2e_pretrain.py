"""End to end: `goldloop pretrain` on a real Label Studio project before anyone annotates, then a round on the
project's own (deliberately wrong) labels meets the pretrained version at the gate and is refused.

Kept small: 30 starter documents, so the pretrained entity model is the string matcher (below the fine-tuning
threshold); the path — mapping, stable split, train, evaluate, gate, publish, serve — is the one a starter takes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from ml_backend.splits import split_of
from server import ls_client, store
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
