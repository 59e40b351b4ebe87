"""Tests for server.ingest's readers: TXT, JSONL, JSON, CSV and directories, bad lines reported and skipped."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.errors import IngestError
from server.ingest import CleanOptions, clean_documents, read_documents
from tests.plugins.ingest import jsonl, keep_all, write


def test_txt_is_one_document(tmp_path):
    path = write(tmp_path / "note.txt", "First line.\n\nSecond paragraph.\n")
    docs = read_documents([path])
    assert len(docs) == 1
    assert docs[0].text == "First line.\n\nSecond paragraph.\n"
    assert docs[0].data == {}
    assert docs[0].source == str(path)
    assert docs[0].line is None
    assert docs[0].error is None


def test_txt_with_utf8_bom_is_read_without_it(tmp_path):
    path = write(tmp_path / "bom.txt", "\ufeffHello world".encode("utf-8"))
    assert read_documents([path])[0].text == "Hello world"


def test_jsonl_keeps_other_fields_and_line_numbers(tmp_path):
    path = write(
        tmp_path / "d.jsonl",
        jsonl({"text": "alpha", "source_id": "a1", "meta": {"k": 1}}) + "\n" + jsonl({"text": "beta", "n": 2}),
    )
    docs = read_documents([path])
    assert [d.text for d in docs] == ["alpha", "beta"]
    assert docs[0].data == {"source_id": "a1", "meta": {"k": 1}}
    assert docs[1].data == {"n": 2}
    assert [d.line for d in docs] == [1, 3]  # the blank line 2 is skipped, numbering is the file's


def test_jsonl_text_column(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl({"body": "the body", "text": "not this"}))
    [d] = read_documents([path], text_column="body")
    assert d.text == "the body"
    assert d.data == {"text": "not this"}


def test_jsonl_line_separators_inside_strings_do_not_split_records(tmp_path):
    text = "Black Friday shopping guide\u2028What not to buy\x85 today"
    path = write(tmp_path / "d.jsonl", json.dumps({"text": text}, ensure_ascii=False) + "\r\n" + jsonl({"text": "next"}))
    docs = read_documents([path])
    assert [d.text for d in docs] == [text, "next"]
    assert [d.error for d in docs] == [None, None]
    tasks, _ = clean_documents(docs, keep_all())
    assert tasks[0]["data"]["text"] == "Black Friday shopping guide\nWhat not to buy\ntoday"


def test_csv_line_separators_inside_fields(tmp_path):
    path = write(tmp_path / "d.csv", "text,n\r\nfirst\u2028part,1\r\nsecond,2\r\n")
    docs = read_documents([path])
    assert [(d.text, d.data, d.line) for d in docs] == [("first\u2028part", {"n": "1"}, 2), ("second", {"n": "2"}, 3)]


def test_json_list_and_single_object(tmp_path):
    many = write(tmp_path / "many.json", json.dumps([{"text": "one", "x": 1}, {"text": "two"}]))
    one = write(tmp_path / "one.json", json.dumps({"text": "only", "y": "z"}))
    docs = read_documents([many, one])
    assert [(d.text, d.data, d.line) for d in docs] == [
        ("one", {"x": 1}, 1), ("two", {}, 2), ("only", {"y": "z"}, 1),
    ]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("n.json", "42", r"n\.json: expected a JSON list of objects or one object, got int"),
        ("bad.json", '[{"text": "a"},\n oops]', r"bad\.json: not valid JSON .*line 2"),
        ("d.csv", "id,body,label\n1,x,y\n", r"no 'text' column \(columns found: id, body, label\)"),
        ("empty.csv", "", "empty CSV file"),
        ("doc.pdf", "text", r"doc\.pdf: unsupported file type '\.pdf'; use one of"),
        ("image.txt", b"GIF89a\x01\x00\x00\x00", r"image\.txt: binary file \(NUL byte at offset 7\)"),
        ("old.txt", "Caf\u00e9 au lait".encode("latin-1"), r"old\.txt: not UTF-8 \(byte 0xe9 at offset 3\); re-save it as UTF-8"),
    ],
    ids=["json_not_list_or_object", "json_invalid_with_position", "csv_without_text_column", "csv_empty_file",
         "unsupported_extension", "binary_file", "latin1_file"],
)
def test_unreadable_file_raises_naming_the_file(tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(IngestError, match=message):
        read_documents([path])


def test_json_item_that_is_not_an_object_is_a_bad_line(tmp_path):
    path = write(tmp_path / "l.json", json.dumps([{"text": "good document here"}, "just a string"]))
    tasks, report = clean_documents(read_documents([path]), keep_all())
    assert len(tasks) == 1
    assert report.dropped["bad_line"] == 1
    assert report.errors == [f"{path} item 2: not a JSON object (got str)"]


def test_csv_text_column_and_other_columns(tmp_path):
    path = write(
        tmp_path / "d.csv",
        'id,text,label\n1,"Hello, world",pos\n2,"multi\nline text",neg\n3,plain,neu\n',
    )
    docs = read_documents([path])
    assert [d.text for d in docs] == ["Hello, world", "multi\nline text", "plain"]
    assert docs[0].data == {"id": "1", "label": "pos"}
    assert [d.line for d in docs] == [2, 3, 5]  # file line where each row starts


def test_csv_custom_text_column(tmp_path):
    path = write(tmp_path / "d.csv", "headline,body\nShort,The long body\n")
    [d] = read_documents([path], text_column="body")
    assert d.text == "The long body"
    assert d.data == {"headline": "Short"}


def test_csv_row_with_wrong_field_count_is_a_bad_line(tmp_path):
    path = write(tmp_path / "d.csv", "id,text\n1,first document\n2,second,extra\n3,third document\n")
    tasks, report = clean_documents(read_documents([path]), keep_all())
    assert [t["data"]["text"] for t in tasks] == ["first document", "third document"]
    assert report.dropped["bad_line"] == 1
    assert report.errors == [f"{path} line 3: 3 fields, the header has 2"]


def test_directory_reads_supported_files_sorted_recursively(tmp_path):
    write(tmp_path / "b.txt", "bee")
    write(tmp_path / "a.jsonl", jsonl({"text": "ay"}))
    write(tmp_path / "sub" / "c.csv", "text\nsea\n")
    write(tmp_path / "notes.md", "ignored")
    write(tmp_path / ".hidden" / "h.txt", "ignored too")
    docs = read_documents([tmp_path])
    assert [d.text for d in docs] == ["ay", "bee", "sea"]
    assert [Path(d.source).name for d in docs] == ["a.jsonl", "b.txt", "c.csv"]


def test_directory_without_documents_raises(tmp_path):
    write(tmp_path / "readme.md", "nothing")
    with pytest.raises(IngestError, match="no .txt, .jsonl, .json, .csv files"):
        read_documents([tmp_path])


def test_missing_file_raises(tmp_path):
    with pytest.raises(IngestError, match=r"nope\.jsonl: no such file or directory; check the path"):
        read_documents([tmp_path / "nope.jsonl"])


def test_unreadable_file_raises(tmp_path, monkeypatch):
    path = write(tmp_path / "locked.txt", "secret")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(IngestError, match=r"locked\.txt: cannot read the file \(Permission denied\); check its permissions"):
        read_documents([path])


def test_directory_named_like_a_file_is_expanded(tmp_path):
    folder = tmp_path / "looks_like.txt"
    write(folder / "inner.txt", "inside")
    assert [d.text for d in read_documents([folder])] == ["inside"]


def test_jsonl_bad_line_3_is_reported_and_reading_goes_on(tmp_path):
    path = write(
        tmp_path / "data.jsonl",
        jsonl({"text": "first good document"}, {"text": "second good document"})
        + "{not json\n"
        + jsonl({"text": "fourth good document"}),
    )
    tasks, report = clean_documents(read_documents([path]), CleanOptions(min_chars=5))
    assert [t["data"]["text"] for t in tasks] == [
        "first good document", "second good document", "fourth good document",
    ]
    assert [t["meta"]["line"] for t in tasks] == [1, 2, 4]
    assert report.read == 4
    assert report.dropped["bad_line"] == 1
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"{path} line 3: not valid JSON (")
    assert any("line 3: not valid JSON" in line for line in report.summary_lines())


@pytest.mark.parametrize(
    "line, message",
    [
        ('["a list"]', "line 2: not a JSON object (got list)"),
        ('{"body": "x", "id": 7}', "line 2: no 'text' field (fields: body, id)"),
    ],
)
def test_jsonl_unusable_record_is_a_bad_line(tmp_path, line, message):
    path = write(tmp_path / "d.jsonl", jsonl({"text": "a good document"}) + line + "\n")
    tasks, report = clean_documents(read_documents([path]), keep_all())
    assert len(tasks) == 1
    assert report.dropped["bad_line"] == 1
    assert report.errors == [f"{path} {message}"]
