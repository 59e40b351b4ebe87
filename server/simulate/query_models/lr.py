"""Document-label query models: a class-balanced LogisticRegression on features computed once.

- ``tfidf_lr``: TF-IDF (word 1-2 grams, fitted once on every text, labels unused) + LogisticRegression
  (class-balanced weights, as for every document-label head: tiny seed sets are rarely balanced).
  Diversity uses a 64-d truncated SVD of the TF-IDF matrix.
- ``encoder_lr`` (document labels): mean-pooled, L2-normalised embeddings of a frozen encoder +
  LogisticRegression; the embeddings also feed diversity.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..corpus import Corpus
from ..features import encode_texts
from .base import QueryModel, confident_choices, evaluate_choice_probs


def fit_lr(X, y: np.ndarray, w: np.ndarray | None, n_classes: int, C: float, max_iter: int = 300,
           class_weight: str | None = None) -> Callable:
    """A LogisticRegression, or a constant when one class is present; returns a [n, n_classes] prob function."""
    from sklearn.linear_model import LogisticRegression

    classes = np.unique(y)
    if len(classes) == 1:
        const = np.zeros(n_classes)
        const[classes[0]] = 1.0
        return lambda Z: np.tile(const, (Z.shape[0], 1))
    lr = LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight)
    lr.fit(X, y, sample_weight=w)

    def proba(Z):
        out = np.zeros((Z.shape[0], n_classes))
        if Z.shape[0]:
            out[:, lr.classes_] = lr.predict_proba(Z)
        return out

    return proba


class DocumentLR(QueryModel):
    """Document-label query model on precomputed features (TF-IDF rows or frozen embeddings)."""

    tasks = ("choices",)

    def __init__(self, corpus: Corpus, X, embeddings: np.ndarray, C: float):
        self.corpus = corpus
        self.X = X
        self.embeddings = embeddings
        self.y = np.asarray(corpus.targets)
        self.C = C

    def fit(self, docs, pseudo_docs=None, pseudo_targets=None, pseudo_weight: float = 0.3):
        """Fit on gold docs (+ weighted pseudo-labeled docs); returns a model (a prob function)."""
        y = self.y[docs]
        if pseudo_docs is not None and len(pseudo_docs):
            rows = np.concatenate([docs, pseudo_docs])
            y = np.concatenate([y, np.asarray(pseudo_targets)])
            w = np.concatenate([np.ones(len(docs)), np.full(len(pseudo_docs), pseudo_weight)])
        else:
            rows, w = docs, None
        return fit_lr(self.X[rows], y, w, len(self.corpus.labels), self.C, class_weight="balanced")

    def probs(self, model, docs: np.ndarray) -> np.ndarray:
        """[n, n_labels] probabilities."""
        return model(self.X[docs])

    def pseudo(self, probs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        return confident_choices(probs, threshold)

    def evaluate(self, model, docs: np.ndarray) -> dict:
        return evaluate_choice_probs(self.corpus, docs, self.probs(model, docs))


class TfidfLR(DocumentLR):
    """TF-IDF rows + LogisticRegression (C 1.0); diversity on a truncated SVD of the TF-IDF matrix."""

    name = "tfidf_lr"
    uses_encoder = False

    @classmethod
    def build(cls, corpus, encoder=None, *, C=None, progress=True, train_options=None, device=None) -> TfidfLR:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        X = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit_transform(corpus.texts)
        k = max(1, min(64, X.shape[1] - 1, X.shape[0] - 1))
        emb = TruncatedSVD(n_components=k, random_state=0).fit_transform(X)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return cls(corpus, X.tocsr(), emb, C or 1.0)


class EncoderLR(DocumentLR):
    """Frozen-encoder text embeddings + LogisticRegression (C 10.0); the same embeddings feed diversity."""

    name = "encoder_lr"

    @classmethod
    def build(cls, corpus, encoder, *, C=None, progress=True, train_options=None, device=None) -> EncoderLR:
        emb = encode_texts(corpus.texts, encoder, progress=progress, device=device)
        return cls(corpus, emb, emb, C or 10.0)
