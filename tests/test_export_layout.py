"""CoNLL tokenisation and layout: tokens split at span boundaries, CJK characters, sentences, overlaps."""
from __future__ import annotations

import pytest

from ml_backend.alignment import bio_labels, select_non_overlapping
from server.export import bio_to_spans, layout_document, tokenize_for_conll


def test_her2_positive_boundary_inside_token():
    text = "HER2-positive breast cancer responds to trastuzumab."
    toks = tokenize_for_conll(text, [(0, 4)])
    assert toks[:3] == [("HER2", 0, 4), ("-positive", 4, 13), ("breast", 14, 20)]


def test_cjk_characters_are_tokens():
    text = "患者因直肠癌入院，给予奥沙利铂化疗。"
    toks = [t for t, _, _ in tokenize_for_conll(text, [(3, 6), (11, 15)])]
    assert toks == list(text)
    assert [t for t, _, _ in tokenize_for_conll("iga肾病 test", [])] == ["iga", "肾", "病", "test"]


@pytest.mark.parametrize("text,spans", [
    ("Acme Inc. Ltd. sued. Then\tpeace\u00a0came.  End", [(0, 14, "A"), (26, 31, "B")]),
    ("患者因直肠癌入院，给予奥沙利铂化疗。iga肾病 ok. 下一句。", [(3, 6, "A"), (11, 15, "B"), (18, 23, "A")]),
    ("  leading and trailing  ", [(2, 9, "B")]),
    ("", []),
])
def test_layout_tokens_match_tokenizer_and_round_trip(text, spans):
    names = {"c": bio_labels(["A", "B"])}
    lay = layout_document(text, {"c": spans}, {"c": {"A": 0, "B": 1}}, names)
    assert lay.tokens == [t for t, _, _ in tokenize_for_conll(text, spans)]
    tags = [names["c"][i] for i in lay.tag_ids["c"]]
    assert bio_to_spans(lay.tokens, tags, text) == sorted(spans)
    path_lines = [ln for ln in lay.conll["c"].split("\n")[2:] if ln]
    assert [ln.split(" ")[0] for ln in path_lines] == lay.tokens
    assert [ln.split(" ")[-1] for ln in path_lines] == tags


def test_sentences_never_split_inside_an_entity():
    text = "Acme Inc. Ltd. sued. Then peace."
    lay = layout_document(text, {"c": [(0, 14, "A")]}, {"c": {"A": 0}}, {"c": bio_labels(["A"])})
    blocks = lay.conll["c"].split("\n\n")
    assert blocks[0] == "-DOCSTART- -X- -X- O"
    assert blocks[1].splitlines() == ["Acme -X- _ B-A", "Inc. -X- _ I-A", "Ltd. -X- _ I-A"]
    assert blocks[2:] == ["sued. -X- _ O", "Then -X- _ O\npeace. -X- _ O", ""]


def test_overlap_rule_longer_then_earlier():
    kept, dropped = select_non_overlapping([(0, 10, "A"), (2, 5, "B"), (8, 14, "C"), (20, 24, "D"), (22, 26, "E")])
    assert kept == [(0, 10, "A"), (20, 24, "D")] and dropped == 3
