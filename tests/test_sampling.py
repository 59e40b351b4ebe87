"""Query strategies: ranking, diversity, reproducibility, errors."""
import numpy as np
import pytest

from ml_backend.sampling import (
    STRATEGIES,
    confidence_score,
    get_strategy,
    span_uncertainty,
    uncertainty,
)

PROBS = np.array(
    [
        [0.98, 0.01, 0.01],  # sure
        [0.34, 0.33, 0.33],  # most uncertain under every kind
        [0.60, 0.39, 0.01],
        [0.80, 0.10, 0.10],
    ]
)


@pytest.mark.parametrize("kind", ["least_confidence", "margin", "entropy"])
def test_uncertainty_ranks_known_uncertain_row_first(kind):
    strat = get_strategy(kind)
    picked = strat.select(2, probs=PROBS, rng=np.random.default_rng(0))
    assert picked[0] == 1
    assert 0 not in picked
    u = uncertainty(PROBS, kind)
    assert u.min() >= 0 and u.max() <= 1
    assert u.argmax() == 1 and u.argmin() == 0


def test_uncertainty_values_by_hand():
    p = np.array([[0.6, 0.3, 0.1]])
    assert uncertainty(p, "least_confidence")[0] == pytest.approx(0.4)
    assert uncertainty(p, "margin")[0] == pytest.approx(0.7)
    ent = -(0.6 * np.log(0.6) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1)) / np.log(3)
    assert uncertainty(p, "entropy")[0] == pytest.approx(ent)


def test_margin_differs_from_least_confidence():
    p = np.array([[0.5, 0.49, 0.01], [0.4, 0.3, 0.3]])
    assert uncertainty(p, "least_confidence").argmax() == 1
    assert uncertainty(p, "margin").argmax() == 0


@pytest.mark.parametrize("kind", ["least_confidence", "margin", "entropy"])
def test_confidence_score_is_reverse_of_uncertainty(kind):
    conf = confidence_score(PROBS, kind)
    assert conf.min() >= 0 and conf.max() <= 1
    assert list(np.argsort(conf, kind="stable")) == list(np.argsort(-uncertainty(PROBS, kind), kind="stable"))


def test_span_uncertainty_top_k_and_empty():
    sure = np.tile([0.99, 0.005, 0.005], (30, 1))
    one_unsure = sure.copy()
    one_unsure[5] = [0.4, 0.35, 0.25]
    scores = span_uncertainty([sure, one_unsure, np.zeros((0, 3))], "least_confidence", top_k=1)
    assert scores[2] == 0.0
    assert scores[1] == pytest.approx(0.6)
    assert scores[0] == pytest.approx(0.01)
    conf = confidence_score([sure, one_unsure])
    assert conf[0] > conf[1]
    assert get_strategy("margin").select(1, probs=[sure, one_unsure], rng=np.random.default_rng(0))[0] == 1


def test_total_margin_ranks_documents_with_many_unsure_tokens_first():
    sure = np.tile([0.99, 0.005, 0.005], (40, 1))
    one_very_unsure = sure.copy()
    one_very_unsure[3:6] = [0.34, 0.33, 0.33]
    many_unsure = sure.copy()
    many_unsure[::2] = [0.85, 0.1, 0.05]  # twenty tokens, each far less unsure than those three
    docs = [sure, one_very_unsure, many_unsure, np.zeros((0, 3))]
    total = span_uncertainty(docs, "total_margin")
    np.testing.assert_allclose(total[:3], [uncertainty(d, "margin").sum() for d in docs[:3]])
    assert total[3] == 0.0
    pick = lambda name: get_strategy(name).select(1, probs=docs, rng=np.random.default_rng(0))[0]  # noqa: E731
    assert pick("margin") == 1 and pick("total_margin") == 2  # the two aggregations disagree on these documents
    # one row per document (a document label): plain margin, in [0, 1]
    np.testing.assert_allclose(uncertainty(PROBS, "total_margin"), uncertainty(PROBS, "margin"))
    with pytest.raises(ValueError, match="no confidence in \\[0, 1\\]"):
        confidence_score(docs, "total_margin")


