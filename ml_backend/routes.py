"""HTTP only: /health /setup /predict /webhook /versions /dashboard /metrics /openapi.json on the ``goldloop`` Blueprint.

Parsing, auth and metrics; the work happens in the app's BackendState, its registry and models. Every
identifier from a request goes through ``ids`` first; no request value becomes a metric label, and log
lines show request values through ``ids.shown`` (ASCII, short).
"""
from __future__ import annotations

import json
import logging
import os
import time

from flask import Blueprint, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from . import auth, ids
from .control_group import in_control_group
from .errors import BadRequest, Unauthorized, UnsupportedMediaType
from .interactive import answer as interactive_answer
from .interactive import read_context
from .openapi import openapi_document
from .schema import TaskSpec, parse_label_config
from .state import BackendState

log = logging.getLogger(__name__)

bp = Blueprint("goldloop", __name__)

WORKER_HEADER = "X-Goldloop-Worker"  # the pid of the process that answered (several workers: which one)


def state() -> BackendState:
    return current_app.extensions["goldloop"]


# a larger body answers 413: a batch of Label Studio tasks at the text limit fits, a flood does not
MAX_BODY_BYTES = 8 * 1024 * 1024

# the webhook actions Label Studio sends; any other action string is counted as "other" in /metrics
WEBHOOK_ACTIONS = frozenset({
    "ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_CREATED",
    "TASKS_DELETED", "PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED", "START_TRAINING", "LABEL_LINK_CREATED",
    "LABEL_LINK_UPDATED", "LABEL_LINK_DELETED", "REVIEW_CREATED", "REVIEW_UPDATED", "REVIEWS_DELETED",
})
ACTION_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def json_body() -> dict:
    """The request body as a JSON object; 415 for another content type, 400 for anything unparseable."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"request body must be sent as Content-Type: application/json, got {ids.shown(request.mimetype or '(none)')}")
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: werkzeug raises 413
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
        raise BadRequest(f"request body must be JSON, got unparseable or empty content ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def query_arg(name: str) -> str | None:
    """A query string argument; 400 when the query string is not UTF-8 (werkzeug decodes it strictly)."""
    try:
        return request.args.get(name)
    except UnicodeDecodeError:
        raise BadRequest("the query string must be UTF-8 (percent-encode other bytes)") from None


def _check_auth() -> bool:
    """True when the request may read every route (no basic auth configured, or the right credentials); 401 for
    any route but /health otherwise (/health answers everyone, with less)."""
    s = state().settings
    if not s.basic_auth_user:
        return True
    failure = auth.basic_auth_failure(request.headers.get("Authorization", ""), s.basic_auth_user, s.basic_auth_pass)
    if failure and request.path != "/health":
        raise Unauthorized(failure)
    return failure is None


def _spec_for(project: str, config: object) -> TaskSpec:
    st = state()
    if config is None:
        if project in st.specs:
            return st.specs[project]
        raise BadRequest("no label_config in the request and none known for this project (call /setup first)")
    spec = parse_label_config(config)
    st.specs[project] = spec
    return spec


@bp.before_app_request
def _before():
    g.t0 = time.perf_counter()
    g.authorized = _check_auth()


@bp.after_app_request
def _after(resp):
    endpoint = request.url_rule.rule if request.url_rule else "unknown"
    m = state().metrics
    m.requests.labels(endpoint=endpoint, status=str(resp.status_code)).inc()
    m.latency.labels(endpoint=endpoint).observe(time.perf_counter() - g.get("t0", time.perf_counter()))
    if g.get("authorized"):  # the pid only to callers who may read every route
        resp.headers[WORKER_HEADER] = str(os.getpid())
    return resp


@bp.get("/health")
@bp.get("/")
def health():
    """Liveness for everyone; the loaded project names and the pid only for callers who may read every route
    (the right basic auth credentials, or any caller when no auth is configured: /versions lists the same then)."""
    st = state()
    body = {"status": "UP", "model_class": "goldloop", "device": st.device, "precision": st.precision}
    if g.get("authorized"):
        body.update(loaded_projects=sorted(p for p, _ in st.registry.serving_items()), pid=os.getpid())
    return jsonify(body)


@bp.post("/setup")
def setup():
    body = json_body()
    project = state().registry.admit(ids.project_key(body.get("project")))
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
    project = state().registry.admit(ids.project_key(body.get("project")))
    spec = _spec_for(project, body.get("label_config"))
    marks = read_context(body.get("params"), spec)
    st = state()
    pm = st.registry.get(project, spec)
    if marks is not None:  # Label Studio's Auto-Annotation: the annotator's partial result, answered at once
        st.metrics.tasks.labels(project=project).inc(len(tasks))
        return jsonify(interactive_answer(pm, tasks, marks, st.cache, lambda t: spec.problem(t, st.settings.max_text_chars)))
    texts = {f: [] for f in spec.value_fields}
    ok: list[int] = []
    results: list[dict] = [{"result": [], "score": 0.0, "model_version": pm.version} for _ in tasks]
    for i, task in enumerate(tasks):
        problem = spec.problem(task, st.settings.max_text_chars)
        if problem:
            tid = task.get("id") if isinstance(task, dict) else None
            log.warning("project %s task %s: empty prediction: %s", project, ids.shown(tid), problem[1])
            st.metrics.task_errors.labels(reason=problem[0]).inc()
            continue
        ok.append(i)
        for f in spec.value_fields:
            texts[f].append(task["data"][f])
    if ok:
        for i, item in zip(ok, pm.to_results(texts, st.cache)):
            if in_control_group(tasks[i].get("id"), st.settings.control_share):
                item = {**item, "result": []}  # the control group: an empty task, ordered by its score like any other
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
    if len(action) > 64 or not set(action) <= ACTION_CHARS:
        raise BadRequest(f"'action' must be a Label Studio webhook action such as ANNOTATION_CREATED, got {ids.shown(action)}")
    proj = body.get("project")
    st = state()
    project = st.registry.admit(ids.project_key(proj.get("id") if isinstance(proj, dict) else proj))
    st.record_event(action, project, body, metric_label=action if action in WEBHOOK_ACTIONS else "other")
    answer = {"status": "ok", "action": action}
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        answer["learned"] = _learn_online(st, project, body)
    elif action == "START_TRAINING":
        answer["training"] = st.start_training(project, body)
    return jsonify(answer), 201 if action == "START_TRAINING" else 200


@bp.get("/versions")
def versions():
    project = query_arg("project")
    st = state()
    items = st.registry.versions(ids.project_key(project) if project else None)
    return jsonify(versions=[v["version"] for v in items], details=items)


@bp.get("/dashboard")
def dashboard():
    """A project's dashboard (?project=KEY), or the index of projects; HTML rendered by ml_backend.dashboard."""
    from .dashboard import render

    project = query_arg("project")
    reg = state().registry
    html = render.project_page(reg, ids.project_key(project)) if project else render.index_page(reg)
    resp = Response(html, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"  # no script, nothing loaded
    return resp


@bp.get("/metrics")
def metrics():
    return Response(state().exposition(), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


def _learn_online(st: BackendState, project: str, body: dict) -> bool:
    """Teach an annotation to the cold-start models (matcher, prototypes) of every worker so the next task benefits.

    The labeling config is the one this process last saw for the project, else the webhook's own
    (``project.label_config``); without either the annotation teaches nothing.
    """
    task, annotation = body.get("task"), body.get("annotation")
    if not isinstance(task, dict) or not isinstance(annotation, dict) or annotation.get("was_cancelled"):
        return False
    data = task.get("data")
    result = annotation.get("result")
    if not isinstance(data, dict) or not isinstance(result, list):
        return False
    pm = st.registry.loaded(project)
    spec = pm.spec if pm is not None else st.specs.get(project)
    proj = body.get("project")
    if spec is None and isinstance(proj, dict) and isinstance(proj.get("label_config"), str):
        try:
            spec = _spec_for(project, proj["label_config"])
        except BadRequest:  # a config this backend cannot serve teaches nothing; the webhook still succeeds
            return False
    if spec is None:
        return False
    # a text that is no valid Unicode cannot be encoded for the models: it teaches nothing
    texts = {k: v for k, v in data.items() if isinstance(v, str) and ids.valid_unicode(v)}
    return st.registry.teach(project, spec, texts, result)
