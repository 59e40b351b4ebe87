"""goldloop's own state: a sqlite-utils Database in the data dir (processes, projects, imports)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import sqlite_utils

from .procs import pid_alive

PROCESSES = "processes"
PROJECTS = "projects"
IMPORTS = "imports"
# the processes of the local stack, by their row name in PROCESSES (one row per pid: a name may have several)
LABEL_STUDIO = "label_studio"
BACKEND = "backend"
STARTERS = "starters"  # the background training of the starter sets (no port, no URL)
PROCESS_COLUMNS = {"name": str, "pid": int, "port": int, "url": str, "log_path": str, "command": str, "started_at": float}


def _now() -> float:
    """Seconds since the epoch (the timestamp format of every table)."""
    return time.time()


def _first(db: sqlite_utils.Database, table: str, where: str, args: list[Any]) -> dict[str, Any] | None:
    """The first row of table matching where, or None."""
    return next(iter(db[table].rows_where(where, args, limit=1)), None)


def open_db(path: Path | str) -> sqlite_utils.Database:
    """Open (create when missing) the goldloop database and make sure its tables exist."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(path)
    db.execute("PRAGMA busy_timeout = 10000")
    ensure_schema(db)
    return db


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create the stack tables when they do not exist yet (idempotent)."""
    if PROCESSES not in db.table_names():
        db[PROCESSES].create(PROCESS_COLUMNS, pk="pid")
    elif db[PROCESSES].pks == ["name"]:
        _key_processes_by_pid(db)
    if PROJECTS not in db.table_names():
        db[PROJECTS].create(
            {
                "id": int,  # Label Studio project id
                "schema_name": str,
                "title": str,
                "config_hash": str,
                "text_field": str,
                "mask_pii": int,
                "model_version": str,
                "ml_backend_id": int,
                "updated_at": float,
            },
            pk="id",
        )
        db[PROJECTS].create_index(["schema_name"], unique=True)
    if IMPORTS not in db.table_names():
        db[IMPORTS].create(
            {
                "id": int,
                "project_id": int,
                "schema_name": str,
                "paths": str,  # JSON list
                "status": str,  # "running" | "ok" | "partial" | "failed" | "interrupted"
                "pid": int,  # the importing process
                "imported": int,
                "task_ids": str,  # JSON list of the Label Studio task ids created
                "pre_annotated": int,
                "report": str,  # JSON ImportReport.to_dict()
                "error": str,
                "created_at": float,
            },
            pk="id",
        )


# --- processes ---------------------------------------------------------------------------------


def _key_processes_by_pid(db: sqlite_utils.Database) -> None:
    """Rewrite a PROCESSES table of an older goldloop (one row per name) as one row per pid, in one transaction."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")  # a second process opening the store waits here, then finds the new table
    try:
        if db[PROCESSES].pks == ["name"]:
            columns = ", ".join(f'"{c}"' for c in PROCESS_COLUMNS)
            conn.execute(f'ALTER TABLE "{PROCESSES}" RENAME TO "{PROCESSES}_by_name"')
            conn.execute(f'CREATE TABLE "{PROCESSES}" ("name" TEXT, "pid" INTEGER PRIMARY KEY, "port" INTEGER, "url" TEXT, '
                         '"log_path" TEXT, "command" TEXT, "started_at" FLOAT)')
            conn.execute(f'INSERT OR REPLACE INTO "{PROCESSES}" ({columns}) SELECT {columns} FROM "{PROCESSES}_by_name"')
            conn.execute(f'DROP TABLE "{PROCESSES}_by_name"')
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def record_process(db: sqlite_utils.Database, name: str, pid: int, port: int, url: str, log_path: str, command: str) -> None:
    """Remember a started child process: one row per pid, so every child of every `goldloop up` of the data dir stays
    recorded until it is stopped (a name such as STARTERS may have several rows)."""
    db[PROCESSES].upsert(
        {"name": name, "pid": int(pid), "port": port, "url": url, "log_path": log_path, "command": command, "started_at": _now()},
        pk="pid",
    )