def test_diversity_takes_one_per_cluster():
    rng = np.random.default_rng(0)
    centers = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    emb = np.concatenate([c + rng.normal(scale=0.1, size=(10, 2)) for c in centers])
    unc = np.zeros(30)
    unc[:10] = 0.9 + rng.random(10) * 0.05  # cluster 0 is the most uncertain by far
    unc[10:20] = 0.5
    unc[20:] = 0.4
    picked = get_strategy("diversity", candidate_factor=10, n_clusters=3).select(
        3, uncertainty=unc, embeddings=emb, rng=np.random.default_rng(1)
    )
    assert sorted(i // 10 for i in picked) == [0, 1, 2]
    assert picked[0] == int(np.argmax(unc))  # the cluster with the most uncertain doc goes first
    top3 = get_strategy("margin").select(3, uncertainty=unc, rng=np.random.default_rng(1))
    assert all(i < 10 for i in top3)  # plain uncertainty piles up in one cluster


def test_diversity_needs_embeddings():
    with pytest.raises(ValueError, match="embeddings"):
        get_strategy("diversity").select(2, probs=PROBS, rng=np.random.default_rng(0))


def test_random_is_seeded_and_reproducible():
    s = get_strategy("random")
    a = s.select(5, uncertainty=np.zeros(50), rng=np.random.default_rng(3))
    b = s.select(5, uncertainty=np.zeros(50), rng=np.random.default_rng(3))
    c = s.select(5, uncertainty=np.zeros(50), rng=np.random.default_rng(4))
    assert list(a) == list(b) and list(a) != list(c)
    assert len(set(a)) == 5


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_returns_distinct_pool_indices(name):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=40)
    emb = rng.normal(size=(40, 4))
    picked = get_strategy(name).select(8, probs=probs, embeddings=emb, rng=np.random.default_rng(0))
    assert len(picked) == 8 and len(set(picked.tolist())) == 8
    assert all(0 <= i < 40 for i in picked)
    assert len(get_strategy(name).select(100, probs=probs, embeddings=emb, rng=rng)) == 40


def test_unknown_strategy_lists_names():
    with pytest.raises(ValueError, match="least_confidence.*margin.*entropy.*total_margin.*diversity.*random"):
        get_strategy("coreset")
    with pytest.raises(ValueError):
        uncertainty(PROBS, "bald")


def test_cost_aware_prefers_cheap_uncertain_documents():
    from ml_backend.sampling import rank_pool

    unc = np.array([0.9, 0.9, 0.2, 0.5])
    cost = np.array([90.0, 30.0, 5.0, 100.0])  # gain per second: 0.010, 0.030, 0.040, 0.005
    order = get_strategy("cost_aware").select(4, uncertainty=unc, cost=cost, rng=np.random.default_rng(0))
    assert list(order) == [2, 1, 0, 3]
    # of two equally unsure documents the cheaper comes first; without costs it is plain gain
    assert list(get_strategy("cost_aware").select(2, uncertainty=unc[:2][::-1], cost=cost[:2][::-1], rng=np.random.default_rng(0))) == [0, 1]
    assert list(get_strategy("cost_aware").select(4, uncertainty=unc, rng=np.random.default_rng(0)))[:2] in ([0, 1], [1, 0])
    # through rank_pool: the gain is total margin over the document's tokens
    tokens = [np.array([[0.5, 0.5]] * 10), np.array([[0.5, 0.5]] * 2), np.array([[0.99, 0.01]] * 2)]
    got = rank_pool("cost_aware", 3, rng=np.random.default_rng(0), controls=[tokens], cost=np.array([100.0, 10.0, 1.0]))
    assert list(got) == [1, 0, 2]  # 2/10 > 10/100 > ~0.04/1
    with pytest.raises(ValueError, match="cost has"):
        get_strategy("cost_aware").select(2, uncertainty=unc, cost=cost[:2], rng=np.random.default_rng(0))


def test_rank_pool_is_the_strategies_ranking_and_asks_only_for_what_it_needs():
    from ml_backend.sampling import pool_uncertainty, rank_pool

    def never():
        raise AssertionError("not needed by this strategy")

    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1, 1], size=30)
    for kind in ("least_confidence", "margin", "entropy", "total_margin"):
        want = get_strategy(kind).select(30, probs=probs, rng=np.random.default_rng(5))
        got = rank_pool(kind, 30, rng=np.random.default_rng(5), controls=lambda: [probs], embeddings=never, cost=never)
        assert list(got) == list(want)
    rand = rank_pool("random", 30, n=7, rng=np.random.default_rng(5), controls=never, embeddings=never, cost=never)
    assert list(rand) == list(get_strategy("random").select(7, uncertainty=np.zeros(30), rng=np.random.default_rng(5)))
    # several controls: each document counts by its most uncertain one; a 1-D signal is a confidence
    conf = np.linspace(0.0, 1.0, 30)
    both = pool_uncertainty([probs, conf], "margin")
    np.testing.assert_allclose(both, np.maximum(uncertainty(probs, "margin"), 1.0 - conf))
    assert rank_pool("margin", 30, rng=np.random.default_rng(0), controls=[probs, conf])[0] == int(np.argmax(both))
    # diversity spreads by 1 - confidence when the task scores are given
    emb = rng.normal(size=(30, 3))
    div = rank_pool("diversity", 30, n=5, rng=np.random.default_rng(2), confidence=conf, embeddings=emb, controls=never)
    assert list(div) == list(get_strategy("diversity").select(5, uncertainty=1.0 - conf, embeddings=emb, rng=np.random.default_rng(2)))
    assert len(rank_pool("margin", 0, rng=rng, controls=never)) == 0
