"""Tests for server.ingest: normalisation, cleaning steps, dedup, PII masking, the import report, samples (readers:
test_ingest_readers.py)."""
from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from server.errors import IngestError
from server.ingest import (
    CleanOptions,
    ImportReport,
    RawDocument,
    clean_documents,
    mask_pii,
    normalize,
    read_documents,
    text_hash,
)
from tests.plugins.ingest import keep_all

SAMPLES = Path(__file__).resolve().parent.parent / "server" / "samples"
SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
SCHEMAS = ("medical_records", "contracts", "financial_news")

CHINESE = (
    "患者男性，六十五岁，因反复胸闷气短三年、加重一周入院。既往有高血压病史十余年，长期口服降压药物，"
    "血压控制尚可。入院后查体：神志清楚，双肺呼吸音粗，可闻及少量湿啰音，心率每分钟九十二次，律齐。"
    "心电图提示窦性心律，左心室肥厚。超声心动图显示左心室射血分数降低。诊断为慢性心力衰竭急性加重，"
    "给予利尿、扩血管及改善心肌重构等治疗，症状明显缓解后出院，嘱定期门诊随访。"
)
CHINESE_OTHER = (
    "本公司今日发布公告称，第三季度营业收入同比增长百分之十八，净利润同比增长百分之二十二，"
    "主要得益于海外市场销售规模扩大以及原材料成本下降。公司董事会同时审议通过了新的股份回购方案，"
    "拟在未来十二个月内以自有资金回购部分股份，用于员工持股计划。分析人士认为，该公告超出市场预期。"
)


def doc(text: object, line: int | None = 1, **data) -> RawDocument:
    """A RawDocument as a reader would produce it."""
    return RawDocument(text=text, data=data, source="mem.jsonl", line=line)


def sample_texts(schema: str) -> list[str]:
    """The texts of one schema's sample documents."""
    path = SAMPLES / schema / "docs.jsonl"
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def abstract_excerpt(text: str, size: int = 500) -> str:
    """About `size` characters of a real abstract, cut after a sentence."""
    cut = text.find(". ", size)
    return text[: cut + 1] if cut > 0 else text


# --------------------------------------------------------------------------- normalize


def test_normalize_composes_decomposed_characters():
    decomposed = "Cafe\u0301 cre\u0300me"
    assert len(decomposed) == 12
    assert normalize(decomposed) == "Caf\u00e9 cr\u00e8me"


def test_normalize_removes_control_characters_keeps_newlines():
    assert normalize("a\x00b\x07c\x1bd\x7fe\u0085f") == "abcde\nf"
    assert normalize("zero\u200bwidth soft\u00adhyphen \ufeffbom") == "zerowidth softhyphen bom"


def test_normalize_whitespace():
    assert normalize("  a \t\t b\u00a0\u00a0c  ") == "a b c"
    assert normalize("line one  \r\n  line two\rthree") == "line one\nline two\nthree"
    assert normalize("para 1\n\n\n\n\npara 2\n \n \n\npara 3") == "para 1\n\npara 2\n\npara 3"
    assert normalize("keep\n\ntwo") == "keep\n\ntwo"
    assert normalize(" \n\t \n ") == ""


def test_normalize_is_idempotent_on_samples():
    for schema in SCHEMAS:
        for text in sample_texts(schema):
            once = normalize(text)
            assert normalize(once) == once


