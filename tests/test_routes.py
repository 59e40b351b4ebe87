"""The HTTP protocol: real recorded Label Studio requests replayed, every bad input, auth, metrics."""
import base64
import json
import time

import pytest

from ml_backend import create_app
from ml_backend.schema import parse_label_config
from tests.plugins.backend import DATA, read_jsonl, schema_xml

RECORDED = [r for r in read_jsonl(DATA / "label-studio-1.23.2-requests.jsonl") if "MARK" not in r]


def check_prediction_items(body, tasks, config):
    spec = parse_label_config(config)
    controls = {c.name: c for c in spec.controls}
    assert len(body["results"]) == len(tasks)
    for item, task in zip(body["results"], tasks):
        assert 0.0 <= item["score"] <= 1.0 and isinstance(item["model_version"], str)
        text = (task.get("data") or {}).get("text")
        for r in item["result"]:
            c = controls[r["from_name"]]
            assert r["to_name"] == c.to_name and r["type"] == c.type and 0 <= r["score"] <= 1
            if c.kind == "spans":
                v = r["value"]
                assert v["text"] == text[v["start"]:v["end"]] and v["labels"][0] in c.labels
            else:
                assert set(r["value"]["choices"]) <= set(c.labels)


def test_replay_recorded_label_studio_requests(tiny_client):
    """Every request Label Studio 1.23.2 sent gets a protocol-correct answer."""
    seen = set()
    for req in RECORDED:
        path = req["path"]
        if req["method"] == "GET":
            resp = tiny_client.get(path)
        else:
            resp = tiny_client.post(path, json=req["json"])
        assert resp.status_code in (200, 201), (path, resp.json)
        seen.add(path)
        if path == "/setup":
            assert resp.json["model_version"].startswith("coldstart-")
        if path == "/predict":
            check_prediction_items(resp.json, req["json"]["tasks"], req["json"]["label_config"])
            # the recorded project is a Choices project: every task gets its choice
            assert all(item["result"] and item["result"][0]["type"] == "choices" for item in resp.json["results"])
        if path == "/versions":
            assert "versions" in resp.json
    assert seen == {"/health", "/setup", "/predict", "/webhook", "/versions"}
    metrics = tiny_client.get("/metrics").data.decode()
    for action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_CREATED", "PROJECT_UPDATED", "START_TRAINING"):
        assert f'goldloop_webhook_events_total{{action="{action}"}}' in metrics


def test_health_never_loads_a_model_and_setup_is_fast(tiny_client, tiny_settings):
    assert tiny_client.get("/health").json["status"] == "UP"
    t0 = time.perf_counter()
    resp = tiny_client.post("/setup", json={"project": "7.1", "schema": schema_xml("medical_records")})
    assert time.perf_counter() - t0 < 3.0
    assert resp.json["model_version"].startswith("coldstart-")


def _predict(client, config, tasks, project="5.1"):
    return client.post("/predict", json={"project": project, "label_config": config, "tasks": tasks})


def test_mixed_config_spans_and_choices_in_one_prediction_and_online_learning(tiny_client):
    xml = schema_xml("contracts")
    text = "This Agreement is made between Acme Corp and Beta LLC. Acme Corp shall deliver the goods."
    task = {"id": 1, "data": {"text": text}}
    first = _predict(tiny_client, xml, [task]).json["results"][0]
    assert {r["from_name"] for r in first["result"]} == {"contract_type", "risk"}  # no span known yet
    annotation = {"id": 9, "was_cancelled": False, "result": [
        {"from_name": "entities", "to_name": "text", "type": "labels", "value": {"start": 31, "end": 40, "text": "Acme Corp", "labels": ["Party"]}},
        {"from_name": "risk", "to_name": "text", "type": "choices", "value": {"choices": ["low"]}}]}
    hook = tiny_client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 5}, "task": task, "annotation": annotation})
    assert hook.status_code == 200 and hook.json["learned"] is True
    second = _predict(tiny_client, xml, [{"id": 2, "data": {"text": "Acme Corp shall pay. ACME CORP agrees."}}]).json
    check_prediction_items(second, [{"data": {"text": "Acme Corp shall pay. ACME CORP agrees."}}], xml)
    spans = [r for r in second["results"][0]["result"] if r["type"] == "labels"]
    assert [(r["value"]["text"], r["value"]["labels"]) for r in spans] == [("Acme Corp", ["Party"]), ("ACME CORP", ["Party"])]
    assert {r["from_name"] for r in second["results"][0]["result"]} == {"entities", "contract_type", "risk"}


