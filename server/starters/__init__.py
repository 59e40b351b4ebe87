"""Starter sets: small, permissively licensed labeled sets shipped per schema (``<schema>/starter.json`` names the
files, the control each labels, the label map, the source and the licence file), so a fresh project's first
pre-annotations come from a trained model instead of a matcher that knows no strings.

`goldloop up` trains the starters a project lacks in a background process (`goldloop pretrain --starters`)
while Label Studio is already usable; a starter needs no documents of the project. `goldloop import` into a project
whose starter is missing or failed starts that process too, and once a starter is promoted the process pre-annotates
the tasks imported meanwhile. A starter is trained once per data dir and key (the starter files' hash + the
encoder); its state (training / promoted / rejected / failed / off) is kept in the data dir's store and shown by
`goldloop status`, with the command that trains it when it is missing, failed or off.
"""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import store
from ..procs import pid_alive
from .sets import COLUMNS, HERE, TABLE, available, folder, inputs, key, languages, manifest, rehearsal_sets, state  # noqa: F401

log = logging.getLogger(__name__)
LOG_NAME = "starters"
COMMAND = "goldloop pretrain --starters"  # how the background process is shown in the stack's process record
WATCH_INTERVAL = 5.0  # seconds between two looks of the background process at the Label Studio it publishes to
SAMPLE_CHARS = 20_000  # of a project's documents, to tell their language
OFF = "switched off: goldloop up --no-starters or GOLDLOOP_STARTERS=0"  # the decision of a starter recorded "off"


def language_of(schema: str, texts: Iterable[str]) -> str:
    """The starter language for a project's documents: "zh" when they are CJK (ml_backend/encoders/language.py, the
    share `goldloop encoder --auto` judges the script by) and the schema ships a Chinese set, else English (no
    documents yet: English)."""
    from ml_backend.encoders.language import script_shares

    return "zh" if "zh" in languages(schema) and script_shares(texts)["cjk_project"] else "en"


def project_texts(client, project_id: int, limit: int = SAMPLE_CHARS) -> list[str]:
    """The text fields of a project's tasks in Label Studio, until about ``limit`` characters (enough to judge a script)."""
    from .. import ls_client

    out, total = [], 0
    for task in ls_client.iter_tasks(client, int(project_id)):
        for value in (task.get("data") or {}).values():
            if isinstance(value, str) and value.strip():
                out.append(value)
                total += len(value)
        if total >= limit:
            break
    return out


def _alive(pid: int | None) -> bool:
    return pid_alive(int(pid)) if pid else False


def _record(db, project_id: int, **row: Any) -> None:
    db[TABLE].create(COLUMNS, pk="project_id", if_not_exists=True)
    db[TABLE].upsert({"project_id": int(project_id), **row}, pk="project_id", alter=True)


def skip_reason(settings, db, schema: str, project_id: int, registry=None, language: str | None = None) -> str:
    """Why a project's starter is not to be trained now ("" when it is): the schema ships none, a starter with this
    key (the set of the documents' language: language_of; None: the language its last starter was trained for)
    was trained (promoted or rejected), a live process trains it, or a trained version already serves the project
    (its annotators got there first). A failed, interrupted, switched-off or missing starter is to be trained, and so
    is the Chinese one of a project whose English starter serves it when Chinese documents came in."""
    if schema not in available():
        return "no starter set"
    from ml_backend.registry import Registry

    prev = state(db, project_id) or {}
    language = language or prev.get("language") or "en"
    encoder = store.get_project_setting(db, project_id, "encoder") or settings.model
    if prev.get("key") == key(schema, encoder, language) and prev.get("status") in ("promoted", "rejected"):
        return f"cached ({prev['status']} {prev.get('version')})"
    if prev.get("status") == "training" and prev.get("pid") != os.getpid() and _alive(prev.get("pid")):
        return f"being trained by pid {prev['pid']}"
    serving = (registry or Registry(settings.backend_settings())).current_version(str(project_id))
    if not serving.startswith("coldstart") and prev.get("version") != serving:
        return f"already served by trained version {serving}"
    return ""


def needed(settings, db, schema: str, project_id: int, language: str | None = None) -> bool:
    """Whether the background training should start for a project: its starter is to be trained (skip_reason)."""
    return not skip_reason(settings, db, schema, project_id, language=language)


def train_missing(settings, echo: Callable[[str], None] = print, options=None, progress: bool = False) -> list[dict]:
    """Train and publish the starter of every goldloop project that lacks one; returns what happened per project.

    Skipped: what skip_reason names. A project without documents is no reason: the version is published, and
    imports are pre-annotated with it. A promoted starter pre-annotates the tasks imported while it trained.
    The background process `goldloop up` starts ends with the stack it publishes to (stop_with_stack).
    """
    db = store.open_db(settings.data_dir.db_path)
    release = stop_with_stack(settings, db)
    try:
        return _train_each(settings, db, echo, options, progress)
    finally:
        release()


