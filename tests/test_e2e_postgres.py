"""End to end on a real PostgreSQL: `goldloop up --database URL` runs Label Studio on it (projects, an import, status,
no SQLite file, no password in output or logs); `goldloop migrate-db` moves a labeled SQLite data dir to it with equal
counts and contents."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import psycopg
import pytest

from server import database, ls_client, procs, stack, store
from server.config import Settings, local_url
from server.datadir import DataDir
from server.up import project_summaries
from tests.plugins.label_studio import copy_home, free_port, goldloop
from tests.plugins.postgres import PG_PASSWORD, home_without_sqlite

pytestmark = pytest.mark.e2e
SCHEMAS = {"contracts", "financial_news", "medical_records"}


def _ports() -> tuple[int, int]:
    ls_port, be_port = free_port(), free_port()
    while be_port == ls_port:
        be_port = free_port()
    return ls_port, be_port


def _client(home: Path):
    db = store.open_db(DataDir(home).db_path)
    return ls_client.connect(Settings(home=home), db), db


def _stop(home: Path) -> None:
    db = store.open_db(DataDir(home).db_path)
    pids = [p["pid"] for p in store.list_processes(db)]
    goldloop("down", home=home, check=False)
    for pid in pids:  # never leave a server behind, even when down failed
        if procs.pid_alive(pid):
            stack.stop_pid(pid)


def _no_password_anywhere(home: Path, *outputs: str) -> None:
    for text in outputs:
        assert PG_PASSWORD not in text
    for log in DataDir(home).logs.glob("*.log"):
        assert PG_PASSWORD not in log.read_text(errors="replace"), log
    assert PG_PASSWORD not in (DataDir(home).db_path.read_bytes().decode("latin-1"))


def _rows(url: str, sql: str) -> int:
    db = database.parse_url(url)
    with psycopg.connect(host=db.host, port=db.port, dbname=db.name, user=db.user, password=db.password) as conn:
        return int(conn.execute(sql).fetchone()[0])


@pytest.fixture(scope="module")
def pg_up(postgres_server, pg_ls_template, ls_template, tmp_path_factory):
    """`goldloop up --detach --no-samples --database URL` on a data dir that never ran Label Studio."""
    home = home_without_sqlite(ls_template, tmp_path_factory.mktemp("pg-up") / "home")
    url = postgres_server.create_database("e2e_up", template=pg_ls_template)
    ls_port, be_port = _ports()
    try:
        result = goldloop("up", "--detach", "--no-samples", "--ls-port", str(ls_port), "--backend-port", str(be_port), "--database", url, home=home)
        yield {"home": home, "url": url, "stdout": result.stdout + result.stderr, "ls_port": ls_port}
    finally:
        _stop(home)


def test_up_on_postgresql_creates_the_projects_there(pg_up, postgres_server):
    shown = f"postgresql://goldloop@127.0.0.1:{postgres_server.port}/e2e_up"
    assert f"database    {shown}" in pg_up["stdout"]
    client, db = _client(pg_up["home"])
    projects = {p["schema"]: p for p in project_summaries(client, db)}
    assert set(projects) == SCHEMAS
    assert _rows(pg_up["url"], "SELECT count(*) FROM project") == 3


def test_imported_document_lands_in_postgresql(pg_up, tmp_path):
    text = "This Supply Agreement is made between Acme Ltd and Example Corp; the term is two years from the effective date."
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"text": text}) + "\n")
    out = goldloop("import", "contracts", str(path), "--no-predict", home=pg_up["home"])
    assert "imported 1 new task(s)" in out.stdout
    client, db = _client(pg_up["home"])
    pid = store.get_project_by_name(db, "contracts")["id"]
    assert [t["data"]["text"] for t in ls_client.iter_tasks(client, pid)] == [text]
    assert _rows(pg_up["url"], f"SELECT count(*) FROM task WHERE project_id = {int(pid)}") == 1


def test_status_names_postgresql_and_nothing_went_to_sqlite(pg_up, postgres_server):
    shown = f"postgresql://goldloop@127.0.0.1:{postgres_server.port}/e2e_up"
    status = goldloop("status", home=pg_up["home"])
    assert f"database      {shown}" in status.stdout
    assert json.loads(goldloop("status", "--json", home=pg_up["home"]).stdout)["database"] == shown
    # a later `up` without --database stays on PostgreSQL
    again = goldloop("up", "--detach", "--no-samples", home=pg_up["home"])
    assert f"database    {shown}" in again.stdout and "already running" in again.stdout
    data_dir = DataDir(pg_up["home"])
    assert not list(data_dir.ls_data.rglob("*.sqlite3"))
    _no_password_anywhere(pg_up["home"], pg_up["stdout"], status.stdout, again.stdout + again.stderr)


# --- moving a labeled SQLite data dir ------------------------------------------------------------


def _snapshot(client) -> dict:
    """Everything that must survive the move, by project id."""
    emails = {u.id: u.email for u in client.users.list()}
    out = {}
    for p in ls_client.list_projects(client):
        tasks = []
        for t in ls_client.iter_tasks(client, p.id):
            anns = sorted(
                (json.dumps(a["result"], sort_keys=True), emails[a["completed_by"]], a.get("lead_time"), a.get("was_cancelled"))
                for a in t.get("annotations") or []
            )
            preds = sorted((json.dumps(x["result"], sort_keys=True), x.get("score"), x.get("model_version")) for x in t.get("predictions") or [])
            tasks.append((json.dumps(t["data"], sort_keys=True), anns, preds))
        views = sorted(json.dumps((v.data or {}).get("ordering")) for v in client.views.list(project=p.id))
        out[p.id] = {"title": p.title, "label_config": p.label_config, "description": p.description, "model_version": p.model_version,
                     "min_annotations_to_start_training": p.min_annotations_to_start_training, "sampling": p.sampling,
                     "tasks": sorted(tasks, key=json.dumps), "views": views, "ml_backends": len(client.ml.list(project=p.id))}  # fmt: skip
    return out


def _label(client, db) -> None:
    """Annotations by the admin and by a second annotator, and a Data Manager view, in the SQLite source."""
    client.users.create(email="annotator2@goldloop.local", username="annotator2")
    for schema in ("contracts", "medical_records"):
        pid = store.get_project_by_name(db, schema)["id"]
        tasks = list(ls_client.iter_tasks(client, pid))[:3]
        for t in tasks:  # the model's pre-annotation accepted as the label
            ls_client.create_annotation(client, t["id"], t["predictions"][0]["result"], lead_time=2.5)
        ls_client.ensure_view_ordered_by_score(client, pid)
    pid = store.get_project_by_name(db, "financial_news")["id"]
    task = next(ls_client.iter_tasks(client, pid))
    client.projects.import_tasks(id=pid, request=[{
        "data": {"text": "Shares of Example Corp fell 4% after the company cut its outlook."},
        "annotations": [{"result": task["predictions"][0]["result"], "completed_by": {"email": "annotator2@goldloop.local"}, "lead_time": 7.0}],
    }])  # fmt: skip


def test_migrate_sqlite_data_dir_to_postgresql(ls_template, postgres_server, pg_ls_template, tmp_path):
    home = copy_home(ls_template, tmp_path / "home")
    ls_port, be_port = _ports()
    be_before = local_url(be_port)
    try:
        goldloop("up", "--detach", "--ls-port", str(ls_port), "--backend-port", str(be_port), home=home)  # SQLite, samples pre-annotated
        client, db = _client(home)
        _label(client, db)
        before = _snapshot(client)
    finally:
        _stop(home)
    assert sum(len(p["tasks"]) for p in before.values()) > 10
    assert sum(len(t[1]) for p in before.values() for t in p["tasks"]) == 7
    url = postgres_server.create_database("e2e_move", template=pg_ls_template)
    moved = goldloop("migrate-db", "--to", url, home=home)
    assert "verified" in moved.stdout and PG_PASSWORD not in moved.stdout + moved.stderr
    assert database.current(DataDir(home)) == database.parse_url(url)
    sqlite_file = DataDir(home).ls_sqlite_path
    sqlite_hash = hashlib.sha256(sqlite_file.read_bytes()).hexdigest()

    ls_port, be_port = _ports()
    try:
        up = goldloop("up", "--detach", "--no-samples", "--ls-port", str(ls_port), "--backend-port", str(be_port), home=home)
        assert f"postgresql://goldloop@127.0.0.1:{postgres_server.port}/e2e_move" in up.stdout
        client, db = _client(home)
        after = _snapshot(client)
        # the description's dashboard link follows the backend to its new port; the rest must be what it was
        for pid, p in after.items():
            assert p["description"] == before[pid]["description"].replace(be_before, local_url(be_port)), p["description"]
            assert f"{local_url(be_port)}/dashboard?project={pid}" in p["description"]
            p["description"] = before[pid]["description"]
        assert after == before  # same project ids, settings, tasks, annotations (with annotators), predictions, views
        for pid in after:  # the backend is connected again, at its new port
            assert [b.url.rstrip("/") for b in client.ml.list(project=pid)] == [local_url(be_port)]
        imported = [i for row in store.list_imports(db) for i in row["task_ids"]]
        assert imported and all(ls_client.get_task(client, i)["id"] == i for i in imported[:5])
        assert _rows(url, "SELECT count(*) FROM task_completion") == 7
    finally:
        _stop(home)
    assert hashlib.sha256(sqlite_file.read_bytes()).hexdigest() == sqlite_hash  # Label Studio on PostgreSQL left it alone
    _no_password_anywhere(home, moved.stdout + moved.stderr, up.stdout + up.stderr)
