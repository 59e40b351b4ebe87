"""CoNLL files: layout, tokens split inside words, overlaps resolved, one directory per span control."""
from __future__ import annotations

from ml_backend.schema import parse_label_config
from ml_backend.splits import split_of
from server.export import ExportOptions, ProjectInfo, bio_to_spans, export_dataset, read_conll, read_jsonl
from tests.plugins.export import ann, simple_export, span


def test_conll_layout(exported):
    result, *_ = exported
    lines = (result.version_dir / "conll" / "train.conll").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "-DOCSTART- -X- -X- O" and lines[1] == ""
    for line in lines:
        if line and not line.startswith("-DOCSTART-"):
            parts = line.split(" ")
            assert len(parts) == 4 and parts[1:3] == ["-X-", "_"]
            assert parts[3] == "O" or parts[3][:2] in ("B-", "I-")


def test_her2_positive_export(tmp_path):
    text = "HER2-positive breast cancer responds to trastuzumab."
    task = {"id": 1, "data": {"text": text},
            "annotations": [ann(1, [span(0, 4, "HER2"), span(40, 51, "trastuzumab", "Drug")])]}
    r = simple_export(tmp_path, [task])
    conll = (r.version_dir / "conll" / f"{split_of(1)}.conll").read_text().splitlines()
    assert conll[2:4] == ["HER2 -X- _ B-Disease", "-positive -X- _ O"]
    assert "trastuzumab -X- _ B-Drug" in conll and ". -X- _ O" in conll
    (tokens, tags), = read_conll(r.version_dir / "conll" / f"{split_of(1)}.conll")
    assert bio_to_spans(tokens, tags, text) == [(0, 4, "Disease"), (40, 51, "Drug")]


def test_overlapping_spans_kept_in_jsonl_resolved_in_bio(tmp_path):
    text = "breast cancer gene"
    task = {"id": 1, "data": {"text": text}, "annotations": [ann(1, [
        span(0, 13, "breast cancer"), span(7, 13, "cancer", "Drug"), span(0, 6, "breast", "Drug")])]}
    r = simple_export(tmp_path, [task])
    (rec,) = read_jsonl(r.version_dir / "data.jsonl")
    assert len(rec["spans"]) == 3
    (tokens, tags), = read_conll(r.version_dir / "conll" / f"{split_of(1)}.conll")
    assert bio_to_spans(tokens, tags, text) == [(0, 13, "Disease")]
    assert r.manifest["counts"]["overlaps_dropped_in_bio"] == {"entities": 2}


def test_multiple_span_controls_get_own_conll_dirs(tmp_path):
    xml = """<View><Labels name="ents" toName="t"><Label value="X"/></Labels>
      <Labels name="roles" toName="t"><Label value="R"/></Labels><Text name="t" value="$text"/></View>"""
    task = {"id": 1, "data": {"text": "X marks the spot."}, "annotations": [ann(1, [
        span(0, 1, "X", "X", "ents"), span(0, 7, "X marks", "R", "roles")])]}
    r = export_dataset([task], parse_label_config(xml), ProjectInfo(1, "p", "P", xml), ExportOptions(tmp_path))
    sp = split_of(1)
    for name, want in (("ents", [(0, 1, "X")]), ("roles", [(0, 7, "R")])):
        (tokens, tags), = read_conll(r.version_dir / "conll" / name / f"{sp}.conll")
        assert bio_to_spans(tokens, tags, "X marks the spot.") == want
    assert r.manifest["formats"]["conll"]["ents"][sp] == f"conll/ents/{sp}.conll"