def test_user_config_multi_choice_other_field(tiny_client):
    xml = """<View><Text name="doc" value="$body"/><Choices name="topics" toName="doc" choice="multiple">
      <Choice value="earnings"/><Choice value="mergers"/></Choices></View>"""
    body = _predict(tiny_client, xml, [{"id": 1, "data": {"body": "Quarterly earnings beat estimates"}}]).json
    assert len(body["results"]) == 1 and body["results"][0]["model_version"].startswith("coldstart-")


@pytest.mark.parametrize(
    "payload, needle",
    [
        ("{not json", "must be JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"label_config": "<View/>"}), "missing 'tasks'"),
        (json.dumps({"tasks": {"id": 1}, "label_config": "<View/>"}), "must be a list"),
        (json.dumps({"tasks": [], "label_config": "this is not xml"}), "not valid XML"),
        (json.dumps({"tasks": [], "label_config": "<View><Text name='t' value='$text'/></View>"}), "no supported control"),
        (json.dumps({"tasks": [{"data": {"text": "x"}}], "project": "99.1"}), "no label_config"),
    ],
)
def test_bad_requests_get_4xx_json_naming_the_problem(tiny_client, payload, needle):
    resp = tiny_client.post("/predict", data=payload, content_type="application/json")
    assert resp.status_code == 400 and resp.is_json
    assert needle in resp.json["message"] and "Traceback" not in resp.get_data(as_text=True)


def test_per_task_problems_get_empty_results_in_order(tiny_client, caplog):
    xml = schema_xml("financial_news")
    tasks = [
        {"id": 1, "data": {"text": "Shares of Nokia rose 3%."}},
        {"id": 2, "data": {"body": "wrong field"}},
        {"id": 3, "data": {"text": ""}},
        {"id": 4, "data": {"text": "   "}},
        {"id": 5, "data": {"text": 12345}},
        {"id": 6, "data": {"text": "x" * 1_000_001}},
        {"id": 7},
        "not a task",
        {"id": 9, "data": {"text": "Profit fell sharply."}},
    ]
    resp = _predict(tiny_client, xml, tasks)
    assert resp.status_code == 200
    results = resp.json["results"]
    assert len(results) == len(tasks)
    assert results[0]["result"] and results[-1]["result"]
    assert all(r["result"] == [] for r in results[1:-1])
    log = caplog.text
    for needle in ("no 'text' field", "is empty", "must be a string", "over the limit", "no 'data'"):
        assert needle in log


def test_webhook_needs_an_action(tiny_client):
    resp = tiny_client.post("/webhook", json={"project": {"id": 1}})
    assert resp.status_code == 400 and "action" in resp.json["message"]


def test_start_training_calls_the_injected_trainer_in_background(tiny_settings):
    import threading

    calls, release = [], threading.Event()

    def trainer(project, event):
        calls.append(project)
        release.wait(5)

    client = create_app(tiny_settings, trainer=trainer).test_client()
    t0 = time.perf_counter()
    first = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 4}})
    second = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 4}})
    third = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 4}})
    assert time.perf_counter() - t0 < 1.0
    assert first.json["training"] == "started" and second.json["training"].startswith("queued") and third.json["training"].startswith("queued")
    release.set()
    for _ in range(50):
        if len(calls) >= 2:
            break
        time.sleep(0.1)
    time.sleep(0.3)
    assert calls == ["4", "4"]  # the running job + one queued run, not three


def test_basic_auth(tiny_settings):
    client = create_app(tiny_settings.with_overrides(basic_auth_user="ls", basic_auth_pass="s3cret")).test_client()
    assert client.get("/health").status_code == 200
    resp = client.post("/setup", json={"project": "1.1", "schema": schema_xml("financial_news")})
    assert resp.status_code == 401 and resp.is_json and resp.json["error"] == "Unauthorized"
    bad = {"Authorization": "Basic " + base64.b64encode(b"ls:wrong").decode()}
    assert client.get("/versions", headers=bad).status_code == 401
    good = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
    assert client.post("/setup", json={"project": "1.1", "schema": schema_xml("financial_news")}, headers=good).status_code == 200
    assert client.get("/metrics", headers=good).status_code == 200


