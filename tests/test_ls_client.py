"""server.ls_client and `goldloop import` against a real Label Studio (no ML backend): projects, imports, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from server import ls_client, stack, store
from server.cli import main
from server.errors import ConfigError, LabelStudioError, ProjectNotFound

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "server" / "samples"


def sample_texts(schema: str, n: int | None = None) -> list[str]:
    """Texts of the repo's sample documents of a schema."""
    lines = (SAMPLES / schema / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(ln)["text"] for ln in lines if ln.strip()][:n]


@pytest.fixture(scope="module")
def ls(label_studio_module):
    """The module's Label Studio, with one project per repo schema (no backend connected)."""
    s = label_studio_module.settings.with_overrides(ls_url=label_studio_module.url, ls_api_key=label_studio_module.token)
    db = store.open_db(s.db_path)
    client = ls_client.connect(s, db)
    for schema in ls_client.load_schemas():
        ls_client.ensure_project(client, schema, s, db)
    return label_studio_module, s, db, client


def cli(ls, *args: str):
    """Run the CLI in-process against the module's data dir."""
    running = ls[0]
    return CliRunner().invoke(main, [*args, "--data-dir", str(running.settings.home)], catch_exceptions=False)


def one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


# --- projects ------------------------------------------------------------------------------------


def test_one_project_per_schema_idempotent(ls):
    _, s, db, client = ls
    before = {p["schema_name"]: p["id"] for p in store.list_projects(db)}
    assert set(before) >= {"contracts", "financial_news", "medical_records"}
    for schema in ls_client.load_schemas():
        project, sync = ls_client.ensure_project(client, schema, s, db)
        assert project.id == before[schema.name] and not sync.changed
        assert project.title == schema.title
        assert project.min_annotations_to_start_training == s.min_annotations_to_train
    assert len([p for p in ls_client.list_projects(client) if ls_client._schema_name_of(p)]) == len(before)


def test_changed_schema_updates_the_labeling_config(ls, tmp_path):
    _, s, db, client = ls
    xml = (ROOT / "schemas" / "financial_news.xml").read_text().replace('<Choice value="neutral"/>', '<Choice value="neutral"/><Choice value="mixed"/>')
    (tmp_path / "financial_news.xml").write_text(xml)
    schema = ls_client.load_schema(tmp_path / "financial_news.xml")
    project, sync = ls_client.ensure_project(client, schema, s, db)
    assert sync.config_updated and "mixed" in ls_client.get_project(client, project.id).label_config
    assert store.get_project(db, project.id)["config_hash"] == schema.config_hash
    # back to the repo's schema
    original = ls_client.load_schema(ROOT / "schemas" / "financial_news.xml")
    _, sync = ls_client.ensure_project(client, original, s, db)
    assert sync.config_updated


def test_schema_that_label_studio_rejects(ls, tmp_path):
    _, s, db, client = ls
    path = tmp_path / "clash.xml"
    path.write_text('<View><Text name="text" value="$text"/><Labels name="text" toName="text"><Label value="A"/></Labels></View>')
    with pytest.raises(ConfigError, match=r"Label Studio rejects schema .*clash.xml.*non-unique names"):
        ls_client.ensure_project(client, ls_client.load_schema(path), s, db)
    assert store.get_project_by_name(db, "clash") is None


def test_resolve_project_by_id_and_name(ls):
    _, _, db, client = ls
    row = store.get_project_by_name(db, "contracts")
    assert ls_client.resolve_project(client, "contracts", db).id == row["id"]
    assert ls_client.resolve_project(client, str(row["id"]), db).id == row["id"]
    assert ls_client.resolve_project(client, "contracts", None).id == row["id"]  # by the description marker
    with pytest.raises(ProjectNotFound, match=r"unknown project 'nope'.*contracts"):
        ls_client.resolve_project(client, "nope", db)
    with pytest.raises(ProjectNotFound):
        ls_client.resolve_project(client, "99999", db)


def test_view_ordered_by_score_is_created_once(ls):
    _, _, db, client = ls
    pid = store.get_project_by_name(db, "contracts")["id"]
    assert ls_client.ensure_view_ordered_by_score(client, pid) == ls_client.ensure_view_ordered_by_score(client, pid)


# --- imports -------------------------------------------------------------------------------------


def test_import_pages_dedups_and_reimport_adds_nothing(ls, tmp_path):
    _, s, db, client = ls
    texts = sample_texts("financial_news")
    path = write_jsonl(tmp_path / "news.jsonl", [{"text": t} for t in texts])
    out = ls_client.import_files(client, s.with_overrides(import_batch_size=7), db, "financial_news", [path], progress=False)
    assert len(out.task_ids) == out.report.kept > 10
    pid = out.project_id
    tasks = list(ls_client.iter_tasks(client, pid, page_size=4))  # several pages, no request past the end
    assert len(tasks) == len(out.task_ids)
    assert all(isinstance(t["data"]["text"], str) and "predictions" in t and "annotations" in t for t in tasks)
    again = ls_client.import_files(client, s, db, "financial_news", [path], progress=False)
    assert again.task_ids == []
    assert len(list(ls_client.iter_tasks(client, pid))) == len(tasks)
    rows = store.list_imports(db, pid)
    assert [r["imported"] for r in rows[-2:]] == [len(tasks), 0]