def test_text_hash_is_sha256_hex():
    assert text_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --------------------------------------------------------------------------- PII masking (server/deid; tests/test_deid.py
# covers each recognizer: here the import-facing wrapper and its kinds)


@pytest.mark.parametrize(
    "text, expected, kind",
    [
        ("Contact john.doe@example.com today.", "Contact [EMAIL] today.", "EMAIL"),
        ("Write to a_b+c@mail.hospital.org.uk", "Write to [EMAIL]", "EMAIL"),
        ("Call +1 555 123 4567 now", "Call [PHONE] now", "PHONE"),
        ("Call +44 20 7946 0958.", "Call [PHONE].", "PHONE"),
        ("Call (555) 123-4567 now", "Call [PHONE] now", "PHONE"),
        ("Call 555-123-4567.", "Call [PHONE].", "PHONE"),
        ("Call 555.123.4567", "Call [PHONE]", "PHONE"),
        ("Tel: 020 7946 0958", "Tel: [PHONE]", "PHONE"),
        ("Facsimile: (650) 555-1234", "Facsimile: [PHONE]", "PHONE"),
        ("MRN: 12345678", "MRN: [MRN]", "MRN"),
        ("Patient ID 998877 was admitted", "Patient ID [MRN] was admitted", "MRN"),
        ("SSN 536-22-8437", "SSN [ID]", "ID"),
        ("record no. A-12345", "record no. [MRN]", "MRN"),
        ("Medical record #A1234567", "Medical record #[MRN]", "MRN"),
        ("see https://example.com/a?b=1.", "see [URL].", "URL"),
        ("visit www.example.org/page, then", "visit [URL], then", "URL"),
        ("(https://t.co/abc)", "([URL])", "URL"),
        ("DOB: 01/02/1980", "DOB: [DATE]", "DATE"),
        ("date of birth: 2 March 1980", "date of birth: [DATE]", "DATE"),
        ("born on 1980-03-02 in Ohio", "born on [DATE] in Ohio", "DATE"),
        ("Date of Birth: March 2nd, 1980.", "Date of Birth: [DATE].", "DATE"),
        ("Follow-up visit 2019-12-31.", "Follow-up visit [DATE].", "DATE"),  # every date is an identifier (HIPAA)
        ("Seen by Dr. Okafor today.", "Seen by Dr. [NAME] today.", "NAME"),
        ("A 94-year-old man", "A [AGE]-year-old man", "AGE"),
        ("身份证号110101197901011234", "身份证号[ID]", "ID"),
        ("电话13800138000", "电话[PHONE]", "PHONE"),
    ],
)
def test_mask_pii_positives(text, expected, kind):
    masked, counts = mask_pii(text)
    assert masked == expected
    assert counts == Counter({kind: 1})


@pytest.mark.parametrize(
    "text",
    [
        "In 1980 the study enrolled 250 patients.",
        "The facility was financed with a loan of 1,250,000 dollars in 2019.",
        "Take 500 mg twice daily for 14 days.",
        "Doses ranged 150-200-3000 mg over the trial.",
        "Rates rose 12.5% to 3.2%; shares +5% at $12.50.",
        "p < 0.001 (95% CI 1.2-3.4), n = 12345",
        "Loci 11q23 and 3p21; IL-2 and IL-10 levels.",
        "Section 10.2.3 applies; see Exhibit 10.1.",
        "patient 1 and patient no. 12 improved",
        "He was born in 1980.",
        "the ID of the sample",
        "Revenue of $1.5 million on 555,123,4567 units",
        "Version 1.2.3456 released",
        "Metformin 500 mg 1380013800 twice daily; 0.5 mg/kg for the child.",
        "A 45-year-old man with Addison disease.",
        "患者来院时查体：体温37.5℃，既往高血压病史10年。",
    ],
)
def test_mask_pii_negatives(text):
    assert mask_pii(text) == (text, Counter())


def test_mask_pii_order_email_before_url_and_several_kinds():
    text = (
        "Dr. Lee (lee@clinic.org, https://clinic.org/lee) saw the patient, MRN: 55501234, "
        "DOB: 12/05/1971, phone (212) 555-0199, for a 500 mg dose."
    )
    masked, counts = mask_pii(text)
    assert masked == (
        "Dr. [NAME] ([EMAIL], [URL]) saw the patient, MRN: [MRN], "
        "DOB: [DATE], phone [PHONE], for a 500 mg dose."
    )
    assert counts == Counter({"NAME": 1, "EMAIL": 1, "URL": 1, "MRN": 1, "DATE": 1, "PHONE": 1})
    assert mask_pii(masked) == (masked, Counter())  # placeholders are stable


def test_pseudonyms_and_shifted_dates_through_the_clean_options():
    raw = "Patient: Tobias Wren, seen 03/14/2021 and again 03/28/2021. Mr. Wren improved. Call 555-123-4567."
    options = CleanOptions(mask_pii=True, pseudonymize=True, shift_dates=True)
    tasks, report = clean_documents([doc(raw)], options)
    text = tasks[0]["data"]["text"]
    assert "Wren" not in text and "Tobias" not in text and "555-123-4567" not in text
    assert "[PHONE]" in text and "[NAME]" not in text and "[DATE]" not in text
    fake = re.match(r"Patient: (\w+) (\w+),", text)
    assert fake and f"Mr. {fake.group(2)} improved" in text  # one person, one fake name
    first, second = (dt.datetime.strptime(d, "%m/%d/%Y").date() for d in re.findall(r"\d{2}/\d{2}/\d{4}", text))
    assert (second - first).days == 14 and first != dt.date(2021, 3, 14)  # shifted, interval kept
    assert {k: v for k, v in report.masked.items() if v} == {"NAME": 2, "DATE": 2, "PHONE": 1}
    again, report2 = clean_documents([doc(raw)], options, existing_texts=[text])  # deterministic per document
    assert again == [] and report2.dropped["duplicate"] == 1


def test_other_fields_of_a_record_are_masked_too():
    record = RawDocument(text="Follow-up of the migraine with aura, stable on therapy.",
                         data={"patient": "Patient: Tobias Wren", "ward": "4B"}, source="m.jsonl", line=1)
    tasks, report = clean_documents([record], CleanOptions(mask_pii=True))
    assert tasks[0]["data"]["patient"] == "Patient: [NAME]" and tasks[0]["data"]["ward"] == "4B"
    assert report.masked["NAME"] == 1


def test_mask_pii_leaves_real_abstracts_alone_but_the_physician_they_name():
    masked_words = []
    for text in sample_texts("medical_records"):
        text = normalize(text)
        masked, counts = mask_pii(text)
        if counts:
            assert set(counts) == {"NAME"}
            assert "Kniest dysplasia" in masked  # the eponym stays; Dr. W. Kniest, a person, goes
            masked_words += re.findall(r"Dr\. (?:W\. )?(\[NAME\]|\w+)", masked)
    assert masked_words == ["[NAME]", "[NAME]"]


# --------------------------------------------------------------------------- cleaning


def test_task_shape_and_meta():
    tasks, report = clean_documents([doc("  Hello   world, this is a document.  ", line=4, source_id="x1")], CleanOptions())
    assert tasks == [{
        "data": {"text": "Hello world, this is a document.", "source_id": "x1"},
        "meta": {"source": "mem.jsonl", "line": 4, "goldloop_hash": text_hash("Hello world, this is a document.")},
    }]
    assert (report.read, report.kept) == (1, 1)


def test_text_field_from_labeling_config():
    tasks, _ = clean_documents([doc("A document long enough to keep.")], CleanOptions(text_field="body"))
    assert tasks[0]["data"] == {"body": "A document long enough to keep."}


def test_text_field_wins_over_a_data_field_of_the_same_name():
    tasks, _ = clean_documents([doc("the cleaned text of it", body="other")], keep_all(text_field="body"))
    assert tasks[0]["data"] == {"body": "the cleaned text of it"}


def test_cleaning_normalises_the_task_text():
    tasks, _ = clean_documents([doc("Cafe\u0301\x00 \t menu\r\n\r\n\r\n\r\nprices")], keep_all())
    assert tasks[0]["data"]["text"] == "Caf\u00e9 menu\n\nprices"


@pytest.mark.parametrize("value", [None, 42, 3.5, ["a", "list"], {"a": 1}])
def test_not_text_is_dropped_and_reported(value):
    tasks, report = clean_documents([doc(value, line=9)], keep_all())
    assert tasks == []
    assert report.dropped["not_text"] == 1
    assert report.errors == [f"mem.jsonl line 9: text is {type(value).__name__}, not a string"]


@pytest.mark.parametrize("value", ["", "   ", "\n\t\x00\u200b"])
def test_empty_is_dropped(value):
    tasks, report = clean_documents([doc(value)], CleanOptions())
    assert tasks == []
    assert report.dropped["empty"] == 1
    assert report.errors == []


def test_too_short_uses_length_after_cleaning():
    docs = [doc("x" * 19), doc("y" * 20), doc("   " + "z" * 19 + "   ")]
    tasks, report = clean_documents(docs, CleanOptions(min_chars=20))
    assert [t["data"]["text"] for t in tasks] == ["y" * 20]
    assert report.dropped["too_short"] == 2


def test_exact_duplicates_within_a_batch_after_normalisation():
    docs = [doc("Aspirin reduces the risk of stroke."), doc("Aspirin  reduces the risk\tof stroke. "),
            doc("Aspirin reduces the risk of stroke.")]
    tasks, report = clean_documents(docs, CleanOptions())
    assert len(tasks) == 1
    assert report.dropped["duplicate"] == 2


def test_exact_duplicate_against_existing_texts():
    existing = ["Metformin is first-line therapy for type 2 diabetes."]
    docs = [doc("Metformin is first-line therapy for type 2 diabetes."), doc("Insulin is used in type 1 diabetes.")]
    tasks, report = clean_documents(docs, CleanOptions(), existing_texts=existing)
    assert [t["data"]["text"] for t in tasks] == ["Insulin is used in type 1 diabetes."]
    assert report.dropped["duplicate"] == 1


def test_near_duplicate_one_word_change_of_a_real_abstract():
    abstracts = sample_texts("medical_records")
    original = abstract_excerpt(abstracts[0])
    assert 450 <= len(original) <= 800
    words = original.split(" ")
    middle = len(words) // 2
    words[middle] = "substantially" if words[middle] != "substantially" else "markedly"
    edited = " ".join(words)
    other = abstract_excerpt(abstracts[1])
    assert edited != original
    tasks, report = clean_documents([doc(original), doc(edited), doc(other)], CleanOptions())
    assert [t["data"]["text"] for t in tasks] == [original, other]
    assert report.dropped["near_duplicate"] == 1
    assert report.dropped["duplicate"] == 0


def test_different_abstracts_are_not_near_duplicates():
    abstracts = [abstract_excerpt(t) for t in sample_texts("medical_records")]
    tasks, report = clean_documents([doc(t) for t in abstracts], CleanOptions())
    assert len(tasks) == len(abstracts)
    assert report.dropped["near_duplicate"] == 0


def test_near_duplicate_against_existing_texts():
    original = abstract_excerpt(sample_texts("medical_records")[2])
    edited = original.replace(" the ", " a ", 1)
    assert edited != original
    tasks, report = clean_documents([doc(edited)], CleanOptions(), existing_texts=[original])
    assert tasks == []
    assert report.dropped["near_duplicate"] == 1


def test_near_duplicate_chinese_character_shingles():
    edited = CHINESE.replace("九十二", "九十六")
    assert edited != CHINESE
    tasks, report = clean_documents([doc(CHINESE), doc(edited), doc(CHINESE_OTHER)], CleanOptions())
    assert [t["data"]["text"] for t in tasks] == [CHINESE, CHINESE_OTHER]
    assert report.dropped["near_duplicate"] == 1


def test_near_duplicate_threshold_is_honoured():
    abstracts = sample_texts("medical_records")
    original = abstract_excerpt(abstracts[0])
    half = original[: len(original) // 2] + abstract_excerpt(abstracts[1])[len(original) // 2:]
    strict, _ = clean_documents([doc(original), doc(half)], CleanOptions(near_duplicate_threshold=0.9))
    loose, _ = clean_documents([doc(original), doc(half)], CleanOptions(near_duplicate_threshold=0.2))
    assert len(strict) == 2
    assert len(loose) == 1


def test_near_duplicate_of_a_long_document():
    contract = normalize(sample_texts("contracts")[0])
    long_text = normalize("\n\n".join([contract] * 2) + "\n\n" + " ".join(sample_texts("medical_records")))
    assert len(long_text) > 30_000
    edited = long_text.replace("Agreement", "Contract", 1)
    assert edited != long_text
    tasks, report = clean_documents([doc(long_text), doc(edited), doc(contract)], CleanOptions())
    assert [t["data"]["text"] for t in tasks] == [long_text, contract]
    assert report.dropped["near_duplicate"] == 1


def test_near_duplicate_ignores_case():
    text = abstract_excerpt(sample_texts("medical_records")[3])
    tasks, report = clean_documents([doc(text), doc(text.upper())], CleanOptions())
    assert len(tasks) == 1 and report.dropped["near_duplicate"] == 1


@pytest.mark.parametrize("threshold", [0, -0.5, 1.5])
def test_bad_threshold_raises(threshold):
    with pytest.raises(IngestError, match="near_duplicate_threshold must be in"):
        clean_documents([], CleanOptions(near_duplicate_threshold=threshold))


def test_threshold_one_still_runs():
    tasks, report = clean_documents([doc("a document to keep here"), doc("another document to keep")],
                                    CleanOptions(near_duplicate_threshold=1.0))
    assert len(tasks) == 2


def test_mask_pii_option_masks_output_and_counts():
    raw = "Seen by Dr. Ray, MRN: 77788899, DOB: 01/02/1980. Email ray@clinic.org or call 555-123-4567."
    tasks, report = clean_documents([doc(raw)], CleanOptions(mask_pii=True))
    text = tasks[0]["data"]["text"]
    assert text == "Seen by Dr. [NAME], MRN: [MRN], DOB: [DATE]. Email [EMAIL] or call [PHONE]."
    assert tasks[0]["meta"]["goldloop_hash"] == text_hash(text)
    assert "77788899" not in json.dumps(tasks) and "ray@clinic.org" not in json.dumps(tasks)
    assert {k: v for k, v in report.masked.items() if v} == {"NAME": 1, "MRN": 1, "DATE": 1, "EMAIL": 1, "PHONE": 1}


def test_no_masking_without_the_option():
    raw = "Write to ray@clinic.org about the visit."
    tasks, report = clean_documents([doc(raw)], CleanOptions())
    assert tasks[0]["data"]["text"] == raw
    assert sum(report.masked.values()) == 0


def test_existing_texts_are_masked_the_same_way():
    raw = "Follow-up for MRN: 77788899 scheduled next week."
    first, _ = clean_documents([doc(raw)], CleanOptions(mask_pii=True))
    # the project holds the masked text; the raw document comes again
    tasks, report = clean_documents([doc(raw)], CleanOptions(mask_pii=True),
                                    existing_texts=[first[0]["data"]["text"]])
    assert tasks == []
    assert report.dropped["duplicate"] == 1
    # and raw existing texts are masked before hashing
    tasks, report = clean_documents([doc(raw)], CleanOptions(mask_pii=True), existing_texts=[raw])
    assert tasks == [] and report.dropped["duplicate"] == 1


def test_importing_the_same_documents_twice_keeps_nothing_the_second_time():
    path = SAMPLES / "financial_news" / "docs.jsonl"
    options = CleanOptions(mask_pii=True)
    first, report1 = clean_documents(read_documents([path]), options)
    assert report1.kept == report1.read == 30
    held = [t["data"][options.text_field] for t in first]
    second, report2 = clean_documents(read_documents([path]), options, existing_texts=held)
    assert second == []
    assert report2.read == 30 and report2.kept == 0
    assert report2.dropped["duplicate"] == 30


def test_report_counts_add_up_and_serialise():
    docs = [
        doc("a perfectly good first document"),
        doc("a perfectly good first document"),
        doc(None),
        doc(""),
        doc("short"),
        RawDocument(text=None, data={}, source="f.jsonl", line=3, error="f.jsonl line 3: not valid JSON (x)"),
        doc("write to someone@example.com please, thanks", line=7),
    ]
    tasks, report = clean_documents(docs, CleanOptions(min_chars=10, mask_pii=True))
    assert report.read == 7
    assert report.kept == len(tasks) == 2
    assert report.read == report.kept + sum(report.dropped.values())
    assert {k: v for k, v in report.dropped.items() if v} == {
        "duplicate": 1, "not_text": 1, "empty": 1, "too_short": 1, "bad_line": 1,
    }
    data = json.loads(json.dumps(report.to_dict()))
    assert data["read"] == 7 and data["kept"] == 2 and data["masked"]["EMAIL"] == 1
    assert data["errors"] == ["mem.jsonl line 1: text is NoneType, not a string", "f.jsonl line 3: not valid JSON (x)"]
    lines = report.summary_lines()
    assert lines[0] == "read: 7 documents"
    assert lines[1] == "kept: 2"
    assert "dropped: 5 (" in lines[2] and "duplicate 1" in lines[2] and "bad_line 1" in lines[2]
    assert "masked: EMAIL 1" in lines
    assert "errors: 2" in lines
    assert "  f.jsonl line 3: not valid JSON (x)" in lines


def test_report_defaults_and_long_error_lists():
    report = ImportReport()
    assert report.summary_lines() == ["read: 0 documents", "kept: 0", "dropped: 0"]
    assert set(report.dropped) == {"empty", "too_short", "not_text", "duplicate", "near_duplicate", "bad_line"}
    assert set(report.masked) == {"NAME", "ID", "MRN", "PHONE", "EMAIL", "URL", "IP", "DATE", "AGE", "ADDRESS", "ACCOUNT",
                                  "FACILITY", "PLATE", "PASSPORT", "INSURANCE"}
    report.errors = [f"e{i}" for i in range(25)]
    lines = report.summary_lines()
    assert "  e19" in lines and "  e20" not in lines and lines[-1] == "  ... and 5 more"


def test_clean_documents_accepts_a_generator():
    tasks, report = clean_documents((doc(f"document number {i} of the batch") for i in range(3)), CleanOptions())
    assert report.read == 3 and len(tasks) == 3


# --------------------------------------------------------------------------- samples


@pytest.mark.parametrize("schema", SCHEMAS)
def test_samples_import_cleanly(schema):
    folder = SAMPLES / schema
    path = folder / "docs.jsonl"
    assert path.stat().st_size < 100_000
    assert (SCHEMAS_DIR / f"{schema}.xml").exists()
    tasks, report = clean_documents(read_documents([path]), CleanOptions())
    assert report.errors == []
    assert report.kept == report.read >= 8
    assert all(t["data"].get("source_id") for t in tasks)
    source = (folder / "SOURCE.md").read_text(encoding="utf-8")
    assert re.search(r"(?i)licen[cs]e", source)


def test_sample_licences_are_the_permissive_ones():
    assert "PUBLIC DOMAIN NOTICE" in (SAMPLES / "medical_records" / "SOURCE.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in (SAMPLES / "contracts" / "SOURCE.md").read_text(encoding="utf-8")
    assert "MIT License" in (SAMPLES / "financial_news" / "SOURCE.md").read_text(encoding="utf-8")