def _train_each(settings, db, echo: Callable[[str], None], options, progress: bool) -> list[dict]:
    """train_missing's work: each schema's project in turn, with the set of its documents' language (language_of);
    once more when documents of another language came in while it trained (an import meanwhile starts no second process)."""
    from ml_backend.registry import Registry

    from .. import ls_client

    client = ls_client.connect(settings, db)
    registry = Registry(settings.backend_settings())
    done = []
    for schema in available():
        row = store.get_project_by_name(db, schema)
        if not row:
            continue
        pid = int(row["id"])
        trained = None
        for _ in languages(schema):
            language = language_of(schema, project_texts(client, pid)) if len(languages(schema)) > 1 else "en"
            why = "" if language == trained else skip_reason(settings, db, schema, pid, registry, language)
            if language == trained or why:
                if why and trained is None:
                    echo(f"starter {schema}: skipped, {why}")
                    done.append({"schema": schema, "project_id": pid, "skipped": why})
                break
            done.append(_train_one(settings, db, client, registry, schema, pid, language, echo, options, progress))
            trained = language
    return done


def _train_one(settings, db, client, registry, schema: str, pid: int, language: str, echo: Callable[[str], None], options,
               progress: bool) -> dict:
    """Train, record and publish one project's starter in one language; what happened."""
    from .. import jobs

    encoder = store.get_project_setting(db, pid, "encoder") or settings.model
    started = time.time()
    _record(db, pid, schema=schema, language=language, key=key(schema, encoder, language), encoder=encoder, status="training",
            started_at=started, pid=os.getpid(), version=None, decision=None, duration_s=None)
    echo(f"starter {schema}: training the {language} set for project {pid}")
    sources, maps = inputs(schema, language)
    try:
        recs = jobs.pretrain(settings, pid, sources, maps, options=options, progress=progress, client=client, registry=registry)
        rec = recs[0]  # the starter's version; a distilled student (GOLDLOOP_DISTILL_LAYERS) follows it when promoted
        status, version, decision = rec["status"], recs[-1]["version"] if recs[-1]["status"] == "promoted" else rec["version"], rec.get("decision")
    except Exception as exc:  # one project's failure must not stop the others; the record says why
        log.exception("starter %s failed", schema)
        status, version, decision = "failed", None, f"{type(exc).__name__}: {exc}"
    if status not in ("promoted", "rejected"):
        status = "failed"
    took = round(time.time() - started, 1)
    _record(db, pid, status=status, version=version, decision=decision, duration_s=took, pid=None)
    echo(f"starter {schema}: {status} {version or ''} in {took:.0f} s — {decision}")
    if status == "promoted":
        echo(f"starter {schema}: {pre_annotate_new(settings, client, pid, progress)}")
    return {"schema": schema, "project_id": pid, "language": language, "status": status, "version": version, "duration_s": took}


def pre_annotate_new(settings, client, project_id: int, progress: bool = False) -> str:
    """After a promotion: the serving version's predictions for every task that holds none of it (those imported
    while the starter trained got the cold-start ones), and Label Studio's project version set to it; what was done.
    A failure leaves the version promoted: `goldloop predict PROJECT` does the same later."""
    from .. import ls_client
    from ..errors import ServerError
    from ..predict import run_predict

    try:
        result = run_predict(settings, project_id, client=client, progress=progress)
        if result.predicted:
            ls_client.adopt_model_version(client, project_id, result.version)
    except ServerError as exc:
        log.warning("project %s: pre-annotating the tasks imported meanwhile failed: %s", project_id, exc)
        return f"pre-annotating the tasks imported meanwhile failed ({exc}); run: {run_command(settings, f'goldloop predict {project_id}')}"
    return f"{result.predicted} task(s) imported meanwhile pre-annotated with {result.version}"


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
    """Train the missing starters in a detached, low-priority child (what `goldloop pretrain --starters` runs); returns
    its pid (output in logs/)."""
    cmd = [sys.executable, "-m", "server.starters", "--data-dir", str(settings.home)]  # server/starters/__main__.py
    log_path = settings.data_dir.log(LOG_NAME)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=lambda: os.nice(10))
    return proc.pid


