"""Metrics for document labels and character spans, and PNG plots (confusion matrix, learning curves).

Spans are scored by exact character-span matching: a predicted span counts only when its start, end and
label all equal a gold span's (strict entity-level matching; each gold span matches at most once). On
texts where every span boundary is a token boundary this gives the same numbers as ``seqeval`` in
``mode='strict'`` with the IOB2 scheme (checked in tests/test_evaluation.py); unlike seqeval it also copes
with overlapping spans and boundaries inside tokens. When ``texts`` are given, the seqeval figure on a
regex word tokenisation is reported next to it as ``seqeval_entity_f1`` (``None`` when spans overlap).
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

SpanTuple = tuple[int, int, str]
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def _roc_auc_macro_ovr(y_true: Sequence[str], probs: np.ndarray, labels: Sequence[str]) -> float | None:
    """Macro one-vs-rest ROC AUC over the labels that occur (with negatives) in y_true."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true)
    aucs = []
    for j, lbl in enumerate(labels):
        pos = y == lbl
        if pos.any() and (~pos).any():
            aucs.append(roc_auc_score(pos.astype(int), probs[:, j]))
    return float(np.mean(aucs)) if aucs else None


def evaluate_choices(
    y_true: list[str], y_pred: list[str], labels: list[str], probs: np.ndarray | None = None
) -> dict:
    """Accuracy, macro/micro F1, per-label P/R/F1/support, confusion matrix and macro OvR ROC AUC.

    macro_f1 averages over the labels that occur in y_true or y_pred (sklearn's default label set), so a
    label absent from a small test split does not count as a zero.
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    if len(y_true) != len(y_pred):
        raise ValueError(f"got {len(y_true)} gold labels but {len(y_pred)} predictions")
    labels = list(labels)
    n = len(y_true)
    present = [lbl for lbl in labels if lbl in set(y_true) | set(y_pred)]
    out: dict = {"n": n, "labels": labels}
    if n == 0:
        out.update(accuracy=0.0, macro_f1=0.0, micro_f1=0.0, roc_auc=None,
                   per_label={lbl: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for lbl in labels},
                   confusion=[[0] * len(labels) for _ in labels])
        return out
    out["accuracy"] = float(np.mean([a == b for a, b in zip(y_true, y_pred)]))
    out["macro_f1"] = float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
    out["micro_f1"] = float(f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out["per_label"] = {
        lbl: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, lbl in enumerate(labels)
    }
    out["confusion"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    out["roc_auc"] = None
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (n, len(labels)):
            raise ValueError(f"probs must have shape {(n, len(labels))}, got {probs.shape}")
        if len(set(y_true)) > 1:
            out["roc_auc"] = _roc_auc_macro_ovr(y_true, probs, labels)
    return out


def _to_tuples(spans: Sequence) -> list[SpanTuple]:
    out = []
    for s in spans:
        if isinstance(s, dict):
            out.append((int(s["start"]), int(s["end"]), str(s["label"])))
        elif hasattr(s, "start"):
            out.append((int(s.start), int(s.end), str(s.label)))
        else:
            a, b, lbl = s[:3]
            out.append((int(a), int(b), str(lbl)))
    return out


def _iob2(text: str, spans: list[SpanTuple]) -> list[str] | None:
    """IOB2 tags on a regex word tokenisation; None when spans overlap."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    tags = ["O"] * len(words)
    for s, e, lbl in sorted(spans):
        first = True
        for i, (ws, we) in enumerate(words):
            if ws < e and we > s:
                if tags[i] != "O":
                    return None
                tags[i] = ("B-" if first else "I-") + lbl
                first = False
    return tags


def _seqeval_f1(gold: list[list[SpanTuple]], pred: list[list[SpanTuple]], texts: Sequence[str]) -> float | None:
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    yt, yp = [], []
    for g, p, t in zip(gold, pred, texts):
        a, b = _iob2(t, g), _iob2(t, p)
        if a is None or b is None:
            return None
        yt.append(a)
        yp.append(b)
    if not any(any(tag != "O" for tag in seq) for seq in yt + yp):
        return 0.0
    return float(f1_score(yt, yp, mode="strict", scheme=IOB2, zero_division=0))


