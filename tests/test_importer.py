"""server.importer and `goldloop import` against a real Label Studio (no ML backend): paging, dedup, PII masking,
partial failures, bad input."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from server import ls_client, store
from server.cli import main
from server.errors import LabelStudioError
from server.importer import import_files
from tests.plugins.label_studio import one_line_error, sample_texts, write_jsonl

pytestmark = pytest.mark.e2e


def cli(ls_projects, *args: str):
    """Run the CLI in-process against the module's data dir."""
    running = ls_projects[0]
    return CliRunner().invoke(main, [*args, "--data-dir", str(running.settings.home)], catch_exceptions=False)


# --- imports -------------------------------------------------------------------------------------


def test_import_pages_dedups_and_reimport_adds_nothing(ls_projects, tmp_path):
    _, s, db, client = ls_projects
    texts = sample_texts("financial_news")
    path = write_jsonl(tmp_path / "news.jsonl", [{"text": t} for t in texts])
    out = import_files(client, s.with_overrides(import_batch_size=7), db, "financial_news", [path], progress=False)
    assert len(out.task_ids) == out.report.kept > 10
    pid = out.project_id
    tasks = list(ls_client.iter_tasks(client, pid, page_size=4))  # several pages, no request past the end
    assert len(tasks) == len(out.task_ids)
    assert all(isinstance(t["data"]["text"], str) and "predictions" in t and "annotations" in t for t in tasks)
    again = import_files(client, s, db, "financial_news", [path], progress=False)
    assert again.task_ids == []
    assert len(list(ls_client.iter_tasks(client, pid))) == len(tasks)
    rows = store.list_imports(db, pid)
    assert [r["imported"] for r in rows[-2:]] == [len(tasks), 0]


def test_jsonl_with_a_bad_line_keeps_going(ls_projects, tmp_path):
    texts = sample_texts("contracts", 3)
    path = write_jsonl(tmp_path / "contracts.jsonl", [{"text": texts[0]}, "{not json", {"text": texts[1]}, {"body": "x"}, {"text": texts[2]}])
    result = cli(ls_projects, "import", "contracts", str(path), "--no-predict")
    assert result.exit_code == 0, result.output
    assert "line 2" in result.output and "line 4" in result.output
    assert "imported 3 new task(s)" in result.output


def test_pii_masked_for_medical_records_by_default(ls_projects, tmp_path):
    _, s, db, client = ls_projects
    text = "Patient seen for migraine; contact jane.doe@example.com or +1 415 555 0100 for follow-up of the aura episodes."
    path = write_jsonl(tmp_path / "pii.jsonl", [{"text": text}])
    med = import_files(client, s, db, "medical_records", [path], progress=False, pre_annotate=False)
    (task,) = [ls_client.get_task(client, t) for t in med.task_ids]
    assert "jane.doe@example.com" not in task["data"]["text"]
    con = import_files(client, s, db, "contracts", [path], progress=False, pre_annotate=False)
    (task,) = [ls_client.get_task(client, t) for t in con.task_ids]
    assert "jane.doe@example.com" in task["data"]["text"]


def test_failed_import_reports_exactly_what_went_in(ls_projects, tmp_path, monkeypatch):
    _, s, db, client = ls_projects
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
        import_files(client, s.with_overrides(import_batch_size=3), db, "medical_records", [path], progress=False, mask_pii=False)
    last = store.list_imports(db)[-1]
    assert last["status"] == "partial" and len(last["task_ids"]) == 3
    for tid in last["task_ids"]:
        assert ls_client.get_task(client, tid)["data"]["text"].endswith("(copy for the failure test)")


def test_import_without_backend_warns(ls_projects, tmp_path):
    path = write_jsonl(tmp_path / "one.jsonl", [{"text": "A short supply agreement between Acme Corp and Beta LLC, governed by Delaware law."}])
    result = cli(ls_projects, "import", "contracts", str(path))
    assert result.exit_code == 0, result.output
    assert "no ML backend connected" in result.output


# --- bad input through the CLI -------------------------------------------------------------------


def test_cli_unknown_project(ls_projects, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "whatever text long enough to keep"}])
    line = one_line_error(cli(ls_projects, "import", "no_such_schema", str(path)))
    assert "unknown project 'no_such_schema'" in line and "contracts" in line


def test_cli_non_utf8_file(ls_projects, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Café contract, signed in Zürich".encode("latin-1"))
    line = one_line_error(cli(ls_projects, "import", "contracts", str(path)))
    assert "not UTF-8" in line


def test_cli_binary_file(ls_projects, tmp_path):
    path = tmp_path / "scan.txt"
    path.write_bytes(b"%PDF-1.4\x00\x01\x02binary")
    line = one_line_error(cli(ls_projects, "import", "contracts", str(path)))
    assert "binary file" in line


def test_cli_csv_without_text_column(ls_projects, tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text("id,body\n1,Some contract text between two parties\n", encoding="utf-8")
    line = one_line_error(cli(ls_projects, "import", "contracts", str(path)))
    assert "no 'text' column" in line and "body" in line
    ok = cli(ls_projects, "import", "contracts", str(path), "--text-column", "body", "--no-predict")
    assert ok.exit_code == 0, ok.output


def test_cli_missing_file(ls_projects, tmp_path):
    result = cli(ls_projects, "import", "contracts", str(tmp_path / "nope.jsonl"))
    assert result.exit_code != 0 and "does not exist" in result.output
