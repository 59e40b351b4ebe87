"""`goldloop migrate-db`: move a data dir's Label Studio to another database (SQLite → PostgreSQL) through Label
Studio's API, with both servers running side by side.

Copied: users (by e-mail, so annotations keep their annotator), projects with their ids (goldloop's models, versions
and locks are keyed by project id), labeling configs and settings, ML backend connections, Data Manager views, tasks
with their data and meta, annotations (result, annotator, lead time, cancelled, ground truth) and predictions (result,
score, model version). Task and annotation ids are new; goldloop's import records are rewritten to the new task ids.
Not copied: drafts, comments, annotation timestamps, uploaded files' database rows (the files stay in the data dir).
Label Studio connects an ML backend only while it answers: with the stack stopped goldloop's own backend is connected
again by the next `goldloop up`, and any other backend that is down is named in the result to reconnect by hand.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from . import database, ls_client, stack, store
from .config import Settings, local_url
from .database import Database
from .errors import ConfigError, LabelStudioError, StackError

Echo = Callable[[str], None]
# project settings a team sets in the UI that Label Studio's API writes back as they were read
PROJECT_FIELDS = (
    "title", "description", "label_config", "expert_instruction", "show_instruction", "show_skip_button",
    "enable_empty_annotation", "show_annotation_history", "reveal_preannotations_interactively", "show_collab_predictions",
    "maximum_annotations", "color", "control_weights", "min_annotations_to_start_training", "sampling",
    "show_ground_truth_first", "show_overlap_first", "overlap_cohort_percentage", "evaluate_predictions_automatically",
    "skip_queue", "is_published",
)  # fmt: skip
ML_FIELDS = ("url", "title", "description", "is_interactive", "auth_method", "basic_auth_user", "timeout", "extra_params", "auto_update")
MAX_FILLERS = 10_000  # projects created and deleted to reach a source project's id
BATCH = 200  # tasks per import request


@dataclass
class ProjectMove:
    """One project's copy: ids, what went across, and the task id map."""

    id: int
    title: str
    tasks: int = 0
    annotations: int = 0
    predictions: int = 0
    ml_backends: int = 0
    ml_backends_down: list[str] = field(default_factory=list)  # not answering now: Label Studio refuses to connect them
    views: int = 0
    task_ids: dict[int, int] = field(default_factory=dict)  # source task id → target task id


@dataclass
class MoveResult:
    """What `goldloop migrate-db` did."""

    source: str
    target: str
    projects: list[ProjectMove]
    users_created: int
    seconds_start: float = 0.0  # both Label Studios up (the target's first start migrates its schema)
    seconds_copy: float = 0.0
    seconds_verify: float = 0.0


@contextlib.contextmanager
def _api(what: str) -> Iterator[None]:
    """Label Studio's refusals as one-line LabelStudioErrors."""
    try:
        yield
    except ApiError as exc:
        raise LabelStudioError(f"{what}: Label Studio answered {exc.status_code}: {str(exc.body)[:300]}") from None


def _dump(item: Any) -> dict[str, Any]:
    return item if isinstance(item, dict) else item.model_dump(mode="json", by_alias=True)


# --- pieces of the copy --------------------------------------------------------------------------


def copy_users(src: LabelStudio, dst: LabelStudio) -> tuple[dict[int, str], int]:
    """Every source user that is missing in the target (by e-mail) is created there, without a password (they set one
    with an invite or the admin sets it); returns source user id → e-mail, and how many were created."""
    with _api("listing users"):
        have = {(u.email or "").lower() for u in dst.users.list()}
        users = list(src.users.list())
    emails, created = {}, 0
    for u in users:
        emails[u.id] = u.email or ""
        if u.email and u.email.lower() not in have:
            with _api(f"creating user {u.email}"):
                dst.users.create(email=u.email, username=u.username or u.email, first_name=u.first_name or "", last_name=u.last_name or "")
            have.add(u.email.lower())
            created += 1
    return emails, created


def create_project_with_id(dst: LabelStudio, project_id: int, fields: dict[str, Any]) -> int:
    """Create a project in the target whose id is project_id: ids come from a sequence, so projects are created and
    deleted until the sequence reaches it. ConfigError when the target has already passed that id."""
    for _ in range(MAX_FILLERS + 1):
        with _api(f"creating project {project_id}"):
            created = dst.projects.create(**fields)
        if created.id == project_id:
            return project_id
        with _api(f"deleting placeholder project {created.id}"):
            dst.projects.delete(id=created.id)
        if created.id > project_id:
            raise ConfigError(f"the target database already used project id {project_id}; migrate into a fresh, empty database")
    raise ConfigError(f"project id {project_id} is more than {MAX_FILLERS} ids ahead of the target's next one")