def evaluate_spans(
    gold: list[list[tuple[int, int, str]]],
    pred: list[list[tuple[int, int, str]]],
    texts: list[str] | None = None,
) -> dict:
    """Strict entity-level precision/recall/F1 (micro = entity_f1, macro, per label) by exact char spans."""
    if len(gold) != len(pred):
        raise ValueError(f"got {len(gold)} gold documents but {len(pred)} predicted documents")
    gold_t = [_to_tuples(g) for g in gold]
    pred_t = [_to_tuples(p) for p in pred]
    tp: Counter = Counter()
    n_gold: Counter = Counter()
    n_pred: Counter = Counter()
    for g, p in zip(gold_t, pred_t):
        gc, pc = Counter(g), Counter(p)
        for key, c in gc.items():
            n_gold[key[2]] += c
            tp[key[2]] += min(c, pc.get(key, 0))
        for key, c in pc.items():
            n_pred[key[2]] += c
    labels = sorted(set(n_gold) | set(n_pred))
    per_label = {}
    for lbl in labels:
        p, r, f = _prf(tp[lbl], n_pred[lbl], n_gold[lbl])
        per_label[lbl] = {"precision": p, "recall": r, "f1": f, "support": int(n_gold[lbl])}
    p, r, f = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    out = {
        "n": len(gold_t),
        "precision": p,
        "recall": r,
        "entity_f1": f,
        "micro_f1": f,
        "macro_precision": float(np.mean([v["precision"] for v in per_label.values()])) if labels else 0.0,
        "macro_recall": float(np.mean([v["recall"] for v in per_label.values()])) if labels else 0.0,
        "macro_f1": float(np.mean([v["f1"] for v in per_label.values()])) if labels else 0.0,
        "per_label": per_label,
        "n_gold": int(sum(n_gold.values())),
        "n_pred": int(sum(n_pred.values())),
        "n_correct": int(sum(tp.values())),
    }
    if texts is not None:
        if len(texts) != len(gold_t):
            raise ValueError(f"got {len(gold_t)} documents but {len(texts)} texts")
        out["seqeval_entity_f1"] = _seqeval_f1(gold_t, pred_t, texts)
    return out


def primary_metric(metrics: dict) -> float:
    """The one number a run is judged by: entity_f1 for spans, macro_f1 for document labels."""
    if "entity_f1" in metrics:
        return float(metrics["entity_f1"])
    if "macro_f1" in metrics:
        return float(metrics["macro_f1"])
    raise KeyError(f"metrics have neither 'entity_f1' nor 'macro_f1'; keys: {sorted(metrics)}")


def primary_metric_name(metrics: dict) -> str:
    """The name of the primary metric in a metrics dict."""
    return "entity_f1" if "entity_f1" in metrics else "macro_f1"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path | str) -> Path:
    """Write a figure as a PNG (parent folders created) and free it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(confusion: Sequence[Sequence[int]], labels: Sequence[str], path: Path | str) -> Path:
    """Write a confusion-matrix heat map (rows gold, columns predicted) as a PNG."""
    plt = _pyplot()
    cm = np.asarray(confusion, dtype=np.int64)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    top = cm.max() if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > top / 2 else "black")
    return _save(plt, fig, path)


def plot_learning_curves(
    curves: dict, path: Path | str, metric_name: str, reference: float | None = None, title: str | None = None
) -> Path:
    """Write learning curves {name: [{"labels", "mean", "std"}]} (mean ± std band) as a PNG.

    ``reference`` (e.g. the full-data metric) is drawn as a dashed line with its 95% level dotted.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in curves.items():
        if not pts:
            continue
        x = np.array([p["labels"] for p in pts], dtype=float)
        m = np.array([p["mean"] for p in pts], dtype=float)
        s = np.array([p.get("std", 0.0) for p in pts], dtype=float)
        ax.plot(x, m, marker="o", markersize=3, label=name)
        ax.fill_between(x, m - s, m + s, alpha=0.15)
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=1, label="full data")
        ax.axhline(0.95 * reference, color="grey", linestyle=":", linewidth=1, label="95% of full data")
    ax.set_xlabel("labeled documents")
    ax.set_ylabel(metric_name)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)
