"""Every label-studio-sdk call of goldloop: projects, tasks, predictions, ML backends, views, exports.

Callers get plain dicts (Label Studio's JSON shapes) or the SDK's project objects; SDK and HTTP errors come
out as one-line ``server.errors`` exceptions. goldloop's own state is written by the callers (``server.store``).
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Callable, Iterable, Iterator

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from . import store
from .config import Settings, local_url
from .errors import LabelStudioError, ProjectNotFound, StackError

PROJECT_MARKER = "goldloop schema: "  # project description prefix that ties a project to its schema
ML_BACKEND_TITLE = "goldloop"
SCORE_VIEW_TITLE = "goldloop: least confident first"
CLIENT_TIMEOUT = 300.0  # > Label Studio's 100 s predict timeout: a pre-annotation batch waits for it

# the SDK's HTTP client logs every request at INFO: keep goldloop's output readable unless asked otherwise
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)


# --- connection and errors -----------------------------------------------------------------------


def _detail(exc: ApiError) -> str:
    """The useful part of an SDK error body (detail + validation errors), without headers or cookies."""
    body = exc.body
    if isinstance(body, dict):
        parts = [str(body.get("detail") or "")]
        errors = body.get("validation_errors")
        if errors:
            parts.append(str(errors))
        text = "; ".join(p for p in parts if p)
        return text or str(body)[:300]
    return str(body)[:300]


@contextlib.contextmanager
def _errors(what: str, url: str = "Label Studio") -> Iterator[None]:
    """Turn SDK / transport errors raised inside into one-line goldloop errors."""
    try:
        yield
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise LabelStudioError(f"{what}: Label Studio refused the API token ({exc.status_code}); check LABEL_STUDIO_API_KEY or the data dir's token") from None
        raise LabelStudioError(f"{what}: Label Studio answered {exc.status_code}: {_detail(exc)}") from None
    except httpx.TimeoutException:
        raise LabelStudioError(f"{what}: Label Studio at {url} did not answer in time") from None
    except httpx.TransportError as exc:
        raise StackError(f"{what}: Label Studio at {url} is not reachable ({exc}); start it with: goldloop up") from None


def _base_url(client: LabelStudio) -> str:
    """The base URL a client talks to."""
    return client._client_wrapper.get_base_url()


def label_studio_url(settings: Settings, db=None) -> str:
    """Where Label Studio is: Settings' URL, else the recorded Label Studio process, else the local port."""
    if settings.ls_url:
        return settings.ls_url
    row = store.get_process(db if db is not None else store.open_db(settings.data_dir.db_path), store.LABEL_STUDIO)
    return row["url"] if row else local_url(settings.ls_port)


def connect(settings: Settings, db=None, check: bool = True) -> LabelStudio:
    """A Label Studio client: URL and key from Settings, else the running stack's URL and the data dir's token."""
    url = label_studio_url(settings, db)
    key = settings.ls_api_key or settings.data_dir.read_token()
    client = LabelStudio(base_url=url.rstrip("/"), api_key=key, timeout=CLIENT_TIMEOUT)
    if check:
        with _errors("connecting", url):
            client.users.whoami()
    return client


def _raw(client: LabelStudio, method: str, path: str, **kw: Any) -> httpx.Response:
    """A request the SDK has no method for, through the SDK's own HTTP client (auth, base URL)."""
    resp = client._client_wrapper.httpx_client.request(path, method=method, **kw)
    return resp


# --- projects ------------------------------------------------------------------------------------


def schema_name_of(project: Any) -> str | None:
    """The schema name a project was created from (its description's first line, the marker), or None."""
    desc = (getattr(project, "description", None) or "").split("\n", 1)[0]
    return desc[len(PROJECT_MARKER):].strip() if desc.startswith(PROJECT_MARKER) else None


def project_description(schema_name: str, backend_url: str | None = None, project_id: int | None = None) -> str:
    """A schema's project description: the marker line, then the link to the backend's dashboard of the project."""
    desc = f"{PROJECT_MARKER}{schema_name}"
    if backend_url and project_id is not None:
        desc += f"\nDashboard: {backend_url.rstrip('/')}/dashboard?project={int(project_id)}"
    return desc