def task_payload(task: dict[str, Any], emails: dict[int, str]) -> dict[str, Any]:
    """A source task as Label Studio's import format, annotations and predictions inline."""
    annotations = []
    for a in task.get("annotations") or []:
        who = a.get("completed_by")
        who_id = who.get("id") if isinstance(who, dict) else who
        item = {k: a.get(k) for k in ("result", "was_cancelled", "ground_truth", "lead_time") if a.get(k) is not None}
        if emails.get(who_id):
            item["completed_by"] = {"email": emails[who_id]}
        annotations.append(item)
    predictions = [
        {k: p.get(k) for k in ("result", "score", "model_version") if p.get(k) is not None} for p in task.get("predictions") or []
    ]
    return {"data": task.get("data") or {}, "meta": task.get("meta") or {}, "annotations": annotations, "predictions": predictions}


def copy_project(src: LabelStudio, dst: LabelStudio, project_id: int, emails: dict[int, str], settings: Settings, progress: bool = True) -> ProjectMove:
    """One project: settings, tasks with annotations and predictions, model version, ML backends, views."""
    with _api(f"reading project {project_id}"):
        p = _dump(src.projects.get(id=project_id))
    fields = {k: p[k] for k in PROJECT_FIELDS if p.get(k) is not None}
    create_project_with_id(dst, project_id, fields)
    move = ProjectMove(project_id, p.get("title") or "")
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        new_ids = ls_client.import_tasks(dst, project_id, [payload for _, payload in batch], batch_size=BATCH, progress=False)
        move.task_ids.update(zip((tid for tid, _ in batch), new_ids))
        batch.clear()

    from tqdm import tqdm

    with tqdm(total=p.get("task_number") or None, unit="task", desc=f"project {project_id}", disable=not progress) as bar:
        for task in ls_client.iter_tasks(src, project_id, page_size=BATCH):
            payload = task_payload(task, emails)
            move.tasks += 1
            move.annotations += len(payload["annotations"])
            move.predictions += len(payload["predictions"])
            batch.append((task["id"], payload))
            if len(batch) >= BATCH:
                flush()
            bar.update(1)
        if batch:
            flush()
    if p.get("model_version"):
        ls_client.update_project(dst, project_id, model_version=p["model_version"])
    with _api(f"listing ML backends of project {project_id}"):
        backends = [_dump(b) for b in src.ml.list(project=project_id)]
    for b in backends:
        kw = {k: b[k] for k in ML_FIELDS if b.get(k) is not None}
        if kw.get("auth_method") == "BASIC_AUTH":  # Label Studio never returns the password: goldloop's own is the one
            kw["basic_auth_pass"] = settings.basic_auth_pass or ""
        try:
            dst.ml.create(project=project_id, **kw)
        except ApiError as exc:
            if exc.status_code != 400 or "health check failed" not in str(exc.body):
                raise LabelStudioError(f"connecting ML backend {b.get('url')} to project {project_id}: Label Studio answered "
                                       f"{exc.status_code}: {str(exc.body)[:300]}") from None
            if b.get("title") != ls_client.ML_BACKEND_TITLE:  # goldloop's own: `goldloop up` connects it again
                move.ml_backends_down.append(str(b.get("url")))
            continue
        move.ml_backends += 1
    with _api(f"listing views of project {project_id}"):
        views = [_dump(v) for v in src.views.list(project=project_id)]
    for v in views:
        with _api(f"creating a view in project {project_id}"):
            dst.views.create(project=project_id, data=v.get("data") or {})
        move.views += 1
    return move


def _comparable(task: dict[str, Any], emails: dict[int, str]) -> dict[str, Any]:
    """What must be equal on both sides: data, annotations by annotator e-mail, predictions (order-independent)."""
    payload = task_payload(task, emails)
    key = lambda item: json.dumps(item, sort_keys=True)  # noqa: E731 - a sort key
    return {
        "data": payload["data"],
        "annotations": sorted(payload["annotations"], key=key),
        "predictions": sorted(payload["predictions"], key=key),
    }


def verify_project(src: LabelStudio, dst: LabelStudio, move: ProjectMove, src_emails: dict[int, str], dst_emails: dict[int, str]) -> None:
    """LabelStudioError naming the first task whose copy differs (data, annotations, predictions) or is missing."""
    got = {t["id"]: t for t in ls_client.iter_tasks(dst, move.id, page_size=BATCH)}
    if len(got) != move.tasks:
        raise LabelStudioError(f"project {move.id}: the target holds {len(got)} task(s), the source {move.tasks}")
    for task in ls_client.iter_tasks(src, move.id, page_size=BATCH):
        copy = got.get(move.task_ids.get(task["id"], -1))
        if copy is None or _comparable(task, src_emails) != _comparable(copy, dst_emails):
            raise LabelStudioError(f"project {move.id}: task {task['id']} differs in the target (task {move.task_ids.get(task['id'])})")


