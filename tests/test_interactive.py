"""Auto-Annotation: the annotator's partial result (params.context) answered at once; recorded editor requests replayed."""
import copy
import re
import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ml_backend import create_app
from ml_backend.interactive import Cover, copies, read_context
from ml_backend.models.sklearn_models import lexicon_regex, surface_regex
from ml_backend.schema import parse_label_config
from tests.plugins.backend import DATA, read_jsonl, schema_xml

RECORDED = read_jsonl(DATA / "fixtures" / "label-studio-1.23.2-interactive.jsonl")
CHOICE_CLICK, MARKED = (RECORDED[i + 1]["json"] for i, r in enumerate(RECORDED) if "MARK" in r)
TEXT = MARKED["tasks"][0]["data"]["text"]
REGION = MARKED["params"]["context"]["result"][0]


def occurrences(text: str, surface: str) -> set[tuple[int, int]]:
    """Case-insensitive occurrences of a Latin string that neither start nor end inside a longer word."""
    out, low, i = set(), text.lower(), 0
    while (i := low.find(surface.lower(), i)) >= 0:
        j = i + len(surface)
        if (i == 0 or not text[i - 1].isalnum()) and (j == len(text) or not text[j].isalnum()):
            out.add((i, j))
        i += 1
    return out


def spans(result, name="entities"):
    return {(r["value"]["start"], r["value"]["end"]): r for r in result if r["from_name"] == name}


def of_surface(found: dict, surface: str) -> set[tuple[int, int]]:
    """The found regions that are that string (the annotator's region and its copies), apart from the model's spans."""
    return {k for k, r in found.items() if r["value"]["text"].lower() == surface.lower()}


def no_overlaps(items) -> bool:
    ordered = sorted(items)
    return all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:]))


def post(client, body):
    resp = client.post("/predict", json=body)
    assert resp.status_code == 200, resp.json
    (item,) = resp.json["results"]
    return item


def test_replayed_editor_request_copies_the_marked_string_and_keeps_the_region(tiny_client):
    version = tiny_client.post("/setup", json={"project": MARKED["project"], "schema": MARKED["label_config"]}).json["model_version"]
    item = post(tiny_client, MARKED)
    assert item["interactive"] is True and item["model_version"] == version and 0 <= item["score"] <= 1
    found = spans(item["result"])
    start, end = REGION["value"]["start"], REGION["value"]["end"]
    assert found[(start, end)]["id"] == REGION["id"] and found[(start, end)]["value"]["labels"] == ["Party"]
    expected = occurrences(TEXT, "Acme Corp")
    assert len(expected) == 3 and (start, end) in expected  # "Acmecorp Holdings" is a longer word: no match
    assert of_surface(found, "Acme Corp") == expected
    for (s, e), r in found.items():
        assert r["value"]["text"] == TEXT[s:e] and r["to_name"] == "text" and r["type"] == "labels"
        if (s, e) in expected:
            assert r["value"]["labels"] == ["Party"] and r["score"] == 1.0
        else:  # the model's own spans (here the built-in patterns: a date, a company, the governing law)
            assert r["score"] < 1.0 and not any(min(e, b) > max(s, a) for a, b in expected)
    assert {r["value"]["labels"][0] for k, r in found.items() if k not in expected} == {"Date", "Party", "Governing law"}
    assert no_overlaps(found)
    # the annotator's choices are left alone: nothing re-suggests a choice against their clicks
    assert not [r for r in item["result"] if r["type"] == "choices"]


def test_replayed_choice_click_answers_at_once_without_choices(tiny_client):
    assert CHOICE_CLICK["params"]["context"] == {"result": []}
    item = post(tiny_client, CHOICE_CLICK)
    assert item["interactive"] is True and not [r for r in item["result"] if r["type"] == "choices"]
    # nothing marked: the answer is the model's spans alone, the same ones a plain prediction of the task carries
    plain = post(tiny_client, {k: v for k, v in CHOICE_CLICK.items() if k != "params"})
    assert set(spans(item["result"])) == set(spans(plain["result"])) and spans(item["result"])