def list_projects(client: LabelStudio) -> list[Any]:
    """Every project of the Label Studio instance (with its counters)."""
    with _errors("listing projects", _base_url(client)):
        return list(client.projects.list(page_size=100))


def get_project(client: LabelStudio, project_id: int) -> Any | None:
    """The project of an id, or None when Label Studio has none."""
    try:
        with _errors(f"reading project {project_id}", _base_url(client)):
            return client.projects.get(id=int(project_id))
    except LabelStudioError as exc:
        if " answered 404" in str(exc):
            return None
        raise


def project_of_schema(client: LabelStudio, schema_name: str, projects: list[Any] | None = None) -> Any | None:
    """The project whose description marker names the schema (among projects, default: every project), or None."""
    for p in projects if projects is not None else list_projects(client):
        if schema_name_of(p) == schema_name:
            return get_project(client, p.id)
    return None


def resolve_project(client: LabelStudio, ref: str | int, db=None) -> Any:
    """The project named by a Label Studio id or a schema name; ProjectNotFound lists the known ones.

    db: the goldloop Database (store.open_db) to look schema names up in first, or None.
    """
    ref_s = str(ref).strip()
    project = None
    if ref_s.isdigit():
        project = get_project(client, int(ref_s))
    else:
        row = store.get_project_by_name(db, ref_s) if db is not None else None
        if row:
            project = get_project(client, row["id"])
        if project is None:
            for p in list_projects(client):
                if schema_name_of(p) == ref_s or p.title == ref_s:
                    project = get_project(client, p.id)
                    break
    if project is None:
        known = ", ".join(f"{p.id} ({schema_name_of(p) or p.title})" for p in list_projects(client)) or "none yet (run goldloop up)"
        raise ProjectNotFound(f"unknown project {ref_s!r}; expected a Label Studio project id or schema name, known: {known}")
    return project


def create_project(client: LabelStudio, schema_name: str, title: str, label_config: str, min_annotations_to_train: int) -> int:
    """Create the project of a schema (its description carries the schema marker); return its id."""
    with _errors(f"creating the project of schema {schema_name}", _base_url(client)):
        created = client.projects.create(
            title=title,
            description=f"{PROJECT_MARKER}{schema_name}",
            label_config=label_config,
            min_annotations_to_start_training=min_annotations_to_train,
        )
    return int(created.id)


def update_project(client: LabelStudio, project_id: int, **changes: Any) -> None:
    """Change a project's fields (title, label_config, min_annotations_to_start_training, ...)."""
    what = f"updating the labeling config of project {project_id}" if "label_config" in changes else f"updating project {project_id}"
    with _errors(what, _base_url(client)):
        client.projects.update(id=int(project_id), **changes)


# --- ML backend ----------------------------------------------------------------------------------


def ml_backend_ids(client: LabelStudio, project_id: int) -> list[int]:
    """The ids of the ML backends connected to a project."""
    with _errors(f"listing ML backends of project {project_id}", _base_url(client)):
        return [b.id for b in client.ml.list(project=int(project_id))]


def ensure_ml_backend(client: LabelStudio, project_id: int, backend_url: str, settings: Settings) -> tuple[int, bool]:
    """Connect the backend to a project (interactive) unless it already is; return (ml backend id, created)."""
    url = _base_url(client)
    with _errors(f"listing ML backends of project {project_id}", url):
        backends = client.ml.list(project=project_id)
    backend_url = backend_url.rstrip("/")
    for b in backends:
        if (b.url or "").rstrip("/") == backend_url:
            if not b.is_interactive:
                with _errors(f"updating ML backend {b.id}", url):
                    client.ml.update(id=b.id, is_interactive=True)
            return b.id, False
    auth: dict[str, Any] = {}
    if settings.basic_auth_user:
        auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": settings.basic_auth_user, "basic_auth_pass": settings.basic_auth_pass or ""}
    ours = [b for b in backends if b.title == ML_BACKEND_TITLE]
    if ours:  # same backend, new port: point it at the new URL
        with _errors(f"updating ML backend {ours[0].id}", url):
            client.ml.update(id=ours[0].id, url=backend_url, is_interactive=True, **auth)
        return ours[0].id, True
    with _errors(f"connecting the ML backend {backend_url} to project {project_id}", url):
        created = client.ml.create(url=backend_url, project=project_id, title=ML_BACKEND_TITLE, is_interactive=True, **auth)
    return created.id, True


