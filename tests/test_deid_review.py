"""Safe failure: spans the de-identification could not decide on are left unmasked, counted in the import report and,
with --review-pii, written to a 0600 JSON Lines file for a person (server.deid.review, the tagger's near misses, the
import pipeline)."""
from __future__ import annotations

import json
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from server import importer, ingest, ls_client, store
from server.deid import deidentify, redact, review_entries, write_review
from server.deid.tagger import NameTagger
from server.ingest import CleanOptions, RawDocument, clean_documents

ROOT = Path(__file__).resolve().parents[1]
# a one-word name the shipped tagger scores just under its threshold, a Chinese name in a sentence no rule covers, an
# 18-digit resident-ID shape whose check character fails, an SSN with a group of zeros
BORDERLINE = {
    "Follow-up arranged with Brannagh tomorrow.": ("Brannagh", "NAME"),
    "护工郜娟馨负责夜间陪护": ("郜娟馨", "NAME"),
    "证件 110101197901011235 已核对": ("110101197901011235", "ID"),
    "SSN 000-12-3456 is not an assigned number": ("000-12-3456", "ID"),
}


@pytest.mark.parametrize("text", list(BORDERLINE))
def test_borderline_spans_are_reported_not_masked(text):
    span, kind = BORDERLINE[text]
    result = redact(text)
    assert result.text == text and not result.counts  # the default output is what it was
    assert [(text[b.start:b.end], b.kind) for b in result.borderline] == [(span, kind)]
    b = result.borderline[0]
    assert b.reason and (b.score is None or b.score < b.threshold)


def test_clear_documents_have_no_borderline_span():
    for text in ("Patient John Smith (DOB 03/14/1962, MRN 123456) was admitted with chest pain.",
                 "患者张伟，男，45岁，因胸痛3天入院。", "Pain 7/10, BP 120/80."):
        assert redact(text).borderline == []
        assert redact(text).text == deidentify(text)[0]


def test_a_masked_span_is_never_borderline():
    text = "身份证号110101197901011235，SSN 000-12-3456"  # 身份证 in front masks the first: only the second is in doubt
    result = redact(text)
    assert result.text.startswith("身份证号[ID]")
    assert [text[b.start:b.end] for b in result.borderline] == ["000-12-3456"]


def _tagger(weights: dict, bias: float) -> NameTagger:
    model = {"en": {"weights": weights, "bias": bias, "threshold": 0.5, "threshold_one_word": 0.9},
             "zh": {"weights": {}, "bias": [0.0, -5.0, -5.0], "margin": 0.0, "margin_one_char": 3.0}}
    return NameTagger(model, frozenset(), frozenset(), frozenset(), frozenset(), frozenset(), frozenset())


def test_the_tagger_reports_near_misses_within_its_band():
    """Probabilities are the model's: just under the threshold is a near miss, far under it nothing."""
    import math

    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    text = "Seen with Ann Bree and Cal today."
    w = {"w=ann": 20 + logit(0.45), "w=bree": 20 + logit(0.4), "w=cal": 20 + logit(0.1)}  # every other word: bias -20
    found, missed = _tagger(w, -20.0).english_scored(text)
    assert found == [] and [(text[s:e], round(p, 2), t) for s, e, p, t in missed] == [("Ann Bree", 0.45, 0.5)]
    one = _tagger({"w=ann": 20 + logit(0.7)}, -20.0)  # a one-word name under the one-word threshold
    assert [(text[s:e], t) for s, e, _, t in one.english_scored(text)[1]] == [("Ann", 0.9)]
    assert one.english(text) == []


# ------------------------------------------------------------------------------------------------ the import