@pytest.mark.parametrize("where", ["context", "draft"])
def test_the_annotators_choice_is_kept(tiny_client, where):
    body = copy.deepcopy(MARKED)
    choice = {"id": "ChOiCe0001", "from_name": "contract_type", "to_name": "text", "type": "choices", "origin": "manual",
              "value": {"choices": ["License agreement"]}}
    if where == "context":
        body["params"]["context"]["result"].append(choice)
    else:  # Label Studio sends the requesting user's drafts with the task
        body["tasks"][0]["drafts"] = [
            {"id": 3, "result": [dict(choice, value={"choices": ["Other"]})], "updated_at": "2026-11-30T02:59:00Z", "task": 1},
            {"id": 4, "result": [choice, {"from_name": "nope", "type": "choices", "value": {}}], "updated_at": "2026-11-30T02:59:30Z", "task": 1},
        ]
    item = post(tiny_client, body)
    chosen = [r for r in item["result"] if r["type"] == "choices"]
    assert [(r["id"], r["from_name"], r["value"]["choices"]) for r in chosen] == [("ChOiCe0001", "contract_type", ["License agreement"])]
    assert of_surface(spans(item["result"]), "Acme Corp") == occurrences(TEXT, "Acme Corp")


def test_model_spans_stay_unless_they_overlap_the_annotators_or_the_copies(tiny_client):
    """The matcher learned three strings from an earlier annotation; the one touching a copy gives way."""
    task = {"id": 7, "data": {"text": "Acme Corp shall deliver. Beta Retail LLC buys. State of New York law applies."}}
    taught = [("Acme Corp shall deliver", "Obligation"), ("Beta Retail LLC", "Party"), ("State of New York", "Governing law")]
    result = [{"from_name": "entities", "to_name": "text", "type": "labels",
               "value": {"start": task["data"]["text"].index(s), "end": task["data"]["text"].index(s) + len(s), "labels": [lbl]}}
              for s, lbl in taught]
    hook = tiny_client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1, "label_config": MARKED["label_config"]},
                                              "task": task, "annotation": {"id": 1, "result": result}})
    assert hook.json["learned"] is True
    plain = tiny_client.post("/predict", json={"project": MARKED["project"], "label_config": MARKED["label_config"], "tasks": MARKED["tasks"]}).json
    model = {(r["value"]["text"], r["value"]["labels"][0]) for r in plain["results"][0]["result"] if r["from_name"] == "entities"}
    assert ("Beta Retail LLC", "Party") in model and ("State of New York", "Governing law") in model
    assert ("Acme Corp shall deliver", "Obligation") in model  # overlaps a copy of "Acme Corp"
    item = post(tiny_client, MARKED)
    got = {(r["value"]["text"], r["value"]["labels"][0], r["score"]) for r in item["result"] if r["from_name"] == "entities"}
    assert ("Beta Retail LLC", "Party", 1.0) in got and ("State of New York", "Governing law", 1.0) in got
    assert not any(t == "Acme Corp shall deliver" for t, _, _ in got)
    assert no_overlaps(spans(item["result"]))
    assert set(spans(item["result"])) >= occurrences(TEXT, "Acme Corp")


def test_no_training_and_no_new_version(tiny_client):
    state = tiny_client.application.extensions["goldloop"]
    first = post(tiny_client, MARKED)
    pm = state.registry.loaded("1")
    revision, lexicon = pm.models["entities"].revision, dict(pm.models["entities"].lexicon)
    versions = tiny_client.get("/versions?project=1").json["versions"]
    again = post(tiny_client, MARKED)
    assert state.registry.loaded("1") is pm and pm.models["entities"].revision == revision and dict(pm.models["entities"].lexicon) == lexicon
    assert not lexicon  # the marked string taught the matcher nothing
    assert tiny_client.get("/versions?project=1").json["versions"] == versions
    assert again["model_version"] == first["model_version"] == pm.version
    # the same region gets the same id every time: the editor replaces a suggestion it already shows
    assert {k: r["id"] for k, r in spans(again["result"]).items()} == {k: r["id"] for k, r in spans(first["result"]).items()}