def backend_model_version(client: LabelStudio, ml_backend_id: int) -> str:
    """The model version the backend answers on /setup (Label Studio asks it when the backend is read)."""
    with _errors(f"reading ML backend {ml_backend_id}", _base_url(client)):
        backend = client.ml.get(id=ml_backend_id)
    state = str(getattr(backend, "state", "") or "")
    if state.upper().startswith("ER"):
        raise StackError(f"Label Studio cannot reach the ML backend {backend.url} (state {state}); check the backend log")
    return str(backend.model_version or "")


def set_model_version(client: LabelStudio, project_id: int, version: str) -> None:
    """Set the project's model_version (what 'Uncertainty sampling' and the prediction filter use)."""
    with _errors(f"setting the model version of project {project_id}", _base_url(client)):
        client.projects.update(id=int(project_id), model_version=version)


def adopt_model_version(client: LabelStudio, project_id: int, version: str) -> bool:
    """Set the project's model_version when Label Studio accepts it; return whether it is set.

    Label Studio accepts a version only once predictions of it exist in the project (or it names a connected
    backend's title); until then the project keeps serving the live backend, which is what new projects want.
    """
    if not version:
        return False
    project = get_project(client, project_id)
    if project is not None and project.model_version == version:
        return True
    try:
        set_model_version(client, project_id, version)
    except LabelStudioError as exc:
        if "Model version doesn't exist" in str(exc):
            return False
        raise
    return True


def use_uncertainty_sampling(client: LabelStudio, project_id: int) -> None:
    """Serve tasks lowest prediction score first (needs project.model_version == the predictions' version)."""
    with _errors(f"setting uncertainty sampling on project {project_id}", _base_url(client)):
        client.projects.update(id=int(project_id), sampling="Uncertainty sampling")


def train(client: LabelStudio, ml_backend_id: int) -> None:
    """Ask Label Studio to send START_TRAINING to the backend."""
    with _errors(f"starting training on ML backend {ml_backend_id}", _base_url(client)):
        client.ml.train(id=int(ml_backend_id))


# --- tasks ---------------------------------------------------------------------------------------


def _as_dict(item: Any) -> dict[str, Any]:
    """An SDK object as the plain JSON dict Label Studio sent."""
    if isinstance(item, dict):
        return item
    return item.model_dump(mode="json", by_alias=True, exclude_unset=True)


def iter_tasks(client: LabelStudio, project_id: int, page_size: int = 100, fields: str = "all") -> Iterator[dict[str, Any]]:
    """Every task of a project as a plain dict (with annotations and predictions), one page in memory at a time."""
    page, seen = 1, 0
    url = _base_url(client)
    while True:
        try:
            with _errors(f"listing tasks of project {project_id}", url):
                pager = client.tasks.list(project=int(project_id), page=page, page_size=page_size, fields=fields)
        except LabelStudioError as exc:
            if page > 1 and " answered 404" in str(exc):  # tasks were deleted while paging
                return
            raise
        items = pager.items or []
        for item in items:
            yield _as_dict(item)
        seen += len(items)
        total = getattr(pager.response, "total", None)
        if len(items) < page_size or (total is not None and seen >= total):
            return
        page += 1


def task_texts(client: LabelStudio, project_id: int, text_field: str, page_size: int = 500) -> Iterator[str]:
    """The texts of a project's tasks (paged; annotations and predictions not fetched)."""
    for task in iter_tasks(client, project_id, page_size=page_size, fields="task_only"):
        value = (task.get("data") or {}).get(text_field)
        if isinstance(value, str):
            yield value


