"""server.ls_client: projects, views and tasks against a real Label Studio (no ML backend); where it connects to;
how pre-annotation requests are batched."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from server import ls_client, stack, store
from server.cli import main
from server.config import Settings
from server.errors import ProjectNotFound
from tests.plugins.label_studio import one_line_error, write_jsonl

e2e = pytest.mark.e2e


# --- projects ------------------------------------------------------------------------------------


@e2e
def test_resolve_project_by_id_and_name(ls_projects):
    _, _, db, client = ls_projects
    row = store.get_project_by_name(db, "contracts")
    assert ls_client.resolve_project(client, "contracts", db).id == row["id"]
    assert ls_client.resolve_project(client, str(row["id"]), db).id == row["id"]
    assert ls_client.resolve_project(client, "contracts", None).id == row["id"]  # by the description marker
    with pytest.raises(ProjectNotFound, match=r"unknown project 'nope'.*contracts"):
        ls_client.resolve_project(client, "nope", db)
    with pytest.raises(ProjectNotFound):
        ls_client.resolve_project(client, "99999", db)


@e2e
def test_view_ordered_by_score_is_created_once(ls_projects):
    _, _, db, client = ls_projects
    pid = store.get_project_by_name(db, "contracts")["id"]
    assert ls_client.ensure_view_ordered_by_score(client, pid) == ls_client.ensure_view_ordered_by_score(client, pid)


# --- connection ----------------------------------------------------------------------------------


def test_label_studio_url_prefers_settings_then_the_recorded_process(tmp_path):
    settings = Settings(home=tmp_path, ls_port=18555)
    db = store.open_db(settings.data_dir.db_path)
    assert ls_client.label_studio_url(settings, db) == "http://127.0.0.1:18555"
    store.record_process(db, store.LABEL_STUDIO, 1, 18666, "http://127.0.0.1:18666", "ls.log", "label-studio")
    assert ls_client.label_studio_url(settings, db) == "http://127.0.0.1:18666"
    assert ls_client.label_studio_url(settings.with_overrides(ls_url="http://elsewhere:8080"), db) == "http://elsewhere:8080"


@e2e
def test_cli_import_when_label_studio_is_down(tmp_path):
    home = tmp_path / "home"
    settings = Settings(home=home, ls_port=stack.free_port())
    settings.data_dir.ensure()
    settings.data_dir.read_or_create_token()
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "whatever text long enough to keep"}])
    result = CliRunner().invoke(
        main, ["import", "contracts", str(path), "--data-dir", str(home)], env={"GOLDLOOP_LS_PORT": str(settings.ls_port)}, catch_exceptions=False
    )
    line = one_line_error(result)
    assert "not reachable" in line and "goldloop up" in line


# --- predictions ---------------------------------------------------------------------------------


def test_prediction_batches_are_sized_by_characters_and_count():
    tasks = [(1, 100), (2, 100), (3, 900), (4, 50), (5, 5000), (6, 10), (7, 10), (8, 10)]
    batches = ls_client.prediction_batches(tasks, max_chars=1000, max_tasks=3)
    assert [t for b in batches for t in b] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert batches == [[1, 2], [3, 4], [5], [6, 7, 8]]
    for b in batches:
        chars = sum(dict(tasks)[t] for t in b)
        assert len(b) <= 3 and (chars <= 1000 or len(b) == 1)