def test_clean_documents_counts_and_lists_borderline_spans_with_original_offsets():
    docs = [RawDocument(text=t, data={}, source="notes.jsonl", line=i + 1) for i, t in enumerate(BORDERLINE)]
    docs.append(RawDocument(text="Patient John Smith was admitted with chest pain.", data={}, source="notes.jsonl",
                            line=9))
    review: list[dict] = []
    tasks, report = clean_documents(docs, CleanOptions(mask_pii=True, min_chars=5), review=review)
    assert report.borderline_documents == 4 and report.borderline_spans == 4
    assert report.to_dict()["borderline_documents"] == 4  # stored with the other counts
    assert any("borderline: 4 document(s)" in line for line in report.summary_lines())
    originals = {d.line: d.text for d in docs}
    for record in review:
        original = originals[record["line"]]
        assert original[record["start"]:record["end"]] == record["span"] == BORDERLINE[original][0]
        assert record["source"] == "notes.jsonl" and record["field"] == "text" and record["span"] in record["context"]
        assert original[record["context_start"]:].startswith(record["context"])
        assert record["goldloop_hash"] in {t["meta"]["goldloop_hash"] for t in tasks}
    assert tasks[-1]["data"]["text"] == "Patient [NAME] was admitted with chest pain."


def test_without_borderline_spans_the_report_is_unchanged():
    docs = [RawDocument(text="Patient John Smith was admitted with chest pain.", data={}, source="a.txt", line=None)]
    review: list[dict] = []
    _, report = clean_documents(docs, CleanOptions(mask_pii=True), review=review)
    assert review == [] and report.borderline_documents == 0
    assert not any(line.startswith("borderline") for line in report.summary_lines())


def test_review_file_is_private_and_replaces_a_wider_one(tmp_path):
    path = tmp_path / "review.jsonl"
    path.write_text("old\n")
    path.chmod(0o644)
    text = "Follow-up arranged with Brannagh tomorrow."
    records = review_entries(text, redact(text).borderline, source="n.jsonl", line=3)
    write_review(path, records)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows == records and rows[0]["span"] == "Brannagh" and rows[0]["line"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["review.jsonl"]  # no temporary file left


@pytest.fixture
def offline_import(tmp_path, monkeypatch):
    """import_files against a fake Label Studio: the project is medical_records, every task goes in."""
    config = (ROOT / "schemas" / "medical_records.xml").read_text(encoding="utf-8")
    project = SimpleNamespace(id=7, label_config=config, title="medical_records")
    monkeypatch.setattr(ls_client, "resolve_project", lambda client, ref, db=None: project)
    monkeypatch.setattr(ls_client, "schema_name_of", lambda p: "medical_records")
    monkeypatch.setattr(ls_client, "task_texts", lambda client, pid, field: iter(()))
    monkeypatch.setattr(ls_client, "import_tasks", lambda client, pid, tasks, batch, progress: list(range(len(tasks))))
    settings = SimpleNamespace(mask_pii_schemas=("medical_records",), import_batch_size=50)
    db = store.open_db(tmp_path / "goldloop.db")

    def run(texts: list[str], **kwargs):
        src = tmp_path / "notes.jsonl"
        src.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
        return importer.import_files(None, settings, db, "medical_records", [src], pre_annotate=False, progress=False,
                                     **kwargs), db

    return run


def test_import_writes_the_review_list_with_mode_0600(offline_import, tmp_path):
    path = tmp_path / "review.jsonl"
    outcome, db = offline_import(["Follow-up arranged with Brannagh tomorrow.", "Patient John Smith was admitted."],
                                 review_pii=path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["span"], r["kind"]) for r in rows] == [(1, "Brannagh", "NAME")]
    lines = outcome.summary_lines()
    assert any(line.startswith("borderline: 1 document(s)") for line in lines)
    assert any(line.startswith(f"review list: 1 borderline span(s) written to {path}") for line in lines)
    assert "Brannagh" not in "\n".join(lines)  # the CLI output names no original
    stored = store.list_imports(db)[-1]["report"]
    assert stored["borderline_documents"] == 1 and "Brannagh" not in json.dumps(stored)


def test_import_writes_nothing_when_no_span_is_borderline(offline_import, tmp_path):
    path = tmp_path / "review.jsonl"
    outcome, _ = offline_import(["Patient John Smith was admitted with chest pain."], review_pii=path)
    assert not path.exists()
    assert f"review list: no borderline spans, nothing written to {path}" in outcome.summary_lines()
    assert not any(line.startswith("borderline") for line in outcome.summary_lines())


def test_review_needs_masking(offline_import, tmp_path):
    with pytest.raises(ingest.IngestError, match="--review-pii"):
        offline_import(["Follow-up arranged with Brannagh tomorrow."], review_pii=tmp_path / "r.jsonl", mask_pii=False)