def move_data(src: LabelStudio, dst: LabelStudio, settings: Settings, echo: Echo | None = None, progress: bool = True) -> tuple[list[ProjectMove], int, float]:
    """Copy every project of src into dst (which must hold no project), then verify each; returns the moves, the users
    created and the seconds the verification took."""
    projects = sorted(ls_client.list_projects(src), key=lambda p: p.id)
    if ls_client.list_projects(dst):
        raise ConfigError("the target Label Studio already holds projects; migrate into a fresh, empty database")
    src_emails, created = copy_users(src, dst)
    moves = []
    for p in projects:
        moves.append(copy_project(src, dst, p.id, src_emails, settings, progress=progress))
        if echo:
            m = moves[-1]
            echo(f"  project {m.id:>3}  {m.title[:30]:<30} {m.tasks:>6} tasks {m.annotations:>6} annotations {m.predictions:>6} predictions")
    t0 = time.monotonic()
    with _api("listing users"):
        dst_emails = {u.id: u.email or "" for u in dst.users.list()}
    for m in moves:
        verify_project(src, dst, m, src_emails, dst_emails)
    return moves, created, time.monotonic() - t0


# --- goldloop migrate-db -------------------------------------------------------------------------


def _start(settings: Settings, db_choice: Database, name: str, token: str):
    """Spawn a Label Studio for the data dir on db_choice and a free port; (process, url, log)."""
    s = settings.with_overrides(ls_port=stack.free_port())
    log = settings.data_dir.log(name)
    proc = stack.spawn(stack.label_studio_command(s), stack.label_studio_env(s, token, database=db_choice), log, cwd=settings.data_dir.home)
    return proc, local_url(s.ls_port), log


def _client(settings: Settings, url: str, token: str) -> LabelStudio:
    return ls_client.connect(settings.with_overrides(ls_url=url, ls_api_key=token))


def rewrite_store(db, moves: list[ProjectMove], dst: LabelStudio) -> None:
    """goldloop's records that hold Label Studio task or ML backend ids, rewritten to the target's ids."""
    task_map = {old: new for m in moves for old, new in m.task_ids.items()}
    for row in store.list_imports(db):
        ids = row.get("task_ids") or []
        if ids:
            store.update_import(db, row["id"], task_ids=json.dumps([task_map.get(i, i) for i in ids]))
    for m in moves:
        if store.get_project(db, m.id) is not None:
            ml_ids = ls_client.ml_backend_ids(dst, m.id)
            store.upsert_project(db, id=m.id, ml_backend_id=ml_ids[0] if ml_ids else None)


def migrate(settings: Settings, db, target_url: str, echo: Echo | None = None, progress: bool = True) -> MoveResult:
    """Move the data dir's Label Studio data to target_url; the data dir then starts on it (`goldloop up`).

    The stack must be stopped (the source must not change during the copy). The source keeps its projects: the data
    dir goes back to it with `goldloop up --database sqlite --switch-database`.
    """
    data_dir = settings.data_dir
    source, target = database.current(data_dir), database.parse_url(target_url)
    if source.same_place(target):
        raise ConfigError(f"data dir {data_dir.home} already runs on {target.display()}")
    if not target.is_postgresql and data_dir.ls_sqlite_path.exists():
        raise ConfigError(f"{data_dir.ls_sqlite_path} already exists; move it away to migrate into a fresh SQLite database")
    if any(p["alive"] for p in stack.process_status(db)):
        raise StackError("the stack is running; stop it first (goldloop down) so nothing changes during the move")
    database.check_reachable(target)
    token = data_dir.read_token()
    t0 = time.monotonic()
    procs = []
    try:
        for choice, name in ((source, "label-studio-migrate-source"), (target, "label-studio-migrate-target")):
            procs.append(_start(settings, choice, name, token))
        for (proc, url, log), what in zip(procs, ("the source Label Studio", "the target Label Studio")):
            stack.wait_healthy(what, f"{url}/health", proc.pid, settings.ls_start_timeout, log)
            stack.check_token(url, token)
        started = time.monotonic() - t0
        src, dst = _client(settings, procs[0][1], token), _client(settings, procs[1][1], token)
        if echo:
            echo(f"copying {source.display()} → {target.display()}")
        t1 = time.monotonic()
        moves, created, verify_s = move_data(src, dst, settings, echo=echo, progress=progress)
        copied = time.monotonic() - t1 - verify_s
        rewrite_store(db, moves, dst)
    finally:
        for proc, _, _ in procs:
            stack.stop_pid(proc.pid)
    database.remember(data_dir, target)
    return MoveResult(source.display(), target.display(), moves, created, started, copied, verify_s)
