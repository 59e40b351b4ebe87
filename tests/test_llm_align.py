"""server/llm/align.py: quoted spans → exact offsets (every occurrence, whole words, no overlaps), choices mapped."""
from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from ml_backend.schema import parse_label_config
from server.llm.align import occurrences, place_quotes, read_answer, result_items

CONFIG = """<View><Text name="text" value="$text"/>
<Labels name="entities" toName="text"><Label value="Company"/><Label value="Person"/></Labels>
<Choices name="sentiment" toName="text"><Choice value="Bullish"/><Choice value="Bearish"/><Choice value="Neutral"/></Choices>
</View>"""
SPEC = parse_label_config(CONFIG)

EN_WORDS = ["Apple", "shares", "rose", "Tim", "Cook", "said", "the", "Fed", "cut", "rates", "a", "an", "cat", "concat", "3M", "U.S."]
ZH_WORDS = ["苹果", "公司", "股价", "上涨", "库克", "表示", "美联储", "降息", "了", "中国", "银行", "平安"]


def test_every_whole_word_occurrence_gets_exact_offsets():
    text = "Apple said Apple will buy Pineapple; apple pie."
    assert occurrences(text, "Apple") == [(0, 5), (11, 16)]  # not inside "Pineapple"; exact case first
    assert occurrences(text, "APPLE") == [(0, 5), (11, 16), (37, 42)]  # no exact match: case ignored, edges kept
    assert occurrences(text, " said ") == [(6, 10)]  # surrounding space of a quote is not part of it
    assert occurrences("中国银行和中国平安", "中国") == [(0, 2), (5, 7)]  # CJK: no word boundaries needed


def test_overlaps_follow_the_projects_non_overlap_rule():
    counts = Counter()
    spans = place_quotes("Bank of America rose", [("America", "Company"), ("Bank of America", "Company")], counts)
    assert spans == [(0, 15, "Company")] and counts["overlaps_dropped"] == 1
    assert place_quotes("哈哈哈", [("哈哈", "Company")]) == [(0, 2, "Company")]  # overlapping occurrences of one quote
    assert place_quotes("aaa", [("aa", "Company")]) == []  # inside a longer word: not a whole-word occurrence


def test_answer_to_label_studio_items_maps_labels_and_choices_case_insensitively():
    text = "Tim Cook says Apple beat estimates."
    counts = Counter()
    answer = {"entities": [{"text": "Apple", "label": "company"}, {"text": "Tim Cook", "label": "Person"},
                           {"text": "Google", "label": "Company"}, {"text": "Apple", "label": "Fruit"}, "junk"],
              "sentiment": "BULLISH"}
    read = read_answer(SPEC, text, answer, counts)
    assert read == {"entities": [(0, 8, "Person"), (14, 19, "Company")], "sentiment": ["Bullish"]}
    assert (counts["entities_not_found"], counts["unknown_labels"], counts["malformed_entities"]) == (1, 1, 1)
    items = result_items(SPEC, text, read)
    assert [i["value"] for i in items] == [
        {"start": 0, "end": 8, "text": "Tim Cook", "labels": ["Person"]},
        {"start": 14, "end": 19, "text": "Apple", "labels": ["Company"]},
        {"choices": ["Bullish"]}]
    assert {i["from_name"] for i in items} == {"entities", "sentiment"} and all(i["to_name"] == "text" for i in items)
    counts = Counter()
    assert read_answer(SPEC, text, {"sentiment": ["Hold"]}, counts)["sentiment"] == [] and counts["unknown_choices"] == 1
    assert read_answer(SPEC, text, None) == {"entities": [], "sentiment": []}


def _check_quote(text: str, words: list[str], i: int, j: int) -> None:
    quote_words = words[i:j]
    joiner = " " if text.count(" ") else ""
    quote = joiner.join(quote_words)
    spans = place_quotes(text, [(quote, "Company")])
    assert spans, (text, quote)  # 100%: a quote that is in the text gets offsets
    assert all(text[s:e] == quote for s, e, _ in spans)  # exact offsets
    start = len(joiner.join(words[:i])) + (len(joiner) if i else 0)
    # the occurrence the quote was cut from is found, unless an earlier occurrence of it overlaps it
    assert any(s == start for s, _, _ in spans) or any(s < start < e for s, e, _ in spans)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(EN_WORDS), min_size=1, max_size=12), st.data())
def test_property_english_quotes_that_occur_get_exact_offsets(words, data):
    i = data.draw(st.integers(0, len(words) - 1))
    j = data.draw(st.integers(i + 1, len(words)))
    _check_quote(" ".join(words), words, i, j)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ZH_WORDS), min_size=1, max_size=12), st.data())
def test_property_chinese_quotes_that_occur_get_exact_offsets(words, data):
    i = data.draw(st.integers(0, len(words) - 1))
    j = data.draw(st.integers(i + 1, len(words)))
    _check_quote("".join(words), words, i, j)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40), st.data())
def test_property_any_substring_found_at_whole_word_edges_gets_exact_offsets(text, data):
    i = data.draw(st.integers(0, len(text) - 1))
    j = data.draw(st.integers(i + 1, len(text)))
    quote = text[i:j]
    spans = place_quotes(text, [(quote, "Company")])
    assert all(text[s:e].strip() == quote.strip() or text[s:e].casefold() == quote.strip().casefold() for s, e, _ in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # never overlapping
    stripped = quote.strip()
    if stripped and all(occ in occurrences(text, stripped) for occ in [(text.find(stripped), text.find(stripped) + len(stripped))]):
        assert spans  # its first exact occurrence stands as whole words: it is placed
