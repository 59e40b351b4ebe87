"""Label Studio's database: URL parsing, the environment Label Studio gets, the data dir's remembered choice, the
reachability check against a real PostgreSQL and against a port where nothing listens."""
from __future__ import annotations

import os
import stat
import time

import pytest
from click.testing import CliRunner

from server import database, stack
from server.cli import main
from server.config import Settings
from server.database import Database, parse_url
from server.datadir import DataDir
from server.errors import ConfigError, StackError
from tests.plugins.label_studio import one_line_error

PASSWORD = "p@ss:w/rd"
URL = "postgresql://alice:p%40ss%3Aw%2Frd@db.example.org:6543/labels"


def test_parse_postgresql_url_with_escaped_password():
    db = parse_url(URL)
    assert (db.kind, db.user, db.password, db.host, db.port, db.name) == ("postgresql", "alice", PASSWORD, "db.example.org", 6543, "labels")
    assert db.display() == "postgresql://alice@db.example.org:6543/labels"
    assert PASSWORD not in repr(db) and "p%40ss" not in db.display()
    assert parse_url(db.url()) == db  # the remembered form reads back the same


def test_parse_defaults_port_and_accepts_postgres_scheme_and_sqlite():
    db = parse_url("postgres://bob@localhost/x")
    assert (db.port, db.password, db.display()) == (5432, "", "postgresql://bob@localhost:5432/x")
    assert parse_url("sqlite") == database.SQLITE_DATABASE
    assert parse_url("sqlite").display() == "sqlite"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u:p@h/db", "scheme 'mysql'"),
        ("localhost:5432/db", "scheme"),
        ("postgresql://u:p@h:99999/db", "port"),
        ("postgresql://u:p@h:abc/db", "port"),
        ("postgresql://u:p@h:5432", "no database name"),
        ("postgresql://u:p@h:5432/", "no database name"),
        ("postgresql://:p@h/db", "no user"),
        ("postgresql://u:p@/db", "no host"),
        ("postgresql://u:p@h/db?sslmode=require", "query parameters"),
        ("", "no scheme"),
    ],
)
def test_bad_urls_are_one_line_errors_without_the_password(url, expected):
    with pytest.raises(ConfigError) as info:
        parse_url(url)
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert ":p@" not in message


def test_ls_env_points_label_studio_at_postgresql_and_overrides_inherited_spellings():
    env = {"LABEL_STUDIO_POSTGRE_HOST": "elsewhere", "HEARTEX_DJANGO_DB": "sqlite", "POSTGRE_PORT": "1", "PATH": "/bin"}
    out = database.apply_ls_env(env, parse_url(URL))
    assert {k: out[k] for k in database.LS_VARIABLES} == {
        "DJANGO_DB": "default", "POSTGRE_NAME": "labels", "POSTGRE_USER": "alice", "POSTGRE_PASSWORD": PASSWORD,
        "POSTGRE_HOST": "db.example.org", "POSTGRE_PORT": "6543",
    }  # fmt: skip
    assert "LABEL_STUDIO_POSTGRE_HOST" not in out and "HEARTEX_DJANGO_DB" not in out and out["PATH"] == "/bin"
    assert out["PGCONNECT_TIMEOUT"] == str(database.CONNECT_TIMEOUT_S)
    sqlite_env = database.apply_ls_env({"DJANGO_DB": "default", "POSTGRE_NAME": "x"}, database.SQLITE_DATABASE)
    assert sqlite_env == {"DJANGO_DB": "sqlite"}


def test_label_studio_env_follows_the_data_dir(tmp_path):
    settings = Settings(home=tmp_path / "home", admin_password="pw")
    settings.data_dir.ensure()
    assert stack.label_studio_env(settings, "t" * 40, base={})["DJANGO_DB"] == "sqlite"
    database.remember(settings.data_dir, parse_url(URL))
    env = stack.label_studio_env(settings, "t" * 40, base={})
    assert (env["DJANGO_DB"], env["POSTGRE_HOST"], env["POSTGRE_PASSWORD"]) == ("default", "db.example.org", PASSWORD)


