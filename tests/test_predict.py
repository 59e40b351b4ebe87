"""Bulk pre-annotation without Label Studio: the batch function answers what /predict answers, the scan keeps exactly
the tasks a run must predict, Ray's bad input is a one-line error in seconds."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ml_backend import create_app
from ml_backend.models import Examples, SpanMatcher, TfidfClassifier
from ml_backend.registry import ProjectModel, Registry
from ml_backend.results import choices_of, spans_of
from ml_backend.schema import parse_label_config
from server.predict import scan_tasks
from server.predict_batch import BatchPredictor, Job, PredictError, columns, decode
from server.predict_ray import check_ray, host_port
from tests.plugins.label_studio import ROOT, free_port

XML = """<View><Text name="text" value="$text"/>
<Choices name="mood" toName="text"><Choice value="up"/><Choice value="down"/></Choices>
<Labels name="ents" toName="text"><Label value="Company"/><Label value="Money"/></Labels></View>"""
TEXTS = ["Acme shares rise after profit", "Globex profit up 5 million", "Acme shares fall", "Globex loss widens",
         "Initech shares rise", "Initech loss widens on weak sales"]
MOODS = [["up"], ["up"], ["down"], ["down"], ["up"], ["down"]]


def promoted(settings, key: str = "12", version: str = "v-bulk-1") -> ProjectModel:
    spec = parse_label_config(XML)
    mood = TfidfClassifier(["up", "down"])
    mood.fit(Examples(TEXTS, MOODS))
    ents = SpanMatcher(["Company", "Money"])
    for surface, label in (("Acme", "Company"), ("Globex", "Company"), ("5 million", "Money")):
        ents.add(surface, label)
    pm = ProjectModel(spec, version, {"mood": mood, "ents": ents})
    Registry(settings).promote(key, pm)
    return pm


def test_the_batch_function_answers_what_predict_answers(tiny_settings):
    promoted(tiny_settings)
    docs = TEXTS + ["Umbrella Corp hires", "Acme and Globex merge for 5 million"]
    tasks = [{"id": 100 + i, "data": {"text": t}} for i, t in enumerate(docs)]
    answer = create_app(tiny_settings).test_client().post("/predict", json={"project": "12.1700000000", "label_config": XML, "tasks": tasks})
    assert answer.status_code == 200
    served = answer.get_json()["results"]

    predictor = BatchPredictor(Job("12", XML, "v-bulk-1", tiny_settings))
    rows = [{"task": t["id"], "text_0": t["data"]["text"]} for t in tasks]
    ours = decode(predictor(columns(rows[:3]))) + decode(predictor(columns(rows[3:])))  # batches of another size

    assert [o["task"] for o in ours] == [t["id"] for t in tasks]
    for got, want in zip(ours, served):
        assert got["model_version"] == want["model_version"] == "v-bulk-1"
        assert got["score"] == pytest.approx(want["score"], abs=1e-6)
        assert sorted(spans_of(got["result"])) == sorted(spans_of(want["result"]))
        assert choices_of(got["result"]) == choices_of(want["result"])
    assert any(spans_of(o["result"]) for o in ours) and all(choices_of(o["result"]) for o in ours)


def test_a_version_promoted_after_the_run_began_stops_the_batch_function(tiny_settings):
    promoted(tiny_settings, version="v-newer")
    with pytest.raises(PredictError, match="changed from v-bulk-1 to v-newer"):
        BatchPredictor(Job("12", XML, "v-bulk-1", tiny_settings))


def _task(tid: int, text, *versions: str) -> dict:
    return {"id": tid, "data": {"text": text} if text is not None else {}, "predictions": [{"model_version": v} for v in versions]}


def test_the_scan_skips_what_holds_the_version_and_what_cannot_be_predicted():
    spec = parse_label_config(XML)
    tasks = [_task(1, "a"), _task(2, "b", "v2"), _task(3, "c", "v1"), _task(4, "  "), _task(5, None), _task(6, "x" * 50),
             _task(7, "d", "v1", "v2"), _task(8, "e")]
    scan = scan_tasks(tasks, spec, "v2", max_text_chars=40)
    assert [r["task"] for r in scan.rows] == [1, 3, 8] and scan.rows[0]["text_0"] == "a"
    assert (scan.seen, scan.has_version, scan.has_other, scan.bad_text, scan.limited) == (8, 2, 0, 3, False)

    only = scan_tasks(tasks, spec, "v2", only_missing=True, max_text_chars=40)
    assert [r["task"] for r in only.rows] == [1, 8] and only.has_other == 1

    cut = scan_tasks(tasks, spec, "v2", limit=2, max_text_chars=40)
    assert [r["task"] for r in cut.rows] == [1, 3] and cut.limited
    assert scan_tasks(tasks, spec, "v2", limit=3, max_text_chars=40).limited is False  # the limit is not reached


def test_cluster_addresses_are_parsed_and_a_dead_one_fails_in_seconds():
    assert host_port("ray://10.0.0.5:10001") == ("10.0.0.5", 10001)
    assert host_port("head.example:6379") == ("head.example", 6379)
    assert host_port("auto") is None
    with pytest.raises(PredictError, match="expects 'local', 'auto', HOST:PORT"):
        host_port("nowhere")
    t0 = time.monotonic()
    with pytest.raises(PredictError, match="no Ray cluster answers at 127.0.0.1:"):
        check_ray(f"127.0.0.1:{free_port()}")
    assert time.monotonic() - t0 < 10  # Ray itself would wait for minutes


def test_without_ray_installed_the_ray_path_says_how_to_install_it():
    code = ("import sys; sys.modules['ray'] = None\n"
            "from server.predict_ray import import_ray\n"
            "from server.predict_batch import PredictError\n"
            "try:\n    import_ray()\nexcept PredictError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "--ray needs Ray Data: pip install 'goldloop[ray]' (or: pip install 'ray[data]')"


def test_goldloop_works_without_importing_ray():
    code = "import sys, server.cli, server.predict; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_one_predict_run_per_project_at_a_time(tmp_path):
    from server.predict import predict_lock

    with predict_lock(tmp_path / "locks" / "predict-3.lock", 3):
        with pytest.raises(PredictError, match="another goldloop predict is running"):
            with predict_lock(tmp_path / "locks" / "predict-3.lock", 3):
                pass
        with predict_lock(tmp_path / "locks" / "predict-4.lock", 4):  # another project is not blocked
            pass
    with predict_lock(tmp_path / "locks" / "predict-3.lock", 3):  # released
        pass