def get_process(db: sqlite_utils.Database, name: str) -> dict[str, Any] | None:
    """The newest recorded process called name, or None."""
    return next(iter(db[PROCESSES].rows_where("name = ?", [name], order_by="started_at desc", limit=1)), None)


def process_by_pid(db: sqlite_utils.Database, pid: int) -> dict[str, Any] | None:
    """The recorded process of a pid, or None (never recorded, or forgotten once stopped)."""
    return _first(db, PROCESSES, "pid = ?", [int(pid)])


def list_processes(db: sqlite_utils.Database, name: str | None = None) -> list[dict[str, Any]]:
    """Every recorded process (or those called name), by name, oldest first."""
    where, args = ("name = ?", [name]) if name is not None else (None, [])
    return list(db[PROCESSES].rows_where(where, args, order_by="name, started_at"))


def forget_process(db: sqlite_utils.Database, name: str, pid: int | None = None) -> None:
    """Drop the record of a stopped process: the row of pid, or every row called name."""
    if pid is None:
        db[PROCESSES].delete_where("name = ?", [name])
    else:
        db[PROCESSES].delete_where("name = ? and pid = ?", [name, int(pid)])


# --- projects ----------------------------------------------------------------------------------


def upsert_project(db: sqlite_utils.Database, **row: Any) -> dict[str, Any]:
    """Insert or update a project row (keyed by its Label Studio id; one row per schema name)."""
    row["updated_at"] = _now()
    if "mask_pii" in row:
        row["mask_pii"] = int(bool(row["mask_pii"]))
    # a schema name points at one Label Studio project: drop a stale row of another id
    if row.get("schema_name"):
        db[PROJECTS].delete_where("schema_name = ? and id != ?", [row["schema_name"], row["id"]])
    db[PROJECTS].upsert(row, pk="id", alter=True)
    return get_project(db, row["id"])  # type: ignore[return-value]


def get_project(db: sqlite_utils.Database, project_id: int) -> dict[str, Any] | None:
    """The project row of a Label Studio id, or None."""
    return _first(db, PROJECTS, "id = ?", [int(project_id)])


def get_project_by_name(db: sqlite_utils.Database, schema_name: str) -> dict[str, Any] | None:
    """The project row of a schema name, or None."""
    return _first(db, PROJECTS, "schema_name = ?", [schema_name])


