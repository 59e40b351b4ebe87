"""The independent de-identification evaluation set (bench/deid_independent/) is well formed, and bench/deid.py
measures the engine on it with the functions it reports (recall per type, Wilson intervals, over-masking)."""
from __future__ import annotations

import json

import pytest

from bench import deid_independent as ind
from bench.deid import over_masking, phi_recall, wilson


@pytest.fixture(scope="module")
def notes() -> list[dict]:
    return ind.load()


def test_enough_notes_per_language_and_phi_free_notes(notes):
    with_phi = {lang: sum(1 for n in notes if n["lang"] == lang and n["phi"]) for lang in ("en", "zh")}
    assert with_phi["en"] >= 200 and with_phi["zh"] >= 200, with_phi
    free = [n for n in notes if not n["phi"]]
    assert len(free) >= 30
    assert {n["lang"] for n in free} == {"en", "zh"}
    assert all(n["style"].startswith("nophi_") for n in free)  # a note without marks must be meant that way
    assert len({n["id"] for n in notes}) == len(notes)


def test_offsets_exact_no_overlap_every_type_in_both_languages(notes):
    for note in notes:
        ind.check(note)  # offsets, sorted and disjoint, trimmed, PHI-free styles free
    for lang in ("en", "zh"):
        present = {s["type"] for n in notes if n["lang"] == lang for s in n["phi"]}
        assert present == set(ind.TYPES), (lang, set(ind.TYPES) - present)


def test_jsonl_matches_sources(notes):
    # notes.jsonl is committed: it must be what the sources build to
    assert ind.build(write=False) == notes
    with ind.JSONL.open(encoding="utf-8") as f:
        assert [json.loads(line) for line in f] == notes


def test_parse_note_offsets():
    text, spans = ind.parse_note("called [[NAME|mike]] re: MRN [[ID|00417723]]，[[NAME|老王]]")
    assert text == "called mike re: MRN 00417723，老王"
    assert [(text[s["start"]:s["end"]], s["type"]) for s in spans] == [("mike", "NAME"), ("00417723", "ID"),
                                                                        ("老王", "NAME")]
    with pytest.raises(ValueError):
        ind.parse_note("[[NAM|x]]")


def test_uner_sentences_have_person_spans():
    rows = ind.load_uner()
    if not rows:
        pytest.skip("UniversalNER sentences not present")
    assert {r["lang"] for r in rows} == {"en", "zh"}
    for r in rows:
        assert r["phi"] and all(r["text"][s["start"]:s["end"]] == s["text"] for s in r["phi"])


def test_recall_and_over_masking_hand_computed():
    note = {"lang": "en", "text": "call mike at 555-0142 today",
            "phi": [{"start": 5, "end": 9, "type": "NAME", "text": "mike"},
                    {"start": 13, "end": 21, "type": "PHONE", "text": "555-0142"}]}
    rec = phi_recall([note], lambda n: [(5, 9), (13, 16)])  # the phone only partly masked: not recalled
    assert rec["en"]["NAME"]["rate"] == 1.0 and rec["en"]["PHONE"]["rate"] == 0.0
    assert rec["en"]["ALL"]["hit"] == 1 and rec["en"]["ALL"]["n"] == 2
    lo, hi = wilson(1, 2)
    assert 0 < lo < 0.5 < hi < 1 and wilson(0, 0) == (0.0, 1.0)
    assert wilson(10, 10)[1] == 1.0 and wilson(10, 10)[0] == pytest.approx(0.7225, abs=1e-3)
    # tokens call, mike, at, 555, 0142, today; the PHI tokens are left out: 2 of call/at/today masked
    om = over_masking([(note["text"], [(5, 9), (13, 21)])], lambda t: [(0, 4), (10, 12)])
    assert (om["hit"], om["n"]) == (2, 3)
    om_zh = over_masking([("帕金森病", [])], lambda t: [(0, 3)])
    assert (om_zh["hit"], om_zh["n"]) == (3, 4)  # one token per Chinese character


def test_engine_measured_by_the_bench_function(notes):
    from server.deid import find, redact

    sample = [notes[0], next(n for n in notes if n["lang"] == "zh" and n["phi"]), notes[5]]
    spans = {n["id"]: [(f.start, f.end) for f in find(n["text"])] for n in sample}
    rec = phi_recall(sample, lambda n: spans[n["id"]])
    for lang, kinds in rec.items():
        for r in kinds.values():
            assert 0.0 <= r["rate"] <= 1.0
    # the same figure by hand: an occurrence counts when each of its non-space characters lies in a found span
    hit = total = 0
    for n in sample:
        for s in n["phi"]:
            total += 1
            hit += all(ch.isspace() or any(a <= i < b for a, b in spans[n["id"]])
                       for i, ch in enumerate(n["text"][s["start"]:s["end"]], s["start"]))
    assert sum(r["ALL"]["hit"] for r in rec.values()) == hit
    assert sum(r["ALL"]["n"] for r in rec.values()) == total
    # what the import writes replaces exactly what find() reports
    for n in sample:
        assert sum(redact(n["text"]).counts.values()) == len(spans[n["id"]])
