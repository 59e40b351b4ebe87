"""`goldloop import` de-identifies through the real CLI into a real Label Studio: masks on by default for
medical_records, pseudonyms and shifted dates on request, and no original identifier in any file of the data dir."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from server import ls_client, store
from server.cli import main
from tests.plugins.label_studio import goldloop, one_line_error, write_jsonl

pytestmark = pytest.mark.e2e

EN = ("Patient John Smith (DOB 03/14/1962, MRN 123456) was admitted with chest pain. Phone 555-123-4567, "
      "email john.smith@example.com")
ZH = "患者张伟，男，45岁，身份证号110101197901011234，电话13800138000，因胸痛3天入院…"
ORIGINALS = ("John Smith", "john.smith@example.com", "555-123-4567", "03/14/1962", "张伟", "110101197901011234",
             "13800138000")


def project_texts(client, db, schema: str) -> list[str]:
    pid = store.get_project_by_name(db, schema)["id"]
    return [t["data"]["text"] for t in ls_client.iter_tasks(client, pid)]


def test_goldloop_import_masks_both_examples_and_no_file_keeps_an_original(ls_projects, tmp_path):
    _, s, db, client = ls_projects
    path = write_jsonl(tmp_path / "notes.jsonl", [{"text": EN}, {"text": ZH}])
    proc = goldloop("import", "medical_records", str(path), "--no-predict", home=s.home)
    assert "masked: NAME 2, ID 1, MRN 1, PHONE 2, EMAIL 1, DATE 1" in proc.stdout, proc.stdout
    texts = project_texts(client, db, "medical_records")
    assert ("Patient [NAME] (DOB [DATE], MRN [MRN]) was admitted with chest pain. Phone [PHONE], email [EMAIL]"
            in texts)
    assert "患者[NAME]，男，45岁，身份证号[ID]，电话[PHONE]，因胸痛3天入院…" in texts
    # Label Studio's database, goldloop's store, the logs: nothing under the data dir holds an original
    leaks = [(f, o) for f in s.home.rglob("*") if f.is_file() for o in ORIGINALS if o.encode() in f.read_bytes()]
    assert leaks == []
    assert all(o not in proc.stdout + proc.stderr for o in ORIGINALS)


def test_pseudonymize_and_shift_dates_turn_masking_on_for_any_project(ls_projects, tmp_path):
    _, s, db, client = ls_projects
    note = "Patient: Tobias Wren, seen 03/14/2021 and again 03/28/2021 for his contract review. Mr. Wren agreed."
    path = write_jsonl(tmp_path / "note.jsonl", [{"text": note}])
    result = CliRunner().invoke(main, ["import", "contracts", str(path), "--no-predict", "--pseudonymize", "--shift-dates",
                                       "--data-dir", str(s.home)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (text,) = [t for t in project_texts(client, db, "contracts") if "contract review" in t]
    assert "Wren" not in text and "[NAME]" not in text and "03/14/2021" not in text
    fake = re.match(r"Patient: \w+ (\w+),", text)
    assert fake and f"Mr. {fake.group(1)} agreed." in text


def test_pseudonymize_with_masking_off_is_a_one_line_error(ls_projects, tmp_path):
    _, s, _, _ = ls_projects
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "Patient: Tobias Wren was seen for a follow-up visit."}])
    result = CliRunner().invoke(main, ["import", "medical_records", str(path), "--no-mask-pii", "--pseudonymize",
                                       "--data-dir", str(s.home)], catch_exceptions=False)
    assert "drop --no-mask-pii" in one_line_error(result)