def test_remembered_choice_is_private_and_survives(tmp_path):
    data_dir = DataDir(tmp_path)
    assert database.remembered(data_dir) is None
    chosen, switched = database.choose(data_dir, URL)
    assert (chosen, switched) == (parse_url(URL), False)
    assert not data_dir.database_path.exists()  # remembered only once it answered
    database.remember(data_dir, chosen)
    assert stat.S_IMODE(os.stat(data_dir.database_path).st_mode) == 0o600
    assert database.choose(data_dir, None) == (parse_url(URL), False)  # a later `up` without the flag
    # same database, new password: accepted and remembered
    new = URL.replace("p%40ss%3Aw%2Frd", "other")
    assert database.choose(data_dir, new) == (parse_url(new), False)


def test_fresh_data_dir_defaults_to_sqlite(tmp_path):
    data_dir = DataDir(tmp_path)
    assert database.choose(data_dir, None) == (database.SQLITE_DATABASE, False)
    database.remember(data_dir, database.SQLITE_DATABASE)
    assert data_dir.database_path.read_text().strip() == "sqlite"
    with pytest.raises(ConfigError, match="keeps Label Studio's data in sqlite"):
        database.choose(data_dir, URL)


def test_switching_an_existing_data_dir_is_refused_unless_asked(tmp_path):
    data_dir = DataDir(tmp_path)
    data_dir.ls_data.mkdir(parents=True)
    data_dir.ls_sqlite_path.write_bytes(b"")  # a data dir from before the choice was remembered: SQLite
    with pytest.raises(ConfigError, match="migrate-db") as info:
        database.choose(data_dir, URL)
    assert PASSWORD not in str(info.value) and "postgresql://alice@db.example.org:6543/labels" in str(info.value)
    with pytest.raises(ConfigError, match="stop it first"):
        database.choose(data_dir, URL, switch=True, running=True)
    assert database.choose(data_dir, URL, switch=True) == (parse_url(URL), True)
    database.remember(data_dir, parse_url(URL))
    with pytest.raises(ConfigError, match="keeps Label Studio's data in postgresql://alice@db.example.org:6543/labels"):
        database.choose(data_dir, "sqlite")
    other_db = URL.replace("/labels", "/other")
    with pytest.raises(ConfigError):
        database.choose(data_dir, other_db)


def test_nothing_listening_is_a_quick_clear_error():
    db = parse_url(f"postgresql://alice:{PASSWORD.replace('@', '%40').replace(':', '%3A').replace('/', '%2F')}@127.0.0.1:{stack.free_port()}/x")
    t0 = time.monotonic()
    with pytest.raises(StackError) as info:
        database.check_reachable(db)
    assert time.monotonic() - t0 < 10
    message = str(info.value)
    assert message.startswith(f"PostgreSQL at postgresql://alice@127.0.0.1:{db.port}/x is not reachable")
    assert PASSWORD not in message and "\n" not in message


def test_up_with_a_bad_url_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["up", "--data-dir", str(tmp_path / "home"), "--database", "postgresql://u:hunter2@h:notaport/db"])
    line = one_line_error(result)
    assert "port" in line and "hunter2" not in result.output


def test_up_with_an_unreachable_database_fails_before_starting_anything(tmp_path):
    port = stack.free_port()
    result = CliRunner().invoke(main, ["up", "--data-dir", str(tmp_path / "home"), "--database", f"postgresql://u:hunter2@127.0.0.1:{port}/db"])
    line = one_line_error(result)
    assert f"PostgreSQL at postgresql://u@127.0.0.1:{port}/db is not reachable" in line and "hunter2" not in result.output
    assert not (tmp_path / "home" / "logs" / "label-studio.log").exists()
    assert database.remembered(DataDir(tmp_path / "home")) is None  # the next `up` may name another database


