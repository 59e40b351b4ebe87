"""Starter sets: small, permissively licensed labeled sets shipped per schema (``<schema>/starter.json`` names the
files, the control each labels, the label map, the source and the licence file), so a fresh project's first
pre-annotations come from a trained model instead of a matcher that knows no strings.

`goldloop up` trains the starters a project lacks in a background process (`goldloop pretrain --starters`)
while Label Studio is already usable. A starter is trained once per data dir and key (the starter files'
hash + the encoder); its state (training / promoted / rejected / failed) is kept in the data dir's store and
shown by `goldloop status`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .. import store
from ..procs import pid_alive

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
TABLE = "starters"  # one row per project: key, status, version, started_at, duration_s, decision, pid
LOG_NAME = "starters"
COMMAND = "goldloop pretrain --starters"  # how the background process is shown in the stack's process record
WATCH_INTERVAL = 5.0  # seconds between two looks of the background process at the Label Studio it publishes to


def available() -> list[str]:
    """The schema names that ship a starter set."""
    return sorted(p.parent.name for p in HERE.glob("*/starter.json"))


def manifest(schema: str) -> dict:
    path = HERE / schema / "starter.json"
    if not path.is_file():
        raise KeyError(schema)
    return json.loads(path.read_text(encoding="utf-8"))


def inputs(schema: str) -> tuple[list[tuple[Path, str]], list[str]]:
    """The pretrain inputs of a schema's starter: (file, control) pairs and SOURCE=TARGET maps."""
    sets = manifest(schema)["sets"]
    sources = [(HERE / schema / s["file"], s["control"]) for s in sets]
    maps = sorted({f"{k}={v}" for s in sets for k, v in s["map"].items()})
    return sources, maps


def key(schema: str, encoder: str) -> str:
    """What a trained starter is cached by: its files' contents and the encoder."""
    h = hashlib.sha256(encoder.encode())
    for path in sorted((HERE / schema).glob("*")):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


# typed up front: a training row has no duration yet, and a column guessed from None would be TEXT
COLUMNS = {"project_id": int, "schema": str, "key": str, "encoder": str, "status": str, "started_at": float, "pid": int,
           "version": str, "decision": str, "duration_s": float}


def state(db, project_id: int) -> dict | None:
    """The starter record of a project, None when it never had one."""
    if db is None or TABLE not in db.table_names():
        return None
    rows = list(db[TABLE].rows_where("project_id = ?", [int(project_id)]))
    if not rows:
        return None
    row = dict(rows[0])
    for k in ("started_at", "duration_s"):  # a table an older version made holds them as text
        if row.get(k) is not None:
            row[k] = float(row[k])
    return row


def _alive(pid: int | None) -> bool:
    return pid_alive(int(pid)) if pid else False


def _record(db, project_id: int, **row: Any) -> None:
    db[TABLE].create(COLUMNS, pk="project_id", if_not_exists=True)
    db[TABLE].upsert({"project_id": int(project_id), **row}, pk="project_id", alter=True)


def needed(settings, db, schema: str, project_id: int) -> bool:
    """Whether `goldloop up` should start the background training for a project: it has a starter set, and no
    starter with this key was trained, nor is one being trained (train_missing checks the rest)."""
    if schema not in available():
        return False
    prev = state(db, project_id) or {}
    if prev.get("status") == "training" and _alive(prev.get("pid")):
        return False
    encoder = store.get_project_setting(db, project_id, "encoder") or settings.model
    return not (prev.get("key") == key(schema, encoder) and prev.get("status") in ("promoted", "rejected"))


def train_missing(settings, echo: Callable[[str], None] = print, options=None, progress: bool = False) -> list[dict]:
    """Train and publish the starter of every goldloop project that lacks one; returns what happened per project.

    Skipped: a project whose starter with the same key was trained (promoted or rejected), one already served by
    a trained version (its annotators got there first), one whose starter is being trained by a live process.
    The background process `goldloop up` starts ends with the stack it publishes to (stop_with_stack).
    """
    db = store.open_db(settings.data_dir.db_path)
    release = stop_with_stack(settings, db)
    try:
        return _train_each(settings, db, echo, options, progress)
    finally:
        release()


