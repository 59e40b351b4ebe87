"""The backend's resource bounds (docs/security.md "Bounds"): labeled strings of any length, controls and labels per
config, projects in memory, project keys, online-log bytes, and the memory one labeling config can take."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from bench.fuzz_probe import CLAUSE, SPAN_CONFIG, choices_config, repeat, rss_mb, span_webhook
from ml_backend import create_app
from ml_backend.models import SpanMatcher
from ml_backend.models import prototype, sklearn_models
from ml_backend.models.sklearn_models import MAX_SURFACE_CHARS, lexicon_regex, surface_regex
from ml_backend.schema import MAX_CONTROLS, MAX_LABELS


def clause(n: int) -> str:
    """A contract clause of about n characters: repetitive, as boilerplate is."""
    return repeat(CLAUSE, n).rstrip()


def predict(client, project, text: str, config: str = SPAN_CONFIG):
    return client.post("/predict", json={"project": project, "label_config": config, "tasks": [{"id": 2, "data": {"text": text}}]})


# --- labeled strings of any length ---------------------------------------------------------------

UNICODE = st.characters(blacklist_categories=("Cs",))  # every code point a JSON string can carry


@hsettings(max_examples=150, deadline=None)
@given(surfaces=st.lists(st.one_of(
    st.text(UNICODE, min_size=1, max_size=8),
    st.builds(lambda c, n: c * n, st.text("ab中é", min_size=1, max_size=3), st.integers(1, 2000)),  # long, repetitive
), min_size=1, max_size=30))
def test_any_lexicon_compiles_and_matches_like_the_longest_first_alternation(surfaces):
    keys = {s.casefold() for s in surfaces if s.strip()}
    if not keys:
        return
    tree = re.compile(lexicon_regex(keys), re.IGNORECASE)
    flat = re.compile("|".join(surface_regex(k) for k in sorted(keys, key=lambda k: (-len(k), k))), re.IGNORECASE)
    for k in list(keys)[:5]:
        text = f"x {k} y {k[: len(k) // 2]} {k}"
        assert [m.span() for m in tree.finditer(text)] == [m.span() for m in flat.finditer(text)]


def test_nested_prefixes_and_a_5000_character_clause_compile():
    nested = ["a" * i for i in range(1, 1500)]  # every one a prefix of the next: 1,499 branch points deep
    pat = re.compile(lexicon_regex(nested), re.IGNORECASE)
    assert pat.search("b " + "a" * 1200 + " b").span() == (2, 1202)
    long = clause(5000)
    pat = re.compile(lexicon_regex([long.casefold(), long[:100].casefold()]), re.IGNORECASE)
    assert pat.search("see " + long + ".").span() == (4, 4 + len(long))


def test_the_matcher_does_not_learn_past_its_bounds(monkeypatch):
    m = SpanMatcher(["Obligation"])
    assert not m.add("x" * (MAX_SURFACE_CHARS + 1), "Obligation")
    assert m.add("x" * MAX_SURFACE_CHARS, "Obligation")
    monkeypatch.setattr(sklearn_models, "MAX_SURFACES", 3)
    assert m.add("one", "Obligation") and m.add("two", "Obligation")
    assert not m.add("three", "Obligation")  # full: a new string is refused
    assert m.add("one", "Obligation") and m.lexicon["one"]["Obligation"] == 2  # known strings still count
    assert m.chars == MAX_SURFACE_CHARS + 6


def test_a_5000_character_clause_by_webhook_keeps_predict_up_across_a_restart(settings):
    text = "Preamble. " + clause(5000) + " Signed."
    start = text.index("The Supplier")
    end = start + len(clause(5000))
    client = create_app(settings.backend_settings()).test_client()
    r = client.post("/webhook", json=span_webhook(7, text, start, end))
    assert r.status_code == 200 and r.get_json()["learned"] is True
    for c in (client, create_app(settings.backend_settings()).test_client()):  # the second replays the online log
        short = predict(c, 7, "A short text with no clause.")
        assert short.status_code == 200, short.get_json()
        assert short.get_json()["results"][0]["result"] == []
        again = predict(c, 7, "Annex. " + clause(5000) + " End.")
        assert again.status_code == 200
        spans = again.get_json()["results"][0]["result"]
        assert [(s["value"]["start"], s["value"]["labels"]) for s in spans] == [(7, ["Obligation"])]


# --- labeling configs ----------------------------------------------------------------------------


@pytest.mark.parametrize("controls, choices, limit", [(MAX_CONTROLS + 1, 2, f"limit is {MAX_CONTROLS}"), (500, 2, f"limit is {MAX_CONTROLS}"),
                                                       (1, MAX_LABELS + 1, f"limit is {MAX_LABELS}"), (1, 3000, f"limit is {MAX_LABELS}")])
def test_a_config_past_the_control_or_label_limit_answers_400_naming_it(client, controls, choices, limit):
    for route, body in (("/setup", {"project": 1, "schema": choices_config(controls, choices)}),
                        ("/predict", {"project": 1, "label_config": choices_config(controls, choices), "tasks": []})):
        r = client.post(route, json=body)
        assert r.status_code == 400 and limit in r.get_json()["message"], r.get_json()


RSS_LIMIT_MB = 400  # the bound docs/security.md states for one config at the limits, on the default MiniLM


@pytest.mark.slow
def test_a_config_at_the_limits_shares_one_encoder_and_stays_under_the_rss_bound(settings):
    """32 Choices controls, one project then five more on the same encoder: one encoder copy in memory."""
    prototype._shared.clear()
    client = create_app(settings.backend_settings()).test_client()
    base = rss_mb()[0]
    config = choices_config(MAX_CONTROLS, 20)
    r = predict(client, 1, "The patient reports chest pain.", config)
    assert r.status_code == 200 and len(r.get_json()["results"][0]["result"]) == MAX_CONTROLS
    for project in range(2, 7):
        assert predict(client, project, "Quarterly revenue rose 4%.", config).status_code == 200
    grown = rss_mb()[0] - base
    assert prototype.shared_encoders() == 1
    assert grown < RSS_LIMIT_MB, f"RSS grew {grown:.0f} MB for {MAX_CONTROLS} controls x 6 projects"


# --- projects in memory and project keys ---------------------------------------------------------


def test_projects_in_memory_are_bounded_least_recently_used_first(settings):
    app = create_app(settings.backend_settings().with_overrides(max_loaded_projects=3))
    client, registry = app.test_client(), app.extensions["goldloop"].registry
    for p in (1, 2, 3):
        assert predict(client, p, "no clause here").status_code == 200
    assert predict(client, 1, "touch project 1 again").status_code == 200
    assert predict(client, 4, "a fourth project").status_code == 200
    assert sorted(p for p, _ in registry.serving_items()) == ["1", "3", "4"]  # 2 was the least recently used
    # an unloaded project reloads from disk with what it learned online
    text = "The Supplier shall deliver."
    assert client.post("/webhook", json=span_webhook(2, text, 0, len(text))).get_json()["learned"] is True
    for p in (5, 6, 7):
        predict(client, p, "more projects")
    assert "2" not in [p for p, _ in registry.serving_items()]
    spans = predict(client, 2, "Then: The Supplier shall deliver.").get_json()["results"][0]["result"]
    assert [s["value"]["text"] for s in spans] == [text]


def test_webhooks_for_new_project_ids_are_bounded(settings):
    backend = settings.backend_settings().with_overrides(max_projects=20)
    models = Path(backend.models_dir)
    client = create_app(backend).test_client()
    text = "The Supplier shall deliver."
    answers = [client.post("/webhook", json=span_webhook(p, text, 0, len(text))) for p in range(1, 201)]
    assert [a.status_code for a in answers].count(200) == 20
    refused = [a for a in answers if a.status_code != 200]
    assert {a.status_code for a in refused} == {400} and "GOLDLOOP_MAX_PROJECTS=20" in refused[0].get_json()["message"]
    assert len([p for p in models.iterdir() if p.is_dir()]) == 20
    # a project that already has a models dir is always served, even past the limit
    client2 = create_app(backend.with_overrides(max_projects=1)).test_client()
    assert predict(client2, 5, "x").status_code == 200 and predict(client2, 6, "x").status_code == 200
    assert predict(client2, 999, "x").status_code == 400


def test_a_promotion_removes_the_older_versions_online_logs(settings):
    app = create_app(settings.backend_settings())
    client, registry = app.test_client(), app.extensions["goldloop"].registry
    text = "The Supplier shall deliver."
    client.post("/webhook", json=span_webhook(3, text, 0, len(text)))
    assert predict(client, 3, text).status_code == 200  # loads the project
    logs = list(registry.path("3").glob("online-*.jsonl"))
    assert len(logs) == 1
    pm = registry.loaded("3")
    from ml_backend.registry import ProjectModel, new_version_name

    registry.promote("3", ProjectModel(pm.spec, new_version_name(), pm.models, {"cold_start": []}))
    assert not logs[0].exists()


def test_the_cold_start_round_fits_and_evaluates_a_5000_character_clause():
    """A round below the fine-tuning threshold fits the matcher on the exported labels and scores it: the same
    lexicon regex the webhook path builds."""
    from ml_backend.models import Examples

    long = clause(5000)
    texts = [f"Doc {i}. " + long + " Signed." for i in range(3)]
    spans = [[(len(f"Doc {i}. "), len(f"Doc {i}. ") + len(long), "Obligation")] for i in range(3)]
    m = SpanMatcher(["Obligation", "Term"])
    assert m.fit(Examples(texts, spans))["surfaces"] == 1
    pred = m.predict(["Other. " + long + "."])[0]
    assert [(s.start, s.end, s.label) for s in pred.spans] == [(7, 7 + len(long), "Obligation")]
