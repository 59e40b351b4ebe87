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
            context = (req["json"].get("params") or {}).get("context") or {}
            if isinstance(context.get("result"), list):  # Auto-Annotation: the model's choices are never re-suggested
                assert all(item["interactive"] and not item["result"] for item in resp.json["results"])
            else:  # the recorded project is a Choices project: every task gets its choice
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
    text = "This Agreement is made between Acme Robotics and Beta LLC. Acme Robotics shall deliver the goods."
    task = {"id": 1, "data": {"text": text}}
    first = _predict(tiny_client, xml, [task]).json["results"][0]
    # before any label, only the built-in Party pattern speaks: a name with a legal suffix
    first_spans = [(r["value"]["text"], r["value"]["labels"]) for r in first["result"] if r["type"] == "labels"]
    assert first_spans == [("Beta LLC", ["Party"])]
    annotation = {"id": 9, "was_cancelled": False, "result": [
        {"from_name": "entities", "to_name": "text", "type": "labels", "value": {"start": 31, "end": 44, "text": "Acme Robotics", "labels": ["Party"]}},
        {"from_name": "risk", "to_name": "text", "type": "choices", "value": {"choices": ["low"]}}]}
    hook = tiny_client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 5}, "task": task, "annotation": annotation})
    assert hook.status_code == 200 and hook.json["learned"] is True
    later = "Acme Robotics shall pay. ACME ROBOTICS agrees."
    second = _predict(tiny_client, xml, [{"id": 2, "data": {"text": later}}]).json
    check_prediction_items(second, [{"data": {"text": later}}], xml)
    spans = [r for r in second["results"][0]["result"] if r["type"] == "labels"]
    assert [(r["value"]["text"], r["value"]["labels"]) for r in spans] == [("Acme Robotics", ["Party"]), ("ACME ROBOTICS", ["Party"])]
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
    client = create_app(tiny_settings.with_overrides(basic_auth_user="ls", basic_auth_pass="s3cret-s3cret")).test_client()
    assert client.get("/health").status_code == 200
    resp = client.post("/setup", json={"project": "1.1", "schema": schema_xml("financial_news")})
    assert resp.status_code == 401 and resp.is_json and resp.json["error"] == "Unauthorized"
    bad = {"Authorization": "Basic " + base64.b64encode(b"ls:wrong").decode()}
    assert client.get("/versions", headers=bad).status_code == 401
    good = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret-s3cret").decode()}
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


TRAVERSALS = ["/tmp/x", "../x", "1/../../x", "a\0b", "..", "/", "1/..", "\ud800"]


def files_under(path):
    import os

    out = {}
    for root, _, names in os.walk(path):
        for n in names:
            p = os.path.join(root, n)
            out[p] = os.stat(p).st_mtime_ns
    return out


@pytest.mark.parametrize("project", TRAVERSALS)
def test_a_project_that_is_no_id_or_name_answers_400_and_touches_no_file(tiny_settings, tmp_path, project):
    """A project value never becomes a path: absolute dirs, ../ chains, NUL bytes are 400 on every route."""
    from pathlib import Path

    sentinel = tmp_path / "sentinel"  # looks like a models dir: what a traversal would read or write
    (sentinel / "v1" / "s").mkdir(parents=True)
    (sentinel / "serving.json").write_text(json.dumps({"version": "v1"}))
    client = create_app(tiny_settings, trainer=lambda p, e: (tmp_path / "trained").write_text(p)).test_client()
    xml = schema_xml("financial_news")
    before = files_under(tmp_path)
    tmp_x = Path("/tmp/x").exists()
    for value in (project, str(sentinel), f"../../{sentinel.name}"):
        answers = [
            client.post("/setup", json={"project": value, "schema": xml}),
            client.post("/predict", json={"project": value, "label_config": xml, "tasks": [{"data": {"text": "Stocks fell."}}]}),
            client.post("/webhook", json={"action": "START_TRAINING", "project": value}),
            client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": value}}),
            client.get("/versions", query_string={"project": value.encode("utf-8", "surrogatepass")}),
        ]
        for resp in answers:
            assert resp.status_code == 400 and resp.is_json, (value, resp.status_code, resp.get_data(as_text=True))
            assert "'project" in resp.json["message"]
    assert files_under(tmp_path) == before and Path("/tmp/x").exists() == tmp_x
    assert client.get("/metrics").status_code == 200


def test_a_body_over_the_limit_answers_413_json(tiny_client):
    resp = tiny_client.post("/predict", data=b'{"tasks": ["' + b"x" * (10 * 1024 * 1024) + b'"]}', content_type="application/json")
    assert resp.status_code == 413 and resp.is_json and resp.json["error"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None])
def test_a_body_that_is_not_json_answers_415_json(tiny_client, content_type):
    resp = tiny_client.post("/setup", data=b'{"project": "1.1"}', content_type=content_type)
    assert resp.status_code == 415 and resp.is_json and "application/json" in resp.json["message"]


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"project": 1' + b"0" * 5000 + b"}", b"\xff\xfe\x00", b""])
def test_deep_nesting_huge_numbers_and_bad_bytes_answer_400(tiny_client, body):
    resp = tiny_client.post("/predict", data=body, content_type="application/json")
    assert resp.status_code == 400 and resp.is_json


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10))
                  + ']><View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="&lol9;"/></Choices></View>')


