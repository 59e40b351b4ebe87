"""`goldloop up` and `goldloop status`: the running stack with one Label Studio project per schema, the backend
connected to each, the sample documents imported; and what the stack and its projects look like now."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from label_studio_sdk import LabelStudio

from . import database, importer, ls_client, stack, store
from .config import Settings
from .errors import ConfigError, LabelStudioError, ServerError
from .schema_files import Schema, load_schemas, needs_push

Echo = Callable[[str], None]


def samples_dir() -> Path:
    """The sample documents shipped with the package: samples/<schema name>/docs.jsonl."""
    return Path(__file__).resolve().parent / "samples"


# --- one project per schema ----------------------------------------------------------------------


@dataclass
class ProjectSync:
    """What syncing one schema did to its Label Studio project."""

    schema: str
    project_id: int
    title: str
    created: bool = False
    config_updated: bool = False
    backend_connected: bool = False
    settings_updated: bool = False
    model_version: str = ""

    @property
    def changed(self) -> bool:
        return self.created or self.config_updated or self.backend_connected or self.settings_updated


def _rejection(exc: LabelStudioError) -> str:
    """Label Studio's answer in an SDK error, without what goldloop was doing."""
    return str(exc).split(": ", 1)[-1]


def _find_project(client: LabelStudio, schema: Schema, db, cache: list[Any] | None) -> Any | None:
    """The existing project of a schema: by the stored id, else by the description marker."""
    row = store.get_project_by_name(db, schema.name)
    if row:
        project = ls_client.get_project(client, row["id"])
        if project is not None and ls_client.schema_name_of(project) in (schema.name, None):
            return project
        store.forget_project(db, row["id"])
    return ls_client.project_of_schema(client, schema.name, cache)


def ensure_project(client: LabelStudio, schema: Schema, settings: Settings, db, cache: list[Any] | None = None) -> tuple[Any, ProjectSync]:
    """Create the schema's project, or update its labeling config when the schema changed (idempotent)."""
    project = _find_project(client, schema, db, cache)
    if project is None:
        try:
            project_id = ls_client.create_project(client, schema.name, schema.title, schema.xml, settings.min_annotations_to_train)
        except LabelStudioError as exc:
            raise ConfigError(f"Label Studio rejects schema {schema.path}: {_rejection(exc)}; fix the file") from None
        project = ls_client.get_project(client, project_id)
        sync = ProjectSync(schema.name, project.id, project.title, created=True)
    else:
        sync = ProjectSync(schema.name, project.id, project.title)
        row = store.get_project_by_name(db, schema.name)
        if needs_push(schema, row.get("config_hash") if row else None, project.label_config):
            try:
                ls_client.update_project(client, project.id, label_config=schema.xml)
            except LabelStudioError as exc:
                raise ConfigError(f"Label Studio rejects schema {schema.path} for project {project.id}: {_rejection(exc)}") from None
            sync.config_updated = True
        changes: dict[str, Any] = {}
        if project.title != schema.title:
            changes["title"] = schema.title
        if project.min_annotations_to_start_training != settings.min_annotations_to_train:
            changes["min_annotations_to_start_training"] = settings.min_annotations_to_train
        if changes:
            ls_client.update_project(client, project.id, **changes)
            sync.settings_updated = True
            sync.title = changes.get("title", sync.title)
    store.upsert_project(
        db, id=project.id, schema_name=schema.name, title=sync.title, config_hash=schema.config_hash, text_field=schema.text_field,
        mask_pii=schema.name in settings.mask_pii_schemas,
    )  # fmt: skip
    return project, sync


def sync_projects(
    client: LabelStudio, settings: Settings, db, backend_url: str, schemas: Iterable[Schema] | None = None, echo: Echo | None = None
) -> list[ProjectSync]:
    """One project per schema, with the backend connected and the backend's model version set (idempotent)."""
    results = []
    cache = ls_client.list_projects(client)
    for schema in schemas if schemas is not None else load_schemas():
        project, sync = ensure_project(client, schema, settings, db, cache)
        ml_id, sync.backend_connected = ls_client.ensure_ml_backend(client, project.id, backend_url, settings)
        description = ls_client.project_description(schema.name, backend_url, project.id)  # the marker + the dashboard link
        if getattr(project, "description", None) != description:
            ls_client.update_project(client, project.id, description=description)
        version = ls_client.backend_model_version(client, ml_id)
        before = ls_client.get_project(client, project.id)
        if before is not None and before.model_version != version and ls_client.adopt_model_version(client, project.id, version):
            sync.settings_updated = True
        after = ls_client.get_project(client, project.id)
        sync.model_version = (after.model_version if after is not None else "") or version
        store.upsert_project(db, id=project.id, model_version=sync.model_version, ml_backend_id=ml_id)
        if echo:
            what = "created" if sync.created else ("updated" if sync.changed else "unchanged")
            echo(f"  project {project.id:>3}  {schema.name:<18} {what:<9} model {sync.model_version}")
        results.append(sync)
    return results


# --- goldloop up ---------------------------------------------------------------------------------


@dataclass
class UpResult:
    """What `goldloop up` did: where the stack is, the projects synced, the sample imports."""

    info: stack.StackInfo
    projects: list[ProjectSync]
    imports: list[importer.ImportOutcome]
    login: str = ""  # how to log into Label Studio; holds the password only on the start that generated it
    database: str = "sqlite"  # Label Studio's database as it may be shown (database.Database.display)
    starters: str = ""  # what became of the starter sets: training in the background (pid), or why not


# how to give a Label Studio admin a new password (Label Studio 1.23.2's own command; it runs with the stack stopped
# or running); filled with the admin's email, the new password and the data dir's Label Studio folder
RESET_PASSWORD_COMMAND = "label-studio reset_password --username {email} --password {password} --data-dir {ls_data}"