def start(settings, db, projects: list[tuple[str, int]], language: dict[int, str] | None = None) -> str:
    """Train the missing starters of these (schema, project id) pairs in the background process, unless one already
    trains for this data dir (it trains every project that lacks its starter, one after the other: a second one would
    race it); what was done, as `goldloop up` and `goldloop import` show it. language: a project's documents' starter
    language where an import just told it (else the one its last starter was trained for). With the starters
    switched off, the projects that lack theirs are recorded "off": no import starts them, `goldloop up` without the
    switch does."""
    from .. import stack

    missing = [(schema, pid) for schema, pid in projects if needed(settings, db, schema, pid, (language or {}).get(int(pid)))]
    if not settings.starters:
        for schema, pid in missing:
            _record(db, pid, schema=schema, status="off", pid=None, version=None, duration_s=None, decision=OFF)
        return "off"
    running = stack.live_processes(db, store.STARTERS)
    if running:
        return f"training in the background already (pid {', '.join(str(r['pid']) for r in running)}; goldloop status shows progress)"
    if not missing:
        return "none missing"
    pid = start_background(settings)
    # recorded with the stack's processes (one row per pid): `goldloop down` and Ctrl-C stop it (it publishes through the stack)
    store.record_process(db, store.STARTERS, pid, 0, "", str(settings.data_dir.log(LOG_NAME)), COMMAND)
    return f"training {', '.join(schema for schema, _ in missing)} in the background (pid {pid}; goldloop status shows progress)"


def after_import(settings, db, project_id: int, client=None) -> str:
    """What an import into a project means for its starter, as a line for `goldloop import` ("" for nothing to say).

    A missing, failed or interrupted starter — or one for another language than the project's documents are now in
    (an English starter, Chinese notes imported: documents_language) — the background process starts (start) when the
    data dir's own stack runs (the process publishes to it) and no `goldloop up --no-starters` left a project "off";
    else the line says what to run. While the process trains, the imported tasks get the starter's predictions once it
    is promoted (train_missing). Nothing with the starters switched off (GOLDLOOP_STARTERS=0, or this project "off")."""
    from .. import stack

    schema = (store.get_project(db, project_id) or {}).get("schema_name") or ""
    st = state(db, project_id) or {}
    if not settings.starters or st.get("status") == "off" or schema not in available():
        return ""
    training = st.get("status") == "training" and _alive(st.get("pid"))
    language = documents_language(settings, db, schema, project_id, client)
    if not training and skip_reason(settings, db, schema, project_id, language=language):
        return ""  # trained (this key) or a trained version serves the project
    running = [str(r["pid"]) for r in stack.live_processes(db, store.STARTERS)] or ([str(st["pid"])] if training else [])
    if running:
        return (f"training in the background (pid {', '.join(running)}; goldloop status shows progress): "
                "the new tasks get its pre-annotations once it is promoted")
    off = TABLE in db.table_names() and db[TABLE].count_where("status = ?", ["off"]) > 0
    if not off and not settings.ls_url and stack.running_stack(settings, db) is not None:
        return start(settings, db, sorted((r["schema_name"], int(r["id"])) for r in store.list_projects(db) if r.get("schema_name")),
                     {int(project_id): language} if language else None)
    return f"{schema} has no trained starter ({st.get('status') or 'missing'}); run: {run_command(settings)}"


def documents_language(settings, db, schema: str, project_id: int, client=None) -> str | None:
    """The starter language of a project's documents in Label Studio (language_of); None when the schema ships one
    language only, or Label Studio does not answer (then the language the last starter was trained for counts)."""
    from .. import ls_client
    from ..errors import ServerError

    if len(languages(schema)) < 2:
        return None
    try:
        return language_of(schema, project_texts(client or ls_client.connect(settings, db), project_id))
    except ServerError as exc:
        log.warning("project %s: its documents' language is unknown (%s)", project_id, exc)
        return None


def run_command(settings, command: str = COMMAND) -> str:
    """A goldloop command (by default the one that trains the missing starters) for the settings' data dir, as a
    person types it: with --data-dir unless the data dir is the default one."""
    import shlex

    from ..config import DEFAULT_HOME

    home = Path(settings.home).expanduser()
    return command if home.resolve() == DEFAULT_HOME.resolve() else f"{command} --data-dir {shlex.quote(str(home))}"


def status_line(db, project_id: int, schema: str | None = None, run: str = COMMAND) -> str | None:
    """One line for `goldloop status`: where the project's starter stands; for a missing (schema given), failed,
    interrupted or switched-off one while no trained version serves the project, the command that trains it (run)."""
    st = state(db, project_id)
    served = any(v.get("status") == "promoted" for v in store.list_versions(db, int(project_id)))
    hint = "" if served else f"; run: {run}"
    if not st:
        return f"starter not trained{hint}" if schema in available() and hint else None
    if st["status"] == "training":
        if _alive(st.get("pid")):
            since = time.strftime("%H:%M:%S", time.localtime(st["started_at"]))
            return f"starter training since {since} (pid {st['pid']})"
        return f"starter training was interrupted{hint}"
    if st["status"] == "off":
        return f"starter off ({OFF}){hint}"
    took = f" in {st['duration_s']:.0f} s" if st.get("duration_s") is not None else ""
    lang = f" ({st['language']} set)" if st.get("language") not in (None, "en") else ""
    line = f"starter {st['status']} {st.get('version') or ''}{lang}{took} — {st.get('decision') or ''}".replace("  ", " ")
    return line + hint if st["status"] == "failed" else line