def _train_each(settings, db, echo: Callable[[str], None], options, progress: bool) -> list[dict]:
    """train_missing's work: each schema's project in turn."""
    from ml_backend.registry import Registry

    from .. import ls_client
    from ..pretrain import pretrain

    client = ls_client.connect(settings, db)
    registry = Registry(settings.backend_settings())
    done = []
    for schema in available():
        row = store.get_project_by_name(db, schema)
        if not row:
            continue
        pid = int(row["id"])
        encoder = store.get_project_setting(db, pid, "encoder") or settings.model
        k = key(schema, encoder)
        prev = state(db, pid) or {}
        serving = registry.current_version(str(pid))
        if prev.get("key") == k and prev.get("status") in ("promoted", "rejected"):
            why = f"cached ({prev['status']} {prev.get('version')})"
        elif prev.get("status") == "training" and prev.get("pid") != os.getpid() and _alive(prev.get("pid")):
            why = f"being trained by pid {prev['pid']}"
        elif not serving.startswith("coldstart") and prev.get("version") != serving:
            why = f"already served by trained version {serving}"
        else:
            why = ""
        if why:
            echo(f"starter {schema}: skipped, {why}")
            done.append({"schema": schema, "project_id": pid, "skipped": why})
            continue
        started = time.time()
        _record(db, pid, schema=schema, key=k, encoder=encoder, status="training", started_at=started, pid=os.getpid(),
                version=None, decision=None, duration_s=None)
        echo(f"starter {schema}: training for project {pid}")
        sources, maps = inputs(schema)
        try:
            rec = pretrain(settings, pid, sources, maps, options=options, progress=progress, client=client, registry=registry)
            status, version, decision = rec["status"], rec["version"], rec.get("decision")
        except Exception as exc:  # one project's failure must not stop the others; the record says why
            log.exception("starter %s failed", schema)
            status, version, decision = "failed", None, f"{type(exc).__name__}: {exc}"
        if status not in ("promoted", "rejected"):
            status = "failed"
        took = round(time.time() - started, 1)
        _record(db, pid, status=status, version=version, decision=decision, duration_s=took, pid=None)
        echo(f"starter {schema}: {status} {version or ''} in {took:.0f} s — {decision}")
        done.append({"schema": schema, "project_id": pid, "status": status, "version": version, "duration_s": took})
    return done


def stop_with_stack(settings, db, interval: float = WATCH_INTERVAL) -> Callable[[], None]:
    """In the background process `goldloop up` starts (it leads its own session), publishing to the data dir's own
    Label Studio: record this process with the stack's children (so `goldloop down` stops it, whichever `up` started
    it) and end it (SIGTERM, as `down` would) once that Label Studio is gone — stopped or dead — instead of training
    for minutes into nothing. Returns what undoes both; elsewhere (a command run in a terminal, a test, a Label Studio
    given by URL) it does nothing."""
    ls = store.get_process(db, store.LABEL_STUDIO)
    me = os.getpid()
    if settings.ls_url or os.getsid(0) != me or not ls or not pid_alive(ls["pid"]):
        return lambda: None
    store.record_process(db, store.STARTERS, me, 0, "", str(settings.data_dir.log(LOG_NAME)), COMMAND)
    done = threading.Event()
    threading.Thread(target=_watch, args=(settings.data_dir.db_path, int(ls["pid"]), done, interval), name="starters-watch",
                     daemon=True).start()

    def release() -> None:
        done.set()
        store.forget_process(db, store.STARTERS, me)

    return release


def _watch(db_path: Path, ls_pid: int, done: threading.Event, interval: float) -> None:
    """Every interval seconds: is Label Studio (ls_pid) alive and still recorded? If not, SIGTERM this process."""
    db = store.open_db(db_path)  # this thread's own connection
    while not done.wait(interval):
        try:
            if pid_alive(ls_pid) and store.process_by_pid(db, ls_pid) is not None:
                continue
        except sqlite3.OperationalError:  # the store is busy: look again next time
            continue
        log.warning("Label Studio (pid %d) is gone: stopping the starter training, its model has nowhere to go", ls_pid)
        os.kill(os.getpid(), signal.SIGTERM)
        return


def start_background(settings) -> int:
    """Run `goldloop pretrain --starters` as a detached, low-priority child; returns its pid (output in logs/)."""
    cmd = [sys.executable, "-m", "server.cli", "pretrain", "--starters", "--data-dir", str(settings.home)]
    log_path = settings.data_dir.log(LOG_NAME)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=lambda: os.nice(10))
    return proc.pid


def status_line(db, project_id: int) -> str | None:
    """One line for `goldloop status`: where the project's starter stands."""
    st = state(db, project_id)
    if not st:
        return None
    if st["status"] == "training":
        alive = _alive(st.get("pid"))
        since = time.strftime("%H:%M:%S", time.localtime(st["started_at"]))
        return f"starter training since {since} (pid {st['pid']})" if alive else "starter training was interrupted (run goldloop pretrain --starters)"
    took = f" in {st['duration_s']:.0f} s" if st.get("duration_s") is not None else ""
    return f"starter {st['status']} {st.get('version') or ''}{took} — {st.get('decision') or ''}".replace("  ", " ")