def admin_login(settings: Settings) -> tuple[Settings, str]:
    """The settings that start Label Studio with the admin password, and the login line `goldloop up` prints.

    The generated password is shown once, by the call that generates it; later starts name the file. A data dir
    whose Label Studio admin was created before goldloop generated passwords gets a generated one too (never a
    fixed one): Label Studio ignores it for the existing admin, and the line says how to make it the admin's.
    """
    from .config import ENV_ADMIN_PASSWORD

    data_dir = settings.data_dir
    if settings.admin_password:
        return settings, f"{settings.admin_email}, password from ${ENV_ADMIN_PASSWORD}"
    predates = not data_dir.admin_password_path.exists() and any(data_dir.ls_data.glob("*.sqlite3"))
    password, created = data_dir.read_or_create_admin_password()
    if predates:
        import shlex

        reset = RESET_PASSWORD_COMMAND.format(email=shlex.quote(settings.admin_email), ls_data=shlex.quote(str(data_dir.ls_data)),
                                              password=f'"$(cat {shlex.quote(str(data_dir.admin_password_path))})"')
        return settings, (f"{settings.admin_email}, the password the admin was created with (this data dir predates "
                          f"generated passwords; Label Studio keeps it); to use the generated one kept in "
                          f"{data_dir.admin_password_path}, run once: {reset}")
    if created:
        return settings, f"{settings.admin_email}, password {password}  (generated; shown once, kept in {data_dir.admin_password_path})"
    return settings, f"{settings.admin_email}, password in {data_dir.admin_password_path}"


def bring_up(
    settings: Settings, db, *, samples: bool = True, progress: stack.Progress | None = None, echo: Echo | None = None,
    show_bars: bool = True, switch_database: bool = False,
) -> UpResult:
    """Start the stack (or find it running), sync one project per schema, import the samples (idempotent).

    Label Studio runs on settings.database_url, else on the data dir's remembered database (server/database.py).
    """
    settings.data_dir.ensure()
    running = stack.running_stack(settings, db) is not None
    chosen, _ = database.choose(settings.data_dir, settings.database_url, switch=switch_database, running=running)
    database.check_reachable(chosen)  # before it is remembered: a mistyped host must not become the data dir's database
    database.remember(settings.data_dir, chosen)
    settings, login = admin_login(settings)
    info = stack.start_stack(settings, db, progress)
    try:
        sync_settings = settings.with_overrides(ls_url=info.ls_url, ls_api_key=settings.data_dir.read_token())
        client = ls_client.connect(sync_settings, db)
        if echo:
            echo("projects:")
        synced = sync_projects(client, sync_settings, db, info.backend_url, echo=echo)
        imports = []
        if samples:
            for sync in synced:
                path = samples_dir() / sync.schema / "docs.jsonl"
                if not path.exists():
                    continue
                outcome = importer.import_files(client, sync_settings, db, sync.project_id, [path], progress=show_bars)
                imports.append(outcome)
                if echo:
                    added = f"+{len(outcome.task_ids)} task(s), {outcome.pre_annotated} pre-annotated" if outcome.task_ids else "already imported"
                    echo(f"  samples  {sync.schema:<18} {added}")
                    for warning in outcome.warnings:
                        echo(f"  warning: {warning}")
    except BaseException:
        if info.started:
            stack.stop_stack(settings, db)
        raise
    return UpResult(info, synced, imports, login, chosen.display(), start_starters(settings, db, synced))


def start_starters(settings: Settings, db, synced: list[ProjectSync]) -> str:
    """Train the projects' missing starter sets in a background process (server/starters/), unless one already
    trains for this data dir (whichever `goldloop up` or `goldloop import` started it); what was done."""
    from . import starters

    return starters.start(settings, db, [(s.schema, s.project_id) for s in synced])


# --- goldloop status -----------------------------------------------------------------------------


def project_summaries(client: LabelStudio, db=None) -> list[dict[str, Any]]:
    """Each project: id, schema name, title, task / annotation / prediction counts, model version."""
    out = []
    for p in ls_client.list_projects(client):
        row = store.get_project(db, p.id) if db is not None else None
        out.append(
            {
                "id": p.id,
                "schema": ls_client.schema_name_of(p) or (row or {}).get("schema_name"),
                "title": p.title,
                "tasks": p.task_number or 0,
                "annotations": p.total_annotations_number or 0,
                "predictions": p.total_predictions_number or 0,
                "model_version": p.model_version or "",
            }
        )
    return out


def status_report(settings: Settings, db) -> dict[str, Any]:
    """The recorded processes, Label Studio's URL and, when it answers, each project's counts and stopping report;
    db None (no data dir yet) reports nothing running."""
    processes = stack.process_status(db) if db is not None else []
    ls_row = next((p for p in processes if p["name"] == store.LABEL_STUDIO), None)
    out = {"data_dir": str(settings.home), "label_studio_url": ls_row["url"] if ls_row else None, "processes": processes, "projects": [], "error": None,
           "database": database.current(settings.data_dir).display()}  # fmt: skip
    if ls_row and ls_row["healthy"]:
        try:
            client = ls_client.connect(settings.with_overrides(ls_url=ls_row["url"]), db)
            out["projects"] = project_summaries(client, db)
            from .loop import stopping_report  # the training stack loads only when there are projects to report on

            from . import starters

            run = starters.run_command(settings)
            for p in out["projects"]:
                p["stopping"] = stopping_report(store.list_versions(db, int(p["id"])))
                p["starter"] = starters.status_line(db, int(p["id"]), p["schema"], run)
        except ServerError as exc:
            out["error"] = str(exc)
    return out
