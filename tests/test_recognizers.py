"""The built-in pattern recognizers: what they find on the sample contracts and on hand-written text, what they
must not find, label names and synonyms, and how the cold-start matcher combines them with annotators' strings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_backend.models import Examples, SpanMatcher
from ml_backend.models.recognizers import RECOGNIZERS, recognize, recognizers_for

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_LABELS = ["Party", "Date", "Amount", "Governing law", "Term", "Obligation"]
SAMPLES = [json.loads(line) for line in (ROOT / "server/samples/contracts/docs.jsonl").read_text().splitlines() if line.strip()]
KINDS = {r.kind: r for r in RECOGNIZERS}


def found(text: str, *kinds: str) -> list[tuple[str, str]]:
    """(string, kind) of every suggestion of the given kinds, in text order."""
    return [(text[s.start:s.end], s.label) for s in recognize(text, {k: KINDS[k] for k in kinds})]


def strings(text: str, kind: str) -> list[str]:
    return [s for s, _ in found(text, kind)]


# --- the sample contracts ---------------------------------------------------------------------------------------------

def test_every_sample_contract_gets_clean_party_and_date_suggestions():
    assert len(SAMPLES) == 8
    recs = recognizers_for(CONTRACT_LABELS)
    without_date = []
    for doc in SAMPLES:
        text = doc["text"]
        spans = recognize(text, recs)
        for a, b in zip(spans, spans[1:]):
            assert a.end <= b.start  # in order, no overlaps
        for s in spans:
            piece = text[s.start:s.end]
            assert piece and piece == piece.strip() and piece[-1] not in ",;:" and s.label in CONTRACT_LABELS
        labels = {s.label for s in spans}
        assert "Party" in labels and "Obligation" not in labels
        if "Date" not in labels:
            without_date.append(doc["source_id"])
    # the one sample without a date leaves it blank: "entered into as of [Date]"
    assert without_date == ["RISEEDUCATIONCAYMANLTD_04_17_2020-EX-4.23-SERVICE AGREEMENT"]
    assert "as of [Date]" in SAMPLES[6]["text"]


@pytest.mark.parametrize("index, expected", [
    (0, [("ORGANIC PREPARATIONS INC.", "Party"), ("Manufacturer", "Party"), ("Customer", "Party"),
         ("AGAPE ATP INTERNATIONAL HOLDING LIMITED", "Party"), ("15t h day of January 2018", "Date"),
         ("12/2/2019", "Date"), ("ten (10) years", "Term")]),
    (3, [("Driven Deliveries, Inc.", "Party"), ("Consultant", "Party"), ("TruckThat LLC", "Party"),
         ("May 1, 2019", "Date"), ("$18,000", "Amount")]),
    (5, [("NETGEAR, Inc.", "Party"), ("Bay Networks, Inc.", "Party"), ("March 1, 1996", "Date"), ("one (1) year", "Term")]),
    (6, [("Rise (Tianjin) Education Information Consulting Co., Ltd.", "Party"), ("Service Provider", "Party"),
         ("Service Recipient", "Party")]),
    (7, [("Integra LifeSciences Corporation", "Party"), ("PcoMed, LLC", "Party"), ("15th day of May, 2013", "Date")]),
])
def test_known_strings_of_the_samples_are_found_with_their_label(index, expected):
    text = SAMPLES[index]["text"]
    got = set(found(text, "Party", "Date", "Amount", "Governing law", "Term"))
    assert set(expected) <= got


def test_the_samples_descriptions_are_no_parties():
    got = {s for doc in SAMPLES for s in strings(doc["text"], "Party")}
    assert not {"Nevada corporation", "Delaware corporation", "Texas limited", "Colorado limited"} & got
    assert not any(s.startswith(("ODM", "Between", "BETWEEN")) for s in got)


# --- each kind, positives and negatives -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("signed on June 21, 1999 by", "June 21, 1999"),
    ("signed on 21 June 1999 by", "21 June 1999"),
    ("made on the 15th day of January, 2018, between", "15th day of January, 2018"),
    ("Source: ACME CORP, 10-K/A, 12/2/2019", "12/2/2019"),
    ("effective 2019-12-02.", "2019-12-02"),
    ("DATED AS OF JUNE 21, 1999", "JUNE 21, 1999"),
    ("as of Dec. 8, 2005 (the", "Dec. 8, 2005"),
    ("本合同于2018年1月15日签订", "2018年1月15日"),
])
def test_dates(text, want):
    assert strings(text, "Date") == [want]


@pytest.mark.parametrize("text", ["in 1999 the parties", "see Section 2.1 and 3.4.5", "on 13/45/2019", "Form 10-12G",
                                  "for 30 days", "the May 2 meeting"])
def test_not_dates(text):
    assert strings(text, "Date") == []


@pytest.mark.parametrize("text, want", [
    ("a fee of $10,000 per month", "$10,000"),
    ("up to US$1.5 million in total", "US$1.5 million"),
    ("USD 500,000 upon signing", "USD 500,000"),
    ("EUR 2,000.50 each", "EUR 2,000.50"),
    ("a cap of €3.5 million", "€3.5 million"),
    ("£250 per day", "£250"),
    ("not less than ten thousand dollars ($10,000) per year", "ten thousand dollars ($10,000)"),
    ("Five Million Dollars (US$5,000,000) per occurrence", "Five Million Dollars (US$5,000,000)"),
    ("支付人民币100万元作为定金", "人民币100万元"),
    ("合同金额为100万元。", "100万元"),
])
def test_amounts(text, want):
    assert strings(text, "Amount") == [want]


@pytest.mark.parametrize("text", ["under Section 2.1 of the Agreement", "hire 10 employees", "in 1999", "a fee of [***]",
                                  "10% of sales", "Exhibit 10.3"])
def test_not_amounts(text):
    assert strings(text, "Amount") == []


@pytest.mark.parametrize("text, want", [
    ("a royalty of 10% of net sales", "10%"),
    ("at least ten percent (10%) of the shares", "ten percent (10%)"),
    ("interest at 5.5 per cent a year", "5.5 per cent"),
    ("占股百分之十的股东", "百分之十"),
    ("增长15％", "15％"),
])
def test_percents(text, want):
    assert strings(text, "Percent") == [want]


@pytest.mark.parametrize("text", ["hire 10 employees", "version 10.5", "the 10 percentile"])
def test_not_percents(text):
    assert strings(text, "Percent") == []


@pytest.mark.parametrize("text, want", [
    ("aspirin 500 mg daily", ["500 mg"]),
    ("cyclophosphamide 10 mg/kg IV", ["10 mg/kg"]),
    ("amoxicillin suspension 2.5 ml twice daily", ["2.5 ml"]),
    ("阿莫西林500毫克，每日三次", ["500毫克"]),
])
def test_dosages_are_the_amount_and_unit_only(text, want):
    assert strings(text, "Dosage") == want


@pytest.mark.parametrize("text", ["Form 10-12G filed", "Schedules 3L and 6L", "500 employees", "Section 8.4 CC-Pharming"])
def test_not_dosages(text):
    assert strings(text, "Dosage") == []


@pytest.mark.parametrize("text, want", [
    ("This Agreement shall be governed by the laws of the State of New York, without regard to its conflicts of law.",
     "the laws of the State of New York"),
    ("shall be construed in accordance with the laws of England and Wales.", "the laws of England and Wales"),
    ("THIS AGREEMENT SHALL BE GOVERNED BY THE LAWS OF THE STATE OF GEORGIA (WITHOUT REGARD TO CONFLICTS)",
     "THE LAWS OF THE STATE OF GEORGIA"),
    ("governed by, and construed in accordance with, the laws of the People's Republic of China (without",
     "the laws of the People's Republic of China"),
    ("interpreted under the laws of British Columbia, Canada. 1.8 Entire", "the laws of British Columbia, Canada"),
])
def test_governing_law_is_the_jurisdiction_phrase(text, want):
    assert strings(text, "Governing law") == [want]


@pytest.mark.parametrize("text", ["Acme Corp, a corporation organized under the laws of the State of Delaware, and",
                                  "Each party shall comply with the laws of the State of Texas."])
def test_incorporation_and_compliance_are_not_governing_law(text):
    assert strings(text, "Governing law") == []


@pytest.mark.parametrize("text, want", [
    ("This agreement is for a term of ten (10) years.", "ten (10) years"),
    ("This Agreement shall continue in effect for a period of three (3) years.", "three (3) years"),
    ("shall automatically renew for successive twelve (12) months", "twelve (12) months"),
    ("at the end of the initial five year term", "five year"),
])
def test_terms(text, want):
    assert strings(text, "Term") == [want]


@pytest.mark.parametrize("text", ["payable within thirty (30) days after notice.", "A six (6) months notice must be given.",
                                  "shall not compete for a period of two (2) years following termination.",
                                  "cure the breach within such thirty (30) day period", "ten employees"])
def test_not_terms(text):
    assert strings(text, "Term") == []


def test_parties_are_suffixed_names_and_their_quoted_roles():
    text = ('This Agreement is made between Acme Widgets, Inc., a Delaware corporation ("Supplier"), and Beta Retail LLC, '
            "a Texas limited liability company (hereinafter referred to as 'the Buyer'). Beta Retail LLC. Inc. shall pay.")
    assert strings(text, "Party") == ["Acme Widgets, Inc.", "Supplier", "Beta Retail LLC", "Buyer", "Beta Retail LLC"]


@pytest.mark.parametrize("text", ["Inc. shall pay the fee.", "a Delaware Corporation", "The Company and the Agreement",
                                  "a Texas limited liability company"])
def test_not_parties(text):
    assert strings(text, "Party") == []


def test_parties_are_looked_for_in_the_contracts_first_part_only():
    late = "Whereas the parties agree. " * 200 + "Acme Corp shall pay."
    assert len(late) > 4000 and strings(late, "Party") == []
    assert strings("Acme Corp shall pay.", "Party") == ["Acme Corp"]


def test_obligation_has_no_recognizer():
    assert "Obligation" not in recognizers_for(CONTRACT_LABELS)
    assert all(r.why and 0 < r.score <= 1 for r in RECOGNIZERS)


# --- label names --------------------------------------------------------------------------------------------------------

def test_labels_are_matched_by_name_casefolded_with_synonyms():
    labels = ["Effective Date", "FEES", "Percentage", "dose", "Jurisdiction", "Duration", "parties", "Money",
              "governing_law", "Obligation", "Disease", "Company"]
    kinds = {label: rec.kind for label, rec in recognizers_for(labels).items()}
    assert kinds == {"Effective Date": "Date", "FEES": "Amount", "Percentage": "Percent", "dose": "Dosage",
                     "Jurisdiction": "Governing law", "Duration": "Term", "parties": "Party", "Money": "Amount",
                     "governing_law": "Governing law"}


def test_a_span_carries_the_projects_own_label_name():
    (span,) = recognize("paid $5,000 today", recognizers_for(["fee"]))
    assert span.label == "fee" and span.score == KINDS["Amount"].score


def test_leftmost_longest_across_kinds():
    recs = recognizers_for(["Amount", "Percent", "Date"])
    text = "ten percent (10%) of $10,000 on June 21, 1999"
    assert [(text[s.start:s.end], s.label) for s in recognize(text, recs)] == [
        ("ten percent (10%)", "Percent"), ("$10,000", "Amount"), ("June 21, 1999", "Date")]


# --- the cold-start matcher -------------------------------------------------------------------------------------------

def test_a_project_without_recognizable_labels_keeps_the_matchers_old_behaviour():
    m = SpanMatcher(["Disease", "Organ"])
    assert m.recognizers == {}
    text = "On June 21, 1999 Acme Corp paid $10,000 (10%) for 500 mg; breast cancer of the colon."
    (empty,) = m.predict([text])
    assert empty.spans == [] and empty.confidence == SpanMatcher.EMPTY_CONFIDENCE
    info = m.fit(Examples(["breast cancer; colon"], [[(0, 13, "Disease"), (15, 20, "Organ")]]))
    assert info == {"surfaces": 2}
    (p,) = m.predict([text])
    assert [(text[s.start:s.end], s.label, s.score) for s in p.spans] == [("breast cancer", "Disease", 1.0), ("colon", "Organ", 1.0)]


def test_recognizers_suggest_from_the_first_document_and_annotators_strings_win():
    m = SpanMatcher(CONTRACT_LABELS)
    text = "Acme Corp shall pay $5,000 by June 21, 1999. This Agreement is governed by the laws of the State of New York."
    (cold,) = m.predict([text])
    assert [(text[s.start:s.end], s.label) for s in cold.spans] == [
        ("Acme Corp", "Party"), ("$5,000", "Amount"), ("June 21, 1999", "Date"),
        ("the laws of the State of New York", "Governing law")]
    assert cold.confidence == pytest.approx(sum(s.score for s in cold.spans) / 4)
    # annotators labeled a shorter jurisdiction string and "Acme" alone: their strings replace the overlapping patterns
    info = m.fit(Examples(["State of New York; Acme"], [[(0, 17, "Governing law"), (19, 23, "Party")]]))
    assert info["recognizers"] == {"Party": "Party", "Date": "Date", "Amount": "Amount", "Governing law": "Governing law",
                                   "Term": "Term"}
    (warm,) = m.predict([text])
    assert [(text[s.start:s.end], s.label, s.score) for s in warm.spans] == [
        ("Acme", "Party", 1.0), ("$5,000", "Amount", KINDS["Amount"].score), ("June 21, 1999", "Date", KINDS["Date"].score),
        ("State of New York", "Governing law", 1.0)]


def test_a_lexicon_label_beats_a_recognizer_of_another_label():
    m = SpanMatcher(["Date", "Term"])
    m.add("June 21, 1999", "Term")  # an annotator's choice, however odd, is what the project wants
    (p,) = m.predict(["until June 21, 1999 or 2019-12-02"])
    assert [(s.label, s.score) for s in p.spans] == [("Term", 1.0), ("Date", KINDS["Date"].score)]


def test_saved_and_loaded_matcher_keeps_its_recognizers(tmp_path):
    m = SpanMatcher(["Party", "Disease"])
    m.add("fibrosis", "Disease")
    m.save(tmp_path / "m")
    back = SpanMatcher.load(tmp_path / "m")
    text = "Acme Corp studies fibrosis."
    assert [(s.start, s.end, s.label) for s in back.predict([text])[0].spans] == [(0, 9, "Party"), (18, 26, "Disease")]