def test_a_served_token_model_answers_interactively(tiny_settings, tiny_model_dir):
    from ml_backend.models import TokenClassifier
    from ml_backend.registry import ProjectModel, Registry

    labels = ["Party", "Date", "Amount", "Governing law", "Term", "Obligation"]
    config = ('<View><Labels name="entities" toName="text">' + "".join(f'<Label value="{x}"/>' for x in labels)
              + '</Labels><Text name="text" value="$text"/></View>')
    spec = parse_label_config(config)
    client = create_app(tiny_settings).test_client()
    body = {**MARKED, "label_config": config}
    cold = client.post("/predict", json={**body, "params": None}).json["results"][0]["model_version"]
    model = TokenClassifier(labels, model_name=tiny_model_dir, max_length=64)  # untrained head: spans anywhere
    Registry(tiny_settings).promote("1", ProjectModel(spec, "v-token", {"entities": model}))
    item = post(client, body)
    assert cold != "v-token" and item["model_version"] == "v-token" and item["interactive"]
    found = spans(item["result"])
    assert no_overlaps(found) and set(found) >= occurrences(TEXT, "Acme Corp")
    for (s, e), r in found.items():
        assert r["value"]["text"] == TEXT[s:e] and r["value"]["labels"][0] in labels and 0 <= r["score"] <= 1


class Mark:
    def __init__(self, start, end, labels):
        self.start, self.end, self.labels = start, end, tuple(labels)


def test_copies_are_whole_word_and_longest_first():
    text = "Acme met acme at Acmeco and ACME. Acme Corp signed; so did ACME CORP."
    got = copies(text, [Mark(0, 4, ["Party"])])
    assert [text[s:e] for s, e, _ in got] == ["acme", "ACME", "Acme", "ACME"]  # never inside "Acmeco"
    corp = text.index("Acme Corp")
    got = copies(text, [Mark(0, 4, ["Term"]), Mark(corp, corp + 9, ["Party"])])
    assert [(text[s:e], labels) for s, e, labels in got] == [("acme", ("Term",)), ("ACME", ("Term",)), ("ACME CORP", ("Party",))]


def test_copies_in_chinese_stay_out_of_longer_words():
    text = "患者有糖尿病，糖尿病肾病明显，需控制糖尿病"
    first = text.index("糖尿病")
    mark = [Mark(first, first + 3, ["disease"])]
    everywhere = [m.start() for m in re.finditer("糖尿病", text)]
    assert [s for s, _, _ in copies(text, mark)] == everywhere[1:]  # CJK has no spaces: no word boundary needed
    longer = text.index("糖尿病肾病")
    got = copies(text, mark, model_spans=[(longer, longer + 5)])  # the model sees a longer word there
    assert [s for s, _, _ in got] == [everywhere[2]]


def _set(path, value):
    def change(body):
        node = body
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


R0 = ("params", "context", "result", 0)


@pytest.mark.parametrize("change, needle", [
    (_set(("params",), "x"), "'params' must be an object"),
    (_set(("params", "context"), [1]), "params.context must be an object or null"),
    (_set(("params", "context", "result"), "x"), "params.context.result must be a list"),
    (_set(R0, 5), "result[0] must be an object"),
    (_set(R0 + ("from_name",), "label"), "is no control of the labeling config"),
    (_set(R0 + ("to_name",), "other"), "to_name"),
    (_set(R0 + ("type",), "choices"), "is of type 'labels'"),
    (_set(R0 + ("value",), [1, 2]), "value must be an object"),
    (_set(R0 + ("id",), 7), "region id"),
    (_set(R0 + ("value", "start"), "54"), "value.start must be an integer"),
    (_set(R0 + ("value", "end"), 10_000), "outside the text"),
    (_set(R0 + ("value", "end"), 54), "outside the text"),
    (_set(R0 + ("value", "start"), -1), "outside the text"),
    (_set(R0 + ("value", "text"), "Beta Retail"), "value.text is 'Beta Retail', but the text at [54, 63) is 'Acme Corp'"),
    (_set(R0 + ("value", "text"), 3), "value.text must be a string"),
    (_set(R0 + ("value", "labels"), ["Person"]), "does not define"),
    (_set(R0 + ("value", "labels"), []), "non-empty list of strings"),
    (_set(R0, {"from_name": "risk", "to_name": "text", "type": "choices", "value": {"choices": ["extreme"]}}), "does not define"),
    (_set(R0, {"from_name": "risk", "to_name": "text", "type": "choices", "value": {"choices": ["low", "high"]}}), "takes one"),
    (lambda b: b["tasks"].append(copy.deepcopy(b["tasks"][0])), "carries one task, got 2"),
    (_set(("tasks", 0, "data"), {"body": "x"}), "cannot be annotated"),
    (_set(("tasks", 0, "data", "text"), "short"), "outside the text"),
])
def test_bad_context_answers_400_naming_the_problem(tiny_client, change, needle):
    body = copy.deepcopy(MARKED)
    change(body)
    resp = tiny_client.post("/predict", json=body)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == "BadRequest" and needle in resp.json["message"], resp.json["message"]