@pytest.mark.parametrize("config, needle", [
    (BILLION_LAUGHS, "DOCTYPE"),
    ('<!DOCTYPE v [<!ENTITY x SYSTEM "file:///etc/passwd">]><View><Text name="t" value="&x;"/></View>', "DOCTYPE"),
    ('<View><Choices name="c" toName="text"><Choice value="a"/></Choices></View>', "not a Text object"),
    ('<View><Unknown/><Text name="t" value="$text"/></View>', "no supported control"),
    ('<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/></Choices>'
     '<Choices name="c" toName="t"><Choice value="b"/></Choices></View>', "repeats a control name"),
    ('<View><Text name="t" value="$text\ud800"/></View>', "lone surrogate"),
])
def test_strange_labeling_configs_answer_a_clear_400(tiny_client, config, needle):
    resp = tiny_client.post("/setup", json={"project": "2.1", "schema": config})
    assert resp.status_code == 400 and needle in resp.json["message"]


def test_two_texts_and_unknown_tags_are_served(tiny_client):
    xml = ('<View><Header value="x"/><Text name="a" value="$title"/><Text name="b" value="$body"/><Foo bar="1"/>'
           '<Choices name="c1" toName="a"><Choice value="x"/><Choice value="y"/></Choices>'
           '<Choices name="c2" toName="b"><Choice value="x"/><Choice value="y"/></Choices></View>')
    resp = _predict(tiny_client, xml, [{"id": 1, "data": {"title": "Up", "body": "Shares rose."}}])
    assert resp.status_code == 200 and {r["from_name"] for r in resp.json["results"][0]["result"]} == {"c1", "c2"}


def test_lone_surrogates_never_reach_metrics_or_break_a_route(tiny_client):
    """One request with a lone surrogate must not take /metrics down for every later scrape."""
    xml = schema_xml("financial_news")
    raw = b'{"project": "3.1", "label_config": %s, "tasks": [{"id": "\\ud800", "data": {"text": "up\\udfff"}}, {"data": {"text": "Stocks fell."}}]}'
    resp = tiny_client.post("/predict", data=raw % json.dumps(xml).encode(), content_type="application/json")
    assert resp.status_code == 200 and resp.json["results"][0]["result"] == [] and resp.json["results"][1]["result"]
    hook = tiny_client.post("/webhook", data=b'{"action": "X\\ud800", "project": 3}', content_type="application/json")
    assert hook.status_code == 400
    learn = b'{"action": "ANNOTATION_CREATED", "project": 3, "task": {"data": {"text": "\\ud800"}}, "annotation": {"result": [{"from_name": "sentiment", "value": {"choices": ["positive"]}}]}}'
    assert tiny_client.post("/webhook", data=learn, content_type="application/json").status_code == 200
    assert tiny_client.post("/webhook", json={"action": "SOMETHING_NEW", "project": 3}).status_code == 200
    metrics = tiny_client.get("/metrics")
    text = metrics.get_data(as_text=True)
    assert metrics.status_code == 200 and 'goldloop_task_errors_total{reason="invalid_unicode"} 1.0' in text
    assert 'goldloop_webhook_events_total{action="other"} 1.0' in text and "SOMETHING_NEW" not in text


def test_openapi_document_describes_every_route(tiny_client):
    doc = tiny_client.get("/openapi.json").json
    routes = {r.rule for r in tiny_client.application.url_map.iter_rules() if r.endpoint != "static"}
    assert doc["openapi"].startswith("3.") and set(doc["paths"]) == routes
    for rule in tiny_client.application.url_map.iter_rules():
        if rule.endpoint != "static":
            assert {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}} == set(doc["paths"][rule.rule])


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.org"])
def test_backend_off_loopback_refuses_to_start_without_basic_auth(tmp_path, host):
    from click.testing import CliRunner

    from server.cli import main

    env = {"GOLDLOOP_BASIC_AUTH_USER": "", "GOLDLOOP_BASIC_AUTH_PASS": ""}
    result = CliRunner().invoke(main, ["backend", "--data-dir", str(tmp_path), "--host", host, "--port", "1"], env=env)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--insecure" in lines[0] and "GOLDLOOP_BASIC_AUTH_USER" in lines[0]


def test_an_annotation_taught_before_any_model_loads_is_served_by_every_app(tiny_settings):
    """The webhook's own labeling config is enough to record it; any app (worker) on the models dir then serves it."""
    xml = '<View><Labels name="ents" toName="text"><Label value="Drug"/></Labels><Text name="text" value="$text"/></View>'
    text = "Give aspirin now."
    ann = {"id": 1, "result": [{"from_name": "ents", "to_name": "text", "type": "labels",
                                "value": {"start": 5, "end": 12, "text": "aspirin", "labels": ["Drug"]}}]}
    first = create_app(tiny_settings).test_client()
    no_config = first.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 12}, "task": {"data": {"text": text}}, "annotation": ann})
    assert no_config.json["learned"] is False and not (tiny_settings.models_dir / "12").exists()
    cancelled = first.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 12, "label_config": xml},
                                             "task": {"data": {"text": text}}, "annotation": {**ann, "was_cancelled": True}})
    assert cancelled.json["learned"] is False
    hook = first.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 12, "label_config": xml},
                                        "task": {"data": {"text": text}}, "annotation": ann})
    assert hook.json["learned"] is True
    for client in (first, create_app(tiny_settings).test_client()):
        body = _predict(client, xml, [{"id": 2, "data": {"text": "No ASPIRIN today."}}], project="12.1").json
        assert [(r["value"]["text"], r["value"]["labels"]) for r in body["results"][0]["result"]] == [("ASPIRIN", ["Drug"])]
