"""HTTP only: /health /setup /predict /webhook /versions /metrics on the ``goldloop`` Blueprint.

Parsing, auth and metrics; the work happens in the app's BackendState, its registry and models.
"""
from __future__ import annotations

import base64
import hmac
import logging
import time

from flask import Blueprint, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .errors import BadRequest, Unauthorized
from .schema import TaskSpec, parse_label_config
from .state import BackendState

log = logging.getLogger(__name__)

bp = Blueprint("goldloop", __name__)


def state() -> BackendState:
    return current_app.extensions["goldloop"]


def project_key(raw: object) -> str:
    """Label Studio sends "<project id>.<timestamp>" in /setup and /predict; the id names the project."""
    if raw is None or raw == "":
        return "default"
    return str(raw).split(".")[0]


def json_body() -> dict:
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("request body must be JSON (Content-Type: application/json), got unparseable or empty content")
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _check_auth() -> None:
    s = state().settings
    if not s.basic_auth_user or request.path == "/health":
        return
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        raise Unauthorized("this backend requires HTTP basic auth")
    try:
        user, _, pw = base64.b64decode(header[6:]).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("malformed basic auth header") from None
    ok_user = hmac.compare_digest(user.encode(), s.basic_auth_user.encode())
    ok_pw = hmac.compare_digest(pw.encode(), (s.basic_auth_pass or "").encode())
    if not (ok_user and ok_pw):
        raise Unauthorized("wrong basic auth credentials")


def _spec_for(project: str, config: object) -> TaskSpec:
    st = state()
    if config is None:
        if project in st.specs:
            return st.specs[project]
        raise BadRequest("no label_config in the request and none known for this project (call /setup first)")
    spec = parse_label_config(config)
    st.specs[project] = spec
    return spec


def _task_problem(task: object, spec: TaskSpec, limit: int) -> str | None:
    """Why a task cannot be predicted (it then gets an empty result), or None."""
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        return "task has no 'data' object"
    for f in spec.value_fields:
        v = data.get(f)
        if v is None:
            return f"task data has no {f!r} field (the labeling config reads ${f}); fields: {sorted(data)}"
        if not isinstance(v, str):
            return f"task data {f!r} must be a string, got {type(v).__name__}"
        if not v.strip():
            return f"task data {f!r} is empty"
        if len(v) > limit:
            return f"task data {f!r} has {len(v)} characters, over the limit of {limit}"
    return None


@bp.before_app_request
def _before():
    g.t0 = time.perf_counter()
    _check_auth()


@bp.after_app_request
def _after(resp):
    endpoint = request.url_rule.rule if request.url_rule else "unknown"
    m = state().metrics
    m.requests.labels(endpoint=endpoint, status=str(resp.status_code)).inc()
    m.latency.labels(endpoint=endpoint).observe(time.perf_counter() - g.get("t0", time.perf_counter()))
    return resp


@bp.get("/health")
@bp.get("/")
def health():
    st = state()
    return jsonify(status="UP", model_class="goldloop", loaded_projects=sorted(p for p, _ in st.registry.serving_items()))


@bp.post("/setup")
def setup():
    body = json_body()
    project = project_key(body.get("project"))
    spec = _spec_for(project, body.get("schema"))
    st = state()
    version = st.registry.current_version(project, spec)
    st.warm(project, spec)
    return jsonify(model_version=version)


@bp.post("/predict")
def predict():
    body = json_body()
    tasks = body.get("tasks")
    if tasks is None:
        raise BadRequest("missing 'tasks': expected a list of Label Studio tasks")
    if not isinstance(tasks, list):
        raise BadRequest(f"'tasks' must be a list, got {type(tasks).__name__}")
    project = project_key(body.get("project"))
    spec = _spec_for(project, body.get("label_config"))
    st = state()
    pm = st.registry.get(project, spec)
    texts = {f: [] for f in spec.value_fields}
    ok: list[int] = []
    results: list[dict] = [{"result": [], "score": 0.0, "model_version": pm.version} for _ in tasks]
    for i, task in enumerate(tasks):
        problem = _task_problem(task, spec, st.settings.max_text_chars)
        if problem:
            tid = task.get("id") if isinstance(task, dict) else None
            log.warning("project %s task %s: empty prediction: %s", project, tid, problem)
            st.metrics.task_errors.labels(reason=problem.split(" ")[-1] if "limit" in problem else problem.split(":")[0][:40]).inc()
            continue
        ok.append(i)
        for f in spec.value_fields:
            texts[f].append(task["data"][f])
    if ok:
        for i, item in zip(ok, pm.to_results(texts, st.cache)):
            results[i] = item
    st.metrics.tasks.labels(project=project).inc(len(tasks))
    st.metrics.cache_hits.set(st.cache.hits)
    st.metrics.cache_misses.set(st.cache.misses)
    return jsonify(results=results, model_version=pm.version)


@bp.post("/webhook")
def webhook():
    body = json_body()
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise BadRequest("webhook body needs an 'action' string")
    proj = body.get("project")
    project = project_key(proj.get("id") if isinstance(proj, dict) else proj)
    st = state()
    st.record_event(action, project, body)
    answer = {"status": "ok", "action": action}
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        answer["learned"] = _learn_online(st, project, body)
    elif action == "START_TRAINING":
        answer["training"] = st.start_training(project, body)
    return jsonify(answer), 201 if action == "START_TRAINING" else 200


@bp.get("/versions")
def versions():
    project = request.args.get("project")
    st = state()
    items = st.registry.versions(project_key(project) if project else None)
    return jsonify(versions=[v["version"] for v in items], details=items)


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(state().metrics.registry), mimetype=CONTENT_TYPE_LATEST)


def _learn_online(st: BackendState, project: str, body: dict) -> bool:
    """Feed an annotation to the loaded cold-start models (matcher, prototypes) so the next task benefits."""
    pm = st.registry.loaded(project)
    task, annotation = body.get("task"), body.get("annotation")
    if pm is None or not isinstance(task, dict) or not isinstance(annotation, dict) or annotation.get("was_cancelled"):
        return False
    data = task.get("data")
    return pm.learn_annotation(data if isinstance(data, dict) else {}, annotation.get("result") or [])
