"""End to end: `goldloop distill` on a real Label Studio project whose serving version is a fine-tuned token classifier.

The teacher comes the cheapest honest way: `goldloop pretrain` on 80 real NCBI abstracts (tests/data/ncbi_disease,
disjoint from the project's documents) with a short schedule, so the project serves a fine-tuned
all-MiniLM-L6-v2 token classifier. The project's own 60 abstracts are imported and 48 of them annotated with their
gold diseases; the rest are the pool. A 3-layer student is then distilled, gated on the project's test split,
promoted and served; a 1-layer student trained for one step meets a zero tolerance and is refused.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from ml_backend.registry import Registry
from server import ls_client, store
from tests.plugins.label_studio import goldloop, goldloop_stack, ncbi_span_results, write_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NCBI = Path(__file__).resolve().parent / "data" / "ncbi_disease"
MAPS = ["--map", "SpecificDisease=Disease", "--map", "DiseaseClass=Disease", "--map", "CompositeMention=Disease"]
LABELS = {"Disease", "Medication", "Symptom", "Procedure", "Dosage"}
ANNOTATED = 48  # of the project's 60 documents; the other 12 are the unlabeled pool
TEACHER_STEPS = "100"  # ~100 s on 2 quiet cores; enough for a teacher well above zero entity F1
SLOW = 1800  # seconds a fit may take on a loaded machine (pytest's own timeout bounds the test)


def _rows(name: str, n: int) -> list[dict]:
    return [json.loads(line) for line in (NCBI / name).read_text(encoding="utf-8").splitlines() if line.strip()][:n]


def _predict(be: str, pid: int, label_config: str, tasks: list[dict]) -> list[dict]:
    body = {"project": f"{pid}.1", "label_config": label_config, "tasks": [{"id": t["id"], "data": t["data"]} for t in tasks]}
    resp = requests.post(be + "/predict", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()["results"]


@pytest.fixture(scope="module")
def stack_up(ls_template, tmp_path_factory):
    env = {"GOLDLOOP_MIN_ANNOTATIONS_TO_TRAIN": "1000"}  # the annotations below must not start a round of their own
    with goldloop_stack(ls_template, tmp_path_factory.mktemp("e2e-distill"), env) as up:
        yield {**up, "env": env}


def test_distill_promotes_a_served_student_and_the_gate_refuses_a_bad_one(stack_up, tmp_path):
    home, client, env, be = stack_up["home"], stack_up["client"], stack_up["env"], stack_up["be"]
    db = store.open_db(home / "goldloop.db")
    pid = store.get_project_by_name(db, "medical_records")["id"]
    docs = _rows("test.jsonl", 60)
    goldloop("import", "medical_records", str(write_jsonl(tmp_path / "docs.jsonl", [{"text": d["text"], "ncbi": d["id"]} for d in docs])),
             "--no-predict", "--no-mask-pii", home=home, env=env)

    # the teacher: a fine-tuned token classifier from outside labels, serving before anyone annotates
    starter = write_jsonl(tmp_path / "starter.jsonl", _rows("train.jsonl", 80))
    # with GOLDLOOP_DISTILL_LAYERS the rule of server/jobs.py follows the promotion with a student, as after `train`;
    # nobody has annotated yet, so it has no labels to distil on and says so without touching the teacher
    out = goldloop("pretrain", "medical_records", "--data", str(starter), *MAPS, "--min-steps", TEACHER_STEPS, home=home,
                   env={**env, "GOLDLOOP_DISTILL_LAYERS": "3"}, timeout=SLOW).stdout
    teacher = next(v for v in store.list_versions(db, pid) if v["trigger"] == "pretrain")
    assert teacher["status"] == "promoted", teacher
    follower = next(v for v in store.list_versions(db, pid) if v["trigger"] == "auto-distill")
    assert follower["status"] == "not started" and follower["started_at"] > teacher["started_at"], follower
    assert f"{follower['version']}: not started" in out
    assert Registry(stack_up["settings"].backend_settings()).current_version(str(pid)) == teacher["version"]
    assert json.loads(teacher["models"])[0]["kind"] == "token_classifier", teacher["models"]

    gold = {d["id"]: d for d in docs}
    tasks = sorted(ls_client.iter_tasks(client, pid), key=lambda t: t["id"])
    assert len(tasks) == len(docs)
    for t in tasks[:ANNOTATED]:
        ls_client.create_annotation(client, t["id"], ncbi_span_results(gold[t["data"]["ncbi"]], t["data"]["text"]))
    pool = tasks[ANNOTATED:]

    out = goldloop("distill", "medical_records", "--layers", "3", "--max-steps", "150", "--tolerance", "0.1", home=home, env=env, timeout=SLOW).stdout
    student = next(v for v in reversed(store.list_versions(db, pid)) if v["trigger"] == "distill")
    assert student["status"] == "promoted", student
    version = student["version"]
    assert out.startswith(f"{version}: promoted — distilled from {teacher['version']} (3 of 6 layers)"), out
    assert student["distilled_from"] == teacher["version"] and student["student_layers"] == 3
    assert student["serving_version"] == teacher["version"] and student["pool_docs"] == len(pool)
    assert student["primary"] > 0.25, f"student entity F1 {student['primary']}"
    assert student["primary"] >= student["serving_primary"] - 0.1
    record = json.loads(student["distill"])
    control = record["controls"][0]
    assert record["teacher_version"] == teacher["version"] and record["tolerance"] == 0.1
    assert control["control"] == "entities" and control["layers"] == 3 and control["kept_layers"] == [1, 3, 5]
    assert control["params"] < control["teacher_params"] and control["steps"] == 150
    assert control["speed"]["student_docs_s"] > 0 and control["speed"]["teacher_docs_s"] > 0

    # the gate's decision travels with the saved version, which the registry now serves
    registry = Registry(stack_up["settings"].backend_settings())
    meta = json.loads((registry.path(str(pid), version) / "version.json").read_text())
    assert meta["decision"] == student["decision"] and meta["distill"]["teacher_version"] == teacher["version"]
    assert (registry.pointer(str(pid)) or {}).get("version") == version
    project = ls_client.get_project(client, pid)
    assert project.model_version == version
    results = _predict(be, pid, project.label_config, pool)
    assert all(r["model_version"] == version for r in results), [r["model_version"] for r in results]
    spans = [(t["data"]["text"], r) for t, res in zip(pool, results) for r in res["result"] if r["type"] == "labels"]
    assert spans, "the student found no entity in the pool"
    for text, r in spans:
        v = r["value"]
        assert 0 <= v["start"] < v["end"] <= len(text) and text[v["start"]:v["end"]] == v["text"]
        assert set(v["labels"]) <= LABELS and v["labels"]

    # a 1-layer student after one step cannot stay within a zero tolerance: recorded, refused, the 3-layer one serves
    out = goldloop("distill", "medical_records", "--layers", "1", "--max-steps", "1", "--tolerance", "0", home=home, env=env, timeout=SLOW).stdout
    bad = next(v for v in reversed(store.list_versions(db, pid)) if v["trigger"] == "distill")
    assert bad["version"] != version and bad["status"] == "rejected", bad
    assert bad["distilled_from"] == version and bad["serving_version"] == version
    assert bad["primary"] < bad["serving_primary"]
    assert bad["decision"].startswith(f"distilled from {version} (1 of 3 layers): not within 0.0 of the teacher"), bad["decision"]
    assert f"{bad['version']}: rejected" in out
    assert not registry.path(str(pid), bad["version"]).exists()
    assert (registry.pointer(str(pid)) or {}).get("version") == version
    assert ls_client.get_project(client, pid).model_version == version
    assert all(r["model_version"] == version for r in _predict(be, pid, project.label_config, pool[:2]))


def test_a_student_of_a_fully_labeled_project_becomes_label_studios_model_version(stack_up):
    """Every task labeled (the first test's pool annotated too): a promoted student's predictions go on the labeled
    tasks, as a round's do, and Label Studio's project version follows the registry's."""
    home, client, env = stack_up["home"], stack_up["client"], stack_up["env"]
    db = store.open_db(home / "goldloop.db")
    pid = store.get_project_by_name(db, "medical_records")["id"]
    teacher = next(v for v in store.list_versions(db, pid) if v["trigger"] == "pretrain" and v["status"] == "promoted")
    gold = {d["id"]: d for d in _rows("test.jsonl", 60)}
    tasks = list(ls_client.iter_tasks(client, pid))
    for t in tasks:
        if not t.get("annotations"):
            ls_client.create_annotation(client, t["id"], ncbi_span_results(gold[t["data"]["ncbi"]], t["data"]["text"]))
    goldloop("distill", "medical_records", "--from", teacher["version"], "--layers", "3", "--max-steps", "60",
             "--tolerance", "1", home=home, env=env, timeout=SLOW)
    registry = Registry(stack_up["settings"].backend_settings())
    full = next(v for v in reversed(store.list_versions(db, pid)) if v["trigger"] == "distill")
    assert full["status"] == "promoted" and full["pool_docs"] == 0, full
    assert (registry.pointer(str(pid)) or {}).get("version") == full["version"]
    assert ls_client.get_project(client, pid).model_version == full["version"]
    assert full["predicted_labeled_docs"] == len(tasks)