def import_tasks(
    client: LabelStudio, project_id: int, tasks: list[dict[str, Any]], batch_size: int = 500, progress: bool = True
) -> list[int]:
    """Import tasks in batches with a progress bar; return the new task ids.

    On failure raises LabelStudioError naming exactly which task ids went in before it failed.
    """
    from tqdm import tqdm

    ids: list[int] = []
    url = _base_url(client)
    with tqdm(total=len(tasks), unit="task", desc="import", disable=not progress or not tasks) as bar:
        for start in range(0, len(tasks), batch_size):
            batch = tasks[start : start + batch_size]
            try:
                with _errors(f"importing tasks {start + 1}-{start + len(batch)} into project {project_id}", url):
                    resp = client.projects.import_tasks(
                        id=int(project_id), request=batch, return_task_ids=True, request_options={"max_retries": 0}
                    )
            except (LabelStudioError, StackError) as exc:
                went_in = f"{len(ids)} task(s) went in before (ids {ids[0]}-{ids[-1]})" if ids else "nothing went in"
                error = type(exc)(f"{exc}; {went_in}")
                error.task_ids = list(ids)  # type: ignore[attr-defined]
                raise error from None
            new = list(resp.task_ids or [])
            if len(new) != len(batch):
                raise LabelStudioError(f"Label Studio created {len(new)} task(s) for a batch of {len(batch)} in project {project_id}; {len(ids) + len(new)} went in so far")
            ids.extend(new)
            bar.update(len(batch))
    return ids


def delete_tasks(client: LabelStudio, task_ids: Iterable[int]) -> None:
    """Delete tasks by id."""
    for tid in task_ids:
        with _errors(f"deleting task {tid}", _base_url(client)):
            client.tasks.delete(id=str(tid))


def next_task(client: LabelStudio, project_id: int) -> dict[str, Any] | None:
    """The task Label Studio serves next to the annotator (its queue order), or None when none is left."""
    url = _base_url(client)
    with _errors(f"asking project {project_id} for its next task", url):
        resp = _raw(client, "GET", f"api/projects/{int(project_id)}/next")
    if resp.status_code == 404:
        return None
    if not resp.is_success:
        raise LabelStudioError(f"asking project {project_id} for its next task: Label Studio answered {resp.status_code}: {resp.text[:200]}")
    return resp.json()


def get_task(client: LabelStudio, task_id: int) -> dict[str, Any]:
    """One task as a plain dict (opening it in the UI asks the backend for a prediction when it has none)."""
    with _errors(f"reading task {task_id}", _base_url(client)):
        return _as_dict(client.tasks.get(id=str(task_id)))


def create_annotation(client: LabelStudio, task_id: int, result: list[dict[str, Any]], lead_time: float = 1.0) -> dict[str, Any]:
    """Create an annotation on a task (as the API user) and return it."""
    with _errors(f"annotating task {task_id}", _base_url(client)):
        return _as_dict(client.annotations.create(id=int(task_id), result=result, lead_time=lead_time))


# --- predictions ---------------------------------------------------------------------------------


def create_predictions(client: LabelStudio, items: Iterable[dict[str, Any]]) -> list[int]:
    """Store predictions ({"task", "result", "score", "model_version"} each); return their ids."""
    ids = []
    url = _base_url(client)
    for item in items:
        with _errors(f"creating a prediction for task {item.get('task')}", url):
            pred = client.predictions.create(
                task=int(item["task"]), result=item.get("result") or [], score=item.get("score"), model_version=item.get("model_version")
            )
        ids.append(pred.id)
    return ids


def import_predictions(client: LabelStudio, project_id: int, items: list[dict[str, Any]]) -> int:
    """Store a batch of predictions ({"task", "result", "score", "model_version"} each) with one request: Label Studio
    inserts up to 500 in one statement, all or none. Not retried: a retry after a lost answer could store them twice."""
    if not items:
        return 0
    first, last = items[0].get("task"), items[-1].get("task")
    with _errors(f"importing predictions for tasks {first}-{last} into project {project_id}", _base_url(client)):
        resp = client.projects.import_predictions(id=int(project_id), request=items, request_options={"max_retries": 0})
    created = int(getattr(resp, "created", None) or 0)
    if created != len(items):
        raise LabelStudioError(f"Label Studio stored {created} of {len(items)} predictions for tasks {first}-{last} of project {project_id}")
    return created


