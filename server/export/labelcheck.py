"""Suspect-label check: likely mislabeled documents per single-choice control (confident learning).

scikit-learn and cleanlab are imported only when the check runs: they are heavy.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from ml_backend.schema import TaskSpec


class LabelCheck:
    """Collects the single-choice labels of exported documents, then flags the likely mislabeled ones."""

    def __init__(self, spec: TaskSpec, wanted: bool):
        self.spec = spec
        self.active = wanted and bool(spec.choice_controls)
        self.notes: list[str] = []  # what was checked, for the manifest and the datasheet
        if wanted and not spec.choice_controls:
            self.notes.append("check_labels: the labeling config has no Choices control; nothing checked")
        self.rows: list[tuple[Any, str, dict[str, str]]] = []

    def add(self, rec: dict) -> None:
        """Keep one exported document's single-choice labels (when the check is active)."""
        if self.active:
            single = {k: v[0] for k, v in rec["choices"].items() if len(v) == 1}
            if single:
                self.rows.append((rec["id"], rec["text"], single))

    def run(self) -> list[dict]:
        """The suspect rows of suspect_labels.jsonl; the notes say what each control's check found."""
        suspects, self.notes = suspect_labels(self.rows, self.spec)
        return suspects


def suspect_labels(rows: list[tuple[Any, str, dict[str, str]]], spec: TaskSpec) -> tuple[list[dict], list[str]]:
    """Likely mislabeled documents per single-choice control (TF-IDF + LR, 5-fold CV, confident learning)."""
    import numpy as np
    from cleanlab.filter import find_label_issues
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    out: list[dict] = []
    notes: list[str] = []
    for ctrl in spec.choice_controls:
        if ctrl.multi:
            notes.append(f"{ctrl.name}: multiple-choice control not checked (single-label check only)")
            continue
        items = [(tid, text, labels[ctrl.name]) for tid, text, labels in rows if ctrl.name in labels]
        counts = Counter(lbl for _, _, lbl in items)
        classes = sorted(counts, key=list(ctrl.labels).index)
        if len(classes) < 2 or min(counts.values()) < 2:
            notes.append(
                f"{ctrl.name}: not checked: needs at least 2 labels with 2 documents each, got {dict(counts)}"
            )
            continue
        cls_index = {lbl: i for i, lbl in enumerate(classes)}
        y = np.array([cls_index[lbl] for _, _, lbl in items])
        x = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit_transform([t for _, t, _ in items])
        folds = StratifiedKFold(n_splits=min(5, min(counts.values())))
        probs = cross_val_predict(LogisticRegression(max_iter=1000), x, y, cv=folds, method="predict_proba")
        issues = find_label_issues(labels=y, pred_probs=probs, return_indices_ranked_by="self_confidence")
        for i in issues:
            tid, text, given = items[int(i)]
            k = int(np.argmax(probs[i]))
            out.append({
                "id": tid,
                "control": ctrl.name,
                "text": text,
                "given_label": given,
                "suggested_label": classes[k],
                "confidence": round(float(probs[i][k]), 4),
                "given_label_probability": round(float(probs[i][cls_index[given]]), 4),
            })
        notes.append(f"{ctrl.name}: {len(issues)} of {len(items)} documents flagged")
    return out, notes