def list_projects(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every known project, by Label Studio id."""
    return list(db[PROJECTS].rows_where(order_by="id"))


def forget_project(db: sqlite_utils.Database, project_id: int) -> None:
    """Drop a project row (its Label Studio project is gone)."""
    db[PROJECTS].delete_where("id = ?", [int(project_id)])


# --- imports -----------------------------------------------------------------------------------


def record_import(
    db: sqlite_utils.Database,
    *,
    project_id: int,
    schema_name: str,
    paths: list[str],
    status: str,
    task_ids: list[int],
    pre_annotated: int = 0,
    report: dict[str, Any] | None = None,
    error: str = "",
) -> int:
    """Store one import run and its report; return the import's id. The row names this process (pid): a row left
    "running" by a dead process is an import that was killed (settle_killed_imports)."""
    table = db[IMPORTS].insert(
        {
            "pid": os.getpid(),
            "project_id": int(project_id),
            "schema_name": schema_name,
            "paths": json.dumps([str(p) for p in paths]),
            "status": status,
            "imported": len(task_ids),
            "task_ids": json.dumps(list(task_ids)),
            "pre_annotated": int(pre_annotated),
            "report": json.dumps(report or {}, default=str),
            "error": error,
            "created_at": _now(),
        },
        alter=True,
    )
    return int(table.last_pk)


def update_import(db: sqlite_utils.Database, import_id: int, **changes: Any) -> None:
    """Update fields of a stored import (e.g. pre_annotated after the predictions ran)."""
    db[IMPORTS].update(import_id, changes)


def settle_killed_imports(db: sqlite_utils.Database, project_id: int) -> list[int]:
    """Mark a project's imports left "running" by a process that no longer exists as "interrupted"; their ids."""
    if "pid" not in db[IMPORTS].columns_dict:
        return []
    killed = [r["id"] for r in db[IMPORTS].rows_where("project_id = ? and status = ?", [int(project_id), "running"])
              if not pid_alive(r["pid"])]
    for import_id in killed:
        db[IMPORTS].update(import_id, {"status": "interrupted", "error": "the import's process ended before it finished (killed?)"})
    return killed


def list_imports(db: sqlite_utils.Database, project_id: int | None = None) -> list[dict[str, Any]]:
    """Stored imports, oldest first, optionally of one project; JSON columns decoded."""
    where, args = ("project_id = ?", [int(project_id)]) if project_id is not None else (None, [])
    out = []
    for row in db[IMPORTS].rows_where(where, args, order_by="id"):
        for key in ("paths", "task_ids", "report"):
            row[key] = json.loads(row[key] or "null")
        out.append(row)
    return out


# --- model versions (one row per training round) ------------------------------------------------

VERSIONS = "versions"


def record_version(db: sqlite_utils.Database, **row: Any) -> None:
    """Insert or update a training round's record (keyed by project id and version)."""
    db[VERSIONS].upsert(row, pk=("project_id", "version"), alter=True)


def get_version(db: sqlite_utils.Database, project_id: int, version: str) -> dict[str, Any]:
    """One version record."""
    return dict(db[VERSIONS].get((project_id, version)))


def list_versions(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """Every version record of a project, oldest first."""
    if VERSIONS not in db.table_names():
        return []
    return list(db[VERSIONS].rows_where("project_id = ?", [project_id], order_by="started_at"))


def running_versions(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """A project's rounds still marked "running" (under the round lock: rounds whose process was killed)."""
    if VERSIONS not in db.table_names():
        return []
    return list(db[VERSIONS].rows_where("project_id = ? and status = ?", [project_id, "running"], order_by="started_at"))


# --- per-project settings (a project's own encoder, …) ------------------------------------------

PROJECT_SETTINGS = "project_settings"
SETTING_KEYS = ("encoder",)


def set_project_setting(db: sqlite_utils.Database, project_id: int, key: str, value: str | None) -> None:
    """Set one setting of a project (any Label Studio project, made by goldloop or not); None clears it."""
    if key not in SETTING_KEYS:
        raise ValueError(f"unknown project setting {key!r} (known: {', '.join(SETTING_KEYS)})")
    if value is None:
        if PROJECT_SETTINGS in db.table_names():
            db[PROJECT_SETTINGS].delete_where("project_id = ? and key = ?", [int(project_id), key])
        return
    db[PROJECT_SETTINGS].upsert({"project_id": int(project_id), "key": key, "value": str(value), "updated_at": _now()},
                                pk=("project_id", "key"))


def get_project_setting(db: sqlite_utils.Database, project_id: int, key: str) -> str | None:
    """One setting of a project, None when unset."""
    if PROJECT_SETTINGS not in db.table_names():
        return None
    row = _first(db, PROJECT_SETTINGS, "project_id = ? and key = ?", [int(project_id), key])
    return row["value"] if row else None


# --- annotator effort (server/effort.py) ---------------------------------------------------------

EFFORT = "annotation_effort"


def record_effort(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> int:
    """Store effort rows, one per annotation id (an updated annotation replaces its row); how many were written."""
    if rows:
        db[EFFORT].upsert_all(rows, pk="annotation_id", alter=True)
        if len(db[EFFORT].indexes) == 0:
            db[EFFORT].create_index(["project_id"], if_not_exists=True)
    return len(rows)


def list_effort(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """A project's effort rows, oldest annotation first (booleans back as bool)."""
    if EFFORT not in db.table_names():
        return []
    rows = list(db[EFFORT].rows_where("project_id = ?", [int(project_id)], order_by="updated_at, annotation_id"))
    for r in rows:
        for k in ("suggested", "control", "skipped", "capped"):
            r[k] = bool(r.get(k))
    return rows
