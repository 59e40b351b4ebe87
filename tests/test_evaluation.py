"""Metrics equal hand-computed / sklearn / seqeval numbers; plots are written."""
import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from ml_backend.evaluation import (
    evaluate_choices,
    evaluate_spans,
    plot_confusion,
    plot_learning_curves,
    primary_metric,
)

LABELS = ["neg", "neu", "pos"]
Y_TRUE = ["neg", "neg", "neu", "pos", "pos", "pos"]
Y_PRED = ["neg", "neu", "neu", "pos", "neg", "pos"]


def test_choices_by_hand_and_sklearn():
    m = evaluate_choices(Y_TRUE, Y_PRED, LABELS)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # neg: P 1/2 R 1/2; neu: P 1/2 R 1; pos: P 1 R 2/3
    assert m["per_label"]["neg"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_label"]["neu"]["f1"] == pytest.approx(2 / 3)
    assert m["per_label"]["pos"]["f1"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    assert m["macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["micro_f1"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert m["roc_auc"] is None
    assert primary_metric(m) == m["macro_f1"]


def test_roc_auc_matches_sklearn_macro_ovr():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=6)
    m = evaluate_choices(Y_TRUE, Y_PRED, LABELS, probs)
    y = [LABELS.index(t) for t in Y_TRUE]
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    single = evaluate_choices(["pos", "pos"], ["pos", "neg"], LABELS, probs[:2])
    assert single["roc_auc"] is None


def test_macro_f1_ignores_labels_absent_from_gold_and_pred():
    m = evaluate_choices(["a", "b"], ["a", "b"], ["a", "b", "c"])
    assert m["macro_f1"] == 1.0
    assert m["per_label"]["c"]["support"] == 0


TEXTS = ["Aspirin treats colon cancer in mice .", "No disease here", "Breast cancer and ovarian cancer ."]
GOLD = [[(0, 7, "Chem"), (15, 27, "Dis")], [], [(0, 13, "Dis"), (18, 32, "Dis")]]
PRED = [[(0, 7, "Chem"), (21, 27, "Dis")], [(3, 10, "Dis")], [(0, 13, "Dis"), (18, 32, "Chem")]]


def test_spans_strict_by_hand():
    m = evaluate_spans(GOLD, PRED, TEXTS)
    # correct: Aspirin/Chem, Breast cancer/Dis -> tp 2 of 5 pred and 4 gold
    assert m["n_correct"] == 2 and m["n_pred"] == 5 and m["n_gold"] == 4
    assert m["precision"] == pytest.approx(2 / 5)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["entity_f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert m["per_label"]["Chem"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert m["per_label"]["Dis"]["precision"] == pytest.approx(1 / 3)
    assert m["per_label"]["Dis"]["recall"] == pytest.approx(1 / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert primary_metric(m) == m["entity_f1"]


def test_spans_agree_with_seqeval_strict():
    from seqeval.metrics import f1_score as seq_f1
    from seqeval.scheme import IOB2

    m = evaluate_spans(GOLD, PRED, TEXTS)
    assert m["seqeval_entity_f1"] == pytest.approx(m["entity_f1"])
    # the same case written by hand as IOB2 word tags
    gold = [["B-Chem", "O", "B-Dis", "I-Dis", "O", "O", "O"], ["O", "O", "O"], ["B-Dis", "I-Dis", "O", "B-Dis", "I-Dis", "O"]]
    pred = [["B-Chem", "O", "O", "B-Dis", "O", "O", "O"], ["O", "B-Dis", "O"], ["B-Dis", "I-Dis", "O", "B-Chem", "I-Chem", "O"]]
    assert seq_f1(gold, pred, mode="strict", scheme=IOB2) == pytest.approx(m["entity_f1"])


def test_spans_perfect_and_empty():
    assert evaluate_spans(GOLD, GOLD)["entity_f1"] == 1.0
    m = evaluate_spans([[]], [[]])
    assert m["entity_f1"] == 0.0 and m["per_label"] == {}
    with pytest.raises(ValueError):
        evaluate_spans(GOLD, PRED[:2])


def test_plots_written(tmp_path):
    cm = evaluate_choices(Y_TRUE, Y_PRED, LABELS)["confusion"]
    p1 = plot_confusion(cm, LABELS, tmp_path / "cm.png")
    curves = {
        "margin": [{"labels": 20, "mean": 0.4, "std": 0.05}, {"labels": 40, "mean": 0.6, "std": 0.02}],
        "random": [{"labels": 20, "mean": 0.4, "std": 0.05}, {"labels": 40, "mean": 0.5, "std": 0.03}],
    }
    p2 = plot_learning_curves(curves, tmp_path / "sub" / "curves.png", "macro_f1", reference=0.7)
    for p in (p1, p2):
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
