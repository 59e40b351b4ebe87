"""The annotation cost model: the literature prior, the project's own fit, its inputs (ml_backend/cost.py)."""
import numpy as np
import pytest

from ml_backend.cost import MIN_ROWS, MIN_SECONDS, PRIOR, CostModel, count_tokens, effort_samples, fit_cost_model, predicted_spans


def test_tokens_are_words_and_cjk_characters():
    assert count_tokens("Familial adenomatous polyposis (FAP) is rare.") == 6
    assert count_tokens("便秘两个多月") == 6
    assert count_tokens("服用 aspirin 后头痛") == 6
    assert count_tokens("") == 0


def test_prior_is_linear_in_tokens_and_spans_with_a_floor():
    got = PRIOR.predict([100, 100, 0], [0, 2, 0])
    assert got[0] == pytest.approx(PRIOR.intercept + 100 * PRIOR.per_token)
    assert got[1] - got[0] == pytest.approx(2 * PRIOR.per_span)
    assert got[2] >= MIN_SECONDS
    # an entity costs far more than a word read (Wei et al. 2019's sessions)
    assert PRIOR.per_span > 10 * PRIOR.per_token > 0
    assert PRIOR.predict_texts(["a b c"], [1])[0] == pytest.approx(PRIOR.predict([3], [1])[0])
    assert "Wei" in PRIOR.source


def test_fit_recovers_the_project_times_and_falls_back_to_the_prior():
    rng = np.random.default_rng(0)
    tokens = rng.integers(10, 400, size=200)
    spans = rng.integers(0, 12, size=200)
    seconds = 5.0 + 0.2 * tokens + 3.0 * spans + rng.normal(0, 1.0, size=200)
    rows = [{"tokens": t, "spans": s, "uncertainty": 0.0, "seconds": y} for t, s, y in zip(tokens, spans, seconds)]
    fit = fit_cost_model(rows)
    assert fit.n_rows == 200 and fit.source != PRIOR.source
    assert fit.per_token == pytest.approx(0.2, abs=0.01) and fit.per_span == pytest.approx(3.0, abs=0.1)
    assert fit.intercept == pytest.approx(5.0, abs=1.0)
    assert fit_cost_model(rows[: MIN_ROWS - 1]) is PRIOR
    # rows without seconds do not count towards the minimum
    assert fit_cost_model([{**r, "seconds": None} for r in rows]) is PRIOR


def test_fit_never_learns_that_more_text_takes_less_time():
    rows = [{"tokens": t, "spans": 1, "uncertainty": 0.0, "seconds": 60.0 - 0.1 * t} for t in range(10, 400, 10)]
    fit = fit_cost_model(rows)
    assert fit.per_token == 0.0
    assert fit.predict([200], [1])[0] == pytest.approx(np.mean([r["seconds"] for r in rows]), rel=0.01)


def test_effort_rows_become_fit_samples():
    rows = [
        {"task_id": 1, "seconds": 40.0, "prediction_score": 0.8, "add": 2, "relabel": 1, "rebound": 0},
        {"task_id": 2, "seconds": 10.0, "skipped": True},
        {"task_id": 3, "seconds": 600.0, "capped": True},
        {"task_id": 4, "seconds": 30.0, "prediction_score": None, "add": 0},
        {"task_id": 9, "seconds": 30.0},  # no text: left out
    ]
    texts = {1: "one two three", 2: "x", 3: "y", 4: "四五六"}
    got = effort_samples(rows, texts)
    assert [(s["tokens"], s["spans"], s["seconds"]) for s in got] == [(3, 3, 40.0), (3, 0, 30.0)]
    assert got[0]["uncertainty"] == pytest.approx(0.2) and got[1]["uncertainty"] == 0.0
    assert effort_samples(rows, texts, spans={1: 7})[0]["spans"] == 7


def test_predicted_spans_counts_runs_of_entity_tags():
    O, D = [0.9, 0.1], [0.2, 0.8]
    docs = [np.array([O, D, D, O, D]), np.array([D, O]), np.zeros((0, 2)), np.array([O, O])]
    assert list(predicted_spans(docs)) == [2, 1, 0, 0]
    # BIO: B-X then I-X is one entity
    bio = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05]])
    assert list(predicted_spans([bio])) == [1]


def test_cost_model_round_trips_to_a_dict():
    m = CostModel(1.0, 0.5, 2.0, 0.0, source="x", n_rows=3)
    assert CostModel(**m.to_dict()) == m
