"""Agreement statistics against hand-checked values, and conflict resolution rules."""
from __future__ import annotations

import pytest
from sklearn.metrics import cohen_kappa_score

from server.agreement import (
    AgreementAccumulator,
    FleissAccumulator,
    Vote,
    cohen_kappa,
    cohen_kappa_from_confusion,
    fleiss_kappa,
    fleiss_kappa_from_labels,
    pairwise_span_f1,
    resolve,
    span_f1,
)

# Fleiss (1971) example as tabulated in Wikipedia's "Fleiss' kappa" article: 10 subjects, 14 raters, 5 categories.
# P-bar = 0.378, P_e = 0.213, kappa = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_wikipedia_table():
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_from_labels_matches_table():
    items = [[j for j, n in enumerate(row) for _ in range(n)] for row in FLEISS_TABLE]
    assert fleiss_kappa_from_labels(items) == pytest.approx(fleiss_kappa(FLEISS_TABLE))


def test_fleiss_skips_items_with_one_rater_and_accepts_varying_counts():
    base = fleiss_kappa(FLEISS_TABLE)
    assert fleiss_kappa(FLEISS_TABLE + [[0, 1, 0, 0, 0]]) == pytest.approx(base)
    acc = FleissAccumulator()
    acc.add_labels(["a", "a", "a"])
    acc.add_labels(["a", "b"])
    # P_1 = 1, P_2 = 0 -> P-bar = 0.5; p_a = 4/5, p_b = 1/5 -> P_e = 0.68; kappa = (0.5 - 0.68) / 0.32
    assert acc.kappa() == pytest.approx((0.5 - 0.68) / 0.32)


def test_fleiss_undefined_when_every_rating_is_the_same():
    assert fleiss_kappa([[3, 0], [3, 0]]) is None
    assert fleiss_kappa([]) is None


def test_cohen_kappa_hand_checked_and_sklearn():
    # 10 items, 2 raters. Agreements: 7/10 -> p_o = 0.7.
    # rater a: yes x6, no x4; rater b: yes x5, no x5 -> p_e = (6*5 + 4*5) / 100 = 0.5 -> kappa = 0.2 / 0.5 = 0.4
    a = ["yes", "yes", "yes", "yes", "yes", "yes", "no", "no", "no", "no"]
    b = ["yes", "yes", "yes", "yes", "no", "no", "yes", "no", "no", "no"]
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_cohen_kappa_three_categories_matches_sklearn():
    a = ["x", "y", "z", "x", "x", "y", "z", "z", "y", "x", "x", "z"]
    b = ["x", "y", "y", "x", "z", "y", "z", "x", "y", "x", "y", "z"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_cohen_kappa_edge_cases():
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None
    assert cohen_kappa([], []) is None
    assert cohen_kappa_from_confusion({("a", "a"): 2, ("b", "b"): 2}) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa(["a"], ["a", "b"])


def test_span_f1_exact_match():
    a = [(0, 4, "Disease"), (10, 15, "Drug")]
    b = [(0, 4, "Disease"), (10, 14, "Drug"), (20, 25, "Drug")]
    assert span_f1(a, b) == pytest.approx(2 * 1 / 5)
    assert span_f1([], []) is None
    summary = pairwise_span_f1([[a, b], [a, a]])
    # pair 1: matched Disease 2/2, Drug 0/3; pair 2: Disease 2/2, Drug 2/2
    assert summary["pairs"] == 2
    assert summary["per_label"]["Disease"] == pytest.approx(1.0)
    assert summary["per_label"]["Drug"] == pytest.approx(2 / 5)
    assert summary["f1"] == pytest.approx(6 / 9)


def test_accumulator_two_annotators_equals_cohen():
    a = ["pos", "neg", "pos", "neu", "pos", "neg"]
    b = ["pos", "neg", "neg", "neu", "pos", "pos"]
    acc = AgreementAccumulator({"sentiment": (("pos", "neu", "neg"), False)}, ["entities"])
    for x, y in zip(a, b):
        acc.add_document(["1", "2"], [{"sentiment": (x,)}, {"sentiment": (y,)}], [{"entities": []}, {"entities": []}])
    acc.add_document(["1"], [{"sentiment": ("pos",)}], [{"entities": []}])  # single annotation: no agreement info
    s = acc.summary()["choices"]["sentiment"]
    assert s["items"] == 6
    assert s["cohen_kappa"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-6)
    assert s["pairwise_cohen_kappa"]["1~2"]["items"] == 6
    assert set(s["per_label_fleiss_kappa"]) == {"pos", "neu", "neg"}


def _vote(aid, t, choices=None, spans=(), gt=False):
    return Vote(aid, (t, aid), gt, {k: tuple(v) for k, v in (choices or {}).items()}, frozenset(spans))


def test_resolve_majority_single_choice_and_tie():
    votes = [_vote(1, 1, {"s": ["a"]}), _vote(2, 2, {"s": ["b"]}), _vote(3, 3, {"s": ["a"]})]
    assert resolve(votes, "majority", {"s": False}).choices == {"s": ["a"]}
    tie = [_vote(1, 1, {"s": ["a"]}), _vote(2, 5, {"s": ["b"]})]
    r = resolve(tie, "majority", {"s": False})
    assert r.choices == {"s": ["b"]} and r.conflict


def test_resolve_majority_spans_and_multi():
    s1, s2, s3 = ("e", 0, 4, "D"), ("e", 5, 9, "D"), ("e", 10, 12, "C")
    votes = [_vote(1, 1, {"m": ["x", "y"]}, [s1, s2]), _vote(2, 2, {"m": ["x"]}, [s1]), _vote(3, 3, {"m": ["y"]}, [s3])]
    r = resolve(votes, "majority", {"m": True})
    assert r.spans == [s1]  # s1: 2 of 3; s2, s3: 1 of 3
    assert r.choices == {"m": ["x", "y"]}  # x: 2/3, y: 2/3
    # two annotations: exactly half -> the latest decides
    r2 = resolve([_vote(1, 1, spans=[s1, s2]), _vote(2, 2, spans=[s1, s3])], "majority", {})
    assert r2.spans == [s1, s3]


def test_resolve_latest_and_ground_truth():
    old = _vote(1, 1, {"s": ["a"]}, gt=True)
    new = _vote(2, 2, {"s": ["b"]})
    assert resolve([old, new], "latest", {}).choices == {"s": ["b"]}
    gt = resolve([old, new], "ground-truth", {})
    assert gt.choices == {"s": ["a"]} and not gt.fallback
    fb = resolve([_vote(1, 1, {"s": ["a"]}), new], "ground-truth", {})
    assert fb.choices == {"s": ["b"]} and fb.fallback
    with pytest.raises(ValueError, match="policy"):
        resolve([new], "vote", {})
