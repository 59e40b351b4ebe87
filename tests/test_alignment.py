import numpy as np
import pytest
from transformers import AutoTokenizer

from ml_backend.alignment import bio_labels, decode_spans, encode_spans, merge_windows, non_overlapping, windows
from server.config import default_model
from tests.plugins.backend import DATA, read_jsonl


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(default_model())


def roundtrip(tok, text, spans, labels):
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    offs = [tuple(o) for o in enc["offset_mapping"]]
    ids = encode_spans(offs, spans, labels)
    probs = np.zeros((len(offs), len(bio_labels(labels))))
    probs[np.arange(len(offs)), [max(i, 0) for i in ids]] = 1.0
    return [(s.start, s.end, s.label) for s in decode_spans(text, offs, probs, labels)]


def test_bio_labels():
    assert bio_labels(["A", "B"]) == ["O", "B-A", "I-A", "B-B", "I-B"]


def test_roundtrip_english_real_abstracts(tok):
    labels = ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"]
    checked = 0
    for doc in read_jsonl(DATA / "ncbi_disease" / "test.jsonl")[:30]:
        spans = non_overlapping((s["start"], s["end"], s["label"]) for s in doc["spans"])
        got = roundtrip(tok, doc["text"], spans, labels)
        # a span ends/starts mid-token only if the annotation cuts a word; then the token's extent is returned
        for (s, e, lbl), (gs, ge, gl) in zip(spans, got):
            assert gl == lbl and gs <= s and ge >= e
        exact = sum(1 for x in spans if x in got)
        checked += len(spans)
        assert exact >= len(spans) - 1
    assert checked > 50


def test_roundtrip_chinese_without_whitespace(tok):
    labels = sorted({s["label"] for d in read_jsonl(DATA / "zh_cmedqaner" / "test.jsonl") for s in d["spans"]})
    n = 0
    for doc in read_jsonl(DATA / "zh_cmedqaner" / "test.jsonl"):
        spans = non_overlapping((s["start"], s["end"], s["label"]) for s in doc["spans"])
        assert roundtrip(tok, doc["text"], spans, labels) == spans
        n += len(spans)
    assert n > 20


def test_entity_inside_a_longer_token_keeps_the_token_extent(tok):
    text = "HER2-positive breast cancer"
    got = roundtrip(tok, text, [(0, 4, "Gene"), (14, 27, "Disease")], ["Gene", "Disease"])
    assert got == [(0, 4, "Gene"), (14, 27, "Disease")]


def test_adjacent_same_label_spans_stay_separate(tok):
    text = "胸闷呼吸困难是怎么回事"
    assert roundtrip(tok, text, [(0, 2, "symptom"), (2, 6, "symptom")], ["symptom"]) == [(0, 2, "symptom"), (2, 6, "symptom")]


def test_overlapping_spans_longer_wins():
    assert non_overlapping([(0, 10, "A"), (2, 5, "B"), (12, 14, "C")]) == [(0, 10, "A"), (12, 14, "C")]


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="not one of"):
        encode_spans([(0, 3)], [(0, 3, "X")], ["A"])


@pytest.mark.parametrize("n,size,stride", [(0, 10, 2), (5, 10, 2), (10, 10, 2), (11, 10, 2), (1000, 126, 32), (257, 64, 16)])
def test_windows_cover_everything_with_overlap(n, size, stride):
    ws = windows(n, size, stride)
    covered = set()
    for a, b in ws:
        assert b - a <= size
        covered |= set(range(a, b))
    assert covered == set(range(n))
    for (a1, b1), (a2, b2) in zip(ws, ws[1:]):
        assert b1 - a2 == stride


def test_merge_windows_takes_the_most_central_window():
    ws = windows(10, 6, 2)  # (0,6) (4,10)
    vals = [np.full((6, 1), 1.0), np.full((6, 1), 2.0)]
    merged = merge_windows(10, ws, vals)[:, 0]
    assert merged.tolist()[:4] == [1, 1, 1, 1] and merged.tolist()[6:] == [2, 2, 2, 2]
    assert set(merged.tolist()[4:6]) <= {1.0, 2.0}


def test_snap_to_words_extends_cut_words_and_leaves_cjk_and_whole_words_alone():
    from ml_backend.alignment import Span, snap_to_words

    text = "Familial adenomatous polyposis and beta-catenin tumours; 结肠癌患者"
    cut = Span(9, 14, "D", 0.7)  # "adeno" of "adenomatous"
    tail = Span(50, 55, "D")  # "mours" of "tumours"
    hyphen = Span(40, 47, "D")  # "catenin": the hyphen is a word boundary
    cjk = Span(57, 60, "D")  # "结肠癌": no word boundaries to snap to
    out = snap_to_words(text, [cut, hyphen, tail, cjk])
    assert [(s.start, s.end) for s in out] == [(9, 20), (40, 47), (48, 55), (57, 60)]
    assert out[0].score == 0.7 and text[48:55] == "tumours"
    # two spans cutting into one word would overlap once snapped: the first is kept
    assert [(s.start, s.end) for s in snap_to_words(text, [Span(9, 12, "D"), Span(14, 18, "D")])] == [(9, 20)]


def test_outside_urls_drops_spans_touching_a_web_address():
    from ml_backend.alignment import Span, outside_urls

    text = "Ally Financial pulls outlook https://t.co/X1Kal via www.example.com/a, see http://x.io"
    name = Span(0, 14, "Org")
    inside = Span(text.index("t.co"), text.index("t.co") + 4, "Location")  # a fragment of the first address
    across = Span(text.index("via") - 6, text.index("via") + 3, "Org")  # runs from the address into "via"
    www = Span(text.index("example"), text.index("example") + 7, "Org")
    after = Span(text.index("see"), text.index("see") + 3, "Org")
    assert outside_urls(text, [name, inside, across, www, after]) == [name, after]
    # "http" without "://" and a bare domain are words, not addresses
    plain = "the http header of example.com"
    spans = [Span(4, 8, "X"), Span(19, 30, "X")]
    assert outside_urls(plain, spans) == spans


def test_trim_edges_drops_separators_and_unbalanced_brackets_but_keeps_pairs():
    from ml_backend.alignment import Span, trim_edges

    text = "glucose-6-phosphate dehydrogenase (G6PD) deficiency, component (C5), 结肠癌（早期"

    def cut(s):
        i = text.index(s)
        return Span(i, i + len(s), "D")
    spans = [cut("dehydrogenase ("), cut("G6PD) deficiency,"), cut("component (C5)"), cut(", component"),
             cut("结肠癌（"), cut(" (")]
    assert [text[s.start:s.end] for s in trim_edges(text, spans)] == [
        "dehydrogenase", "G6PD) deficiency", "component (C5)", "component", "结肠癌"]