def test_metrics_are_prometheus_text(tiny_client):
    _predict(tiny_client, schema_xml("financial_news"), [{"id": 1, "data": {"text": "Stocks fell."}}])
    text = tiny_client.get("/metrics").data.decode()
    assert 'goldloop_requests_total{endpoint="/predict",status="200"} 1.0' in text
    assert "goldloop_request_seconds_bucket" in text and 'goldloop_model_info{project="5"' in text


def test_cache_never_runs_the_same_text_twice(tiny_client):
    state = tiny_client.application.extensions["goldloop"]
    xml = schema_xml("financial_news")
    _predict(tiny_client, xml, [{"id": 1, "data": {"text": "Stocks fell."}}])
    misses = state.cache.misses
    _predict(tiny_client, xml, [{"id": 2, "data": {"text": "Stocks fell."}}])
    assert state.cache.misses == misses and state.cache.hits >= 2


def test_predict_switches_to_a_version_another_process_promoted(tiny_settings):
    """`goldloop train` promotes in its own process: the backend's next /predict serves the new version."""
    from ml_backend.models import Examples, TfidfClassifier
    from ml_backend.registry import ProjectModel, Registry

    xml = '<View><Text name="text" value="$text"/><Choices name="s" toName="text"><Choice value="up"/><Choice value="down"/></Choices></View>'
    client = create_app(tiny_settings).test_client()

    def predict():
        r = client.post("/predict", json={"project": "9.1", "label_config": xml, "tasks": [{"id": 1, "data": {"text": "shares rise"}}]})
        assert r.status_code == 200
        return r.json["results"][0]["model_version"], r.json["results"][0]["result"]

    cold, _ = predict()
    assert cold.startswith("coldstart")
    spec = parse_label_config(xml)
    model = TfidfClassifier(["up", "down"])
    model.fit(Examples(["shares rise", "profit up", "shares fall", "loss widens"] * 2, [["up"], ["up"], ["down"], ["down"]] * 2))
    Registry(tiny_settings).promote("9", ProjectModel(spec, "v-other-process", {"s": model}))  # as a child process would
    assert predict()[0] == "v-other-process"
    version, result = predict()
    assert version == "v-other-process" and result[0]["value"]["choices"] == ["up"]
    assert client.post("/setup", json={"project": "9.1", "schema": xml}).json["model_version"] == "v-other-process"


def test_promotion_prebuilds_the_int8_graph_the_backend_then_loads(tiny_settings, tiny_model_dir):
    """With --quantize int8 the round builds the ONNX graph before serving.json names the version."""
    from ml_backend.models import TokenClassifier
    from ml_backend.models.onnx_int8 import OrtModel
    from ml_backend.registry import ProjectModel, Registry

    settings = tiny_settings.with_overrides(quantize="int8")
    xml = '<View><Labels name="ents" toName="text"><Label value="Disease"/></Labels><Text name="text" value="$text"/></View>'
    spec = parse_label_config(xml)
    model = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32)
    vdir = Registry(settings).promote("5", ProjectModel(spec, "v-int8", {"ents": model}))
    (graph,) = (vdir / "ents" / "onnx").glob("model-int8-*.onnx")
    stamp = graph.stat().st_mtime_ns
    pm = Registry(settings).get("5", spec)  # a fresh backend process loading the promoted version
    assert pm.version == "v-int8" and isinstance(pm.models["ents"].serving, OrtModel)
    assert graph.stat().st_mtime_ns == stamp  # loaded from the prebuilt graph, not rebuilt


def test_flask_stays_in_the_http_modules():
    """Only the app factory, the Blueprint and the error mapping import Flask: the model core loads without it."""
    import subprocess
    import sys

    core = ["ml_backend.settings", "ml_backend.errors", "ml_backend.schema", "ml_backend.alignment", "ml_backend.results",
            "ml_backend.models", "ml_backend.models.finetune", "ml_backend.models.onnx_int8", "ml_backend.training",
            "ml_backend.mlm", "ml_backend.sampling", "ml_backend.evaluation", "ml_backend.registry", "ml_backend.state",
            "ml_backend.cache", "ml_backend.splits"]
    code = f"import sys, {', '.join(core)}; bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug')); print(bad); sys.exit(bool(bad))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