def delete_predictions(client: LabelStudio, prediction_ids: Iterable[int]) -> None:
    """Delete predictions by id."""
    for pred_id in prediction_ids:
        with _errors(f"deleting prediction {pred_id}", _base_url(client)):
            client.predictions.delete(id=int(pred_id))


def prediction_batches(tasks: list[tuple[int, int]], max_chars: int, max_tasks: int) -> list[list[int]]:
    """Group (task id, text length) pairs into batches under max_chars characters and max_tasks tasks."""
    batches: list[list[int]] = []
    current: list[int] = []
    chars = 0
    for tid, length in tasks:
        if current and (chars + length > max_chars or len(current) >= max_tasks):
            batches.append(current)
            current, chars = [], 0
        current.append(tid)
        chars += length
    if current:
        batches.append(current)
    return batches


def _prediction_count(client: LabelStudio, project_id: int) -> int:
    """The project's total number of predictions."""
    project = get_project(client, project_id)
    return int(getattr(project, "total_predictions_number", 0) or 0) if project is not None else 0


def retrieve_predictions(
    client: LabelStudio, project_id: int, tasks: list[tuple[int, int]], settings: Settings, progress: bool = True
) -> int:
    """Ask Label Studio to fetch the backend's predictions for these (task id, text length) pairs, in batches
    sized by characters so no single /predict request nears Label Studio's 100 s timeout; return how many
    predictions were added."""
    from tqdm import tqdm

    url = _base_url(client)
    before = _prediction_count(client, project_id)
    batches = prediction_batches(tasks, settings.predict_batch_chars, settings.predict_batch_tasks)
    with tqdm(total=len(tasks), unit="task", desc="pre-annotate", disable=not progress or not tasks) as bar:
        for batch in batches:
            with _errors(f"pre-annotating tasks {batch[0]}-{batch[-1]} of project {project_id}", url):
                client.actions.create(
                    id="retrieve_tasks_predictions", project=int(project_id), selected_items={"all": False, "included": batch}
                )
            bar.update(len(batch))
    return _prediction_count(client, project_id) - before


# --- views ---------------------------------------------------------------------------------------


def ensure_view_ordered_by_score(client: LabelStudio, project_id: int, title: str = SCORE_VIEW_TITLE) -> int:
    """A Data Manager view listing tasks by prediction score, lowest first (it also orders /next); return its id."""
    url = _base_url(client)
    ordering = ["tasks:predictions_score"]
    with _errors(f"listing views of project {project_id}", url):
        views = client.views.list(project=int(project_id))
    for view in views:
        data = _as_dict(view.data) if view.data is not None else {}
        if data.get("title") == title:
            if data.get("ordering") != ordering:
                with _errors(f"updating view {view.id}", url):
                    client.views.update(id=str(view.id), project=int(project_id), data={**data, "ordering": ordering})
            return int(view.id)
    with _errors(f"creating a view in project {project_id}", url):
        view = client.views.create(
            project=int(project_id), data={"title": title, "ordering": ordering, "filters": {"conjunction": "and", "items": []}}
        )
    return int(view.id)


# --- exports -------------------------------------------------------------------------------------


def export_tasks(client: LabelStudio, project_id: int, export_type: str = "JSON", all_tasks: bool = True) -> bytes:
    """Label Studio's own export of a project (JSON, JSON_MIN, CSV, TSV, CONLL2003) as bytes."""
    with _errors(f"exporting project {project_id} as {export_type}", _base_url(client)):
        return b"".join(client.projects.exports.download_sync(int(project_id), export_type=export_type, download_all_tasks=all_tasks))


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.2) -> bool:
    """Poll predicate until it is true or timeout passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