def test_status_names_the_database_without_its_password(tmp_path):
    home = tmp_path / "home"
    DataDir(home).ensure()
    database.remember(DataDir(home), parse_url(URL))
    from server.up import status_report

    assert status_report(Settings(home=home), None)["database"] == "postgresql://alice@db.example.org:6543/labels"


# --- a real PostgreSQL ---------------------------------------------------------------------------


def test_real_postgresql_answers_with_its_version(postgres_server):
    db = Database("postgresql", postgres_server.host, postgres_server.port, "postgres", postgres_server.user, postgres_server.password)
    assert database.check_reachable(db).startswith("15")


def test_real_postgresql_wrong_password_and_missing_database(postgres_server):
    wrong = parse_url(postgres_server.url("postgres", password="not-the-password"))
    with pytest.raises(StackError, match="password authentication failed") as info:
        database.check_reachable(wrong)
    assert "not-the-password" not in str(info.value)
    with pytest.raises(StackError, match='database "no_such_db" does not exist'):
        database.check_reachable(parse_url(postgres_server.url("no_such_db")))


# --- goldloop migrate-db: what is refused before anything starts, and the task format ---------------


def test_task_payload_keeps_annotators_by_email_and_prediction_versions():
    from server.dbmove import task_payload

    task = {
        "id": 7, "data": {"text": "x"}, "meta": {"source": "a.jsonl"},
        "annotations": [{"id": 3, "result": [{"type": "choices"}], "completed_by": 2, "lead_time": 4.5, "was_cancelled": False,
                         "ground_truth": False, "created_at": "2026-01-01"}],
        "predictions": [{"id": 9, "result": [{"type": "labels"}], "score": 0.25, "model_version": "v3", "task": 7}],
    }  # fmt: skip
    assert task_payload(task, {2: "ann@example.org"}) == {
        "data": {"text": "x"}, "meta": {"source": "a.jsonl"},
        "annotations": [{"result": [{"type": "choices"}], "was_cancelled": False, "ground_truth": False, "lead_time": 4.5,
                         "completed_by": {"email": "ann@example.org"}}],
        "predictions": [{"result": [{"type": "labels"}], "score": 0.25, "model_version": "v3"}],
    }  # fmt: skip


def _migrate(home, *args):
    return CliRunner().invoke(main, ["migrate-db", "--data-dir", str(home), *args])


def test_migrate_db_refusals_are_one_line_errors(tmp_path):
    home = tmp_path / "home"
    assert "nothing to move" in one_line_error(_migrate(home, "--to", URL))
    from server import store

    DataDir(home).ensure()
    store.open_db(DataDir(home).db_path)
    assert "port" in one_line_error(_migrate(home, "--to", "postgresql://u:hunter2@h:x/db"))
    database.remember(DataDir(home), parse_url(URL))
    line = one_line_error(_migrate(home, "--to", URL.replace("p%40ss%3Aw%2Frd", "new")))
    assert "already runs on postgresql://alice@db.example.org:6543/labels" in line
    database.remember(DataDir(home), database.SQLITE_DATABASE)
    port = stack.free_port()
    result = _migrate(home, "--to", f"postgresql://u:hunter2@127.0.0.1:{port}/db")
    assert "is not reachable" in one_line_error(result) and "hunter2" not in result.output
    assert database.current(DataDir(home)) == database.SQLITE_DATABASE  # a failed move leaves the data dir where it was


def test_migrate_db_refuses_while_the_stack_runs(tmp_path):
    import subprocess
    import sys

    from server import store

    home = tmp_path / "home"
    DataDir(home).ensure()
    db = store.open_db(DataDir(home).db_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store.record_process(db, store.LABEL_STUDIO, sleeper.pid, 1, "http://127.0.0.1:1", str(tmp_path / "ls.log"), "label-studio")
        assert "stop it first (goldloop down)" in one_line_error(_migrate(home, "--to", URL))
    finally:
        sleeper.kill()
        sleeper.wait()