def test_jsonl_with_a_bad_line_keeps_going(ls, tmp_path):
    texts = sample_texts("contracts", 3)
    path = write_jsonl(tmp_path / "contracts.jsonl", [{"text": texts[0]}, "{not json", {"text": texts[1]}, {"body": "x"}, {"text": texts[2]}])
    result = cli(ls, "import", "contracts", str(path), "--no-predict")
    assert result.exit_code == 0, result.output
    assert "line 2" in result.output and "line 4" in result.output
    assert "imported 3 new task(s)" in result.output


def test_pii_masked_for_medical_records_by_default(ls, tmp_path):
    _, s, db, client = ls
    text = "Patient seen for migraine; contact jane.doe@example.com or +1 415 555 0100 for follow-up of the aura episodes."
    path = write_jsonl(tmp_path / "pii.jsonl", [{"text": text}])
    med = ls_client.import_files(client, s, db, "medical_records", [path], progress=False, pre_annotate=False)
    (task,) = [ls_client.get_task(client, t) for t in med.task_ids]
    assert "jane.doe@example.com" not in task["data"]["text"]
    con = ls_client.import_files(client, s, db, "contracts", [path], progress=False, pre_annotate=False)
    (task,) = [ls_client.get_task(client, t) for t in con.task_ids]
    assert "jane.doe@example.com" in task["data"]["text"]


def test_failed_import_reports_exactly_what_went_in(ls, tmp_path, monkeypatch):
    _, s, db, client = ls
    texts = sample_texts("medical_records", 6)
    path = write_jsonl(tmp_path / "med.jsonl", [{"text": t + " (copy for the failure test)"} for t in texts])
    real = client.projects.import_tasks
    calls = {"n": 0}

    def flaky(**kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ls_client.ApiError(status_code=500, body={"detail": "disk full"})
        return real(**kw)

    monkeypatch.setattr(client.projects, "import_tasks", flaky)
    with pytest.raises(LabelStudioError, match=r"disk full; 3 task\(s\) went in before \(ids \d+-\d+\)"):
        ls_client.import_files(client, s.with_overrides(import_batch_size=3), db, "medical_records", [path], progress=False, mask_pii=False)
    last = store.list_imports(db)[-1]
    assert last["status"] == "partial" and len(last["task_ids"]) == 3
    for tid in last["task_ids"]:
        assert ls_client.get_task(client, tid)["data"]["text"].endswith("(copy for the failure test)")


def test_import_without_backend_warns(ls, tmp_path):
    path = write_jsonl(tmp_path / "one.jsonl", [{"text": "A short supply agreement between Acme Corp and Beta LLC, governed by Delaware law."}])
    result = cli(ls, "import", "contracts", str(path))
    assert result.exit_code == 0, result.output
    assert "no ML backend connected" in result.output


# --- bad input through the CLI -------------------------------------------------------------------


def test_cli_unknown_project(ls, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "whatever text long enough to keep"}])
    line = one_line_error(cli(ls, "import", "no_such_schema", str(path)))
    assert "unknown project 'no_such_schema'" in line and "contracts" in line


def test_cli_non_utf8_file(ls, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Café contract, signed in Zürich".encode("latin-1"))
    line = one_line_error(cli(ls, "import", "contracts", str(path)))
    assert "not UTF-8" in line


def test_cli_binary_file(ls, tmp_path):
    path = tmp_path / "scan.txt"
    path.write_bytes(b"%PDF-1.4\x00\x01\x02binary")
    line = one_line_error(cli(ls, "import", "contracts", str(path)))
    assert "binary file" in line


def test_cli_csv_without_text_column(ls, tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text("id,body\n1,Some contract text between two parties\n", encoding="utf-8")
    line = one_line_error(cli(ls, "import", "contracts", str(path)))
    assert "no 'text' column" in line and "body" in line
    ok = cli(ls, "import", "contracts", str(path), "--text-column", "body", "--no-predict")
    assert ok.exit_code == 0, ok.output


def test_cli_missing_file(ls, tmp_path):
    result = cli(ls, "import", "contracts", str(tmp_path / "nope.jsonl"))
    assert result.exit_code != 0 and "does not exist" in result.output


def test_cli_import_when_label_studio_is_down(tmp_path):
    home = tmp_path / "home"
    settings = stack.Settings(home=home, ls_port=stack.free_port())
    stack.ensure_data_dir(home)
    stack.read_or_create_token(settings)
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "whatever text long enough to keep"}])
    result = CliRunner().invoke(
        main, ["import", "contracts", str(path), "--data-dir", str(home)], env={"GOLDLOOP_LS_PORT": str(settings.ls_port)}, catch_exceptions=False
    )
    line = one_line_error(result)
    assert "not reachable" in line and "goldloop up" in line