def test_read_context_tells_plain_from_interactive():
    spec = parse_label_config(schema_xml("contracts"))
    assert read_context(None, spec) is None and read_context({"context": None}, spec) is None
    assert read_context({"context": {"foo": 1}}, spec) is None
    assert read_context({"context": {"result": []}}, spec) == ()
    relation = {"from_id": "a", "to_id": "b", "type": "relation", "direction": "right"}
    assert read_context({"context": {"result": [relation]}}, spec) == ()
    (mark,) = read_context(MARKED["params"], spec)
    assert (mark.control.name, mark.start, mark.end, mark.labels, mark.item_id) == ("entities", 54, 63, ("Party",), REGION["id"])


def test_a_slow_model_does_not_hold_the_answer(tiny_settings, tiny_model_dir):
    """Past the wait the answer goes without the model's spans; the prediction lands in the cache for the next mark."""
    from ml_backend.cache import PredictionCache
    from ml_backend.interactive import model_prediction
    from ml_backend.models import TokenClassifier
    from ml_backend.registry import ProjectModel

    spec = parse_label_config("<View><Labels name='entities' toName='text'><Label value='Party'/></Labels><Text name='text' value='$text'/></View>")
    pm = ProjectModel(spec, "v-slow", {"entities": TokenClassifier(["Party"], model_name=tiny_model_dir, max_length=64)})
    cache = PredictionCache()
    data = {"text": TEXT}
    assert model_prediction(pm, data, cache, wait_s=0.0) is None
    for _ in range(600):  # the background prediction finishes and is cached
        if len(cache):
            break
        time.sleep(0.05)
    misses = cache.misses
    got = model_prediction(pm, data, cache, wait_s=5.0)
    assert got is not None and got["model_version"] == "v-slow" and cache.misses == misses  # answered from the cache
    assert all(r["from_name"] == "entities" for r in got["result"])


ALPHABET = "abAB 缺血性心脏病-,.1"


@settings(max_examples=200, deadline=None)
@given(surfaces=st.lists(st.text(ALPHABET, min_size=1, max_size=6), min_size=1, max_size=12), text=st.text(ALPHABET, max_size=80))
def test_the_prefix_tree_regex_matches_like_the_longest_first_alternation(surfaces, text):
    keys = {s.casefold() for s in surfaces if s.strip()}
    assume(keys)
    flat = re.compile("|".join(surface_regex(k) for k in sorted(keys, key=lambda k: (-len(k), k))), re.IGNORECASE)
    tree = re.compile(lexicon_regex(keys), re.IGNORECASE)
    assert [m.span() for m in tree.finditer(text)] == [m.span() for m in flat.finditer(text)]


@settings(max_examples=200, deadline=None)
@given(spans=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=8), probe=st.tuples(st.integers(0, 40), st.integers(0, 40)))
def test_cover_tells_overlaps_like_pairwise_checks(spans, probe):
    spans = [(a, b) for a, b in spans if a < b]
    s, e = probe
    assume(s < e)  # copies and model spans are never empty
    assert Cover(40, spans).overlaps(s, e) == any(s < b and a < e for a, b in spans)
