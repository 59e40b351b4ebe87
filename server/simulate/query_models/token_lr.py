"""The span query model ``encoder_lr``: contextual token embeddings of a frozen encoder (long documents in
overlapping windows, merged) + a token-level LogisticRegression, decoded to character spans with
``ml_backend.alignment``; document embeddings (mean of tokens) feed diversity."""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ml_backend.alignment import bio_labels, decode_spans, encode_spans
from ml_backend.evaluation import evaluate_spans
from ml_backend.sampling import span_uncertainty

from ..corpus import Corpus
from ..features import encode_tokens
from .base import QueryModel
from .lr import fit_lr


# CJK scripts write no spaces between words: touching tokens there are not one word (a whole Chinese sentence would
# otherwise share one averaged label)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def word_ids(offsets: Sequence[tuple[int, int]], text: str | None = None) -> np.ndarray:
    """Word index per token: a token continues the previous token's word when no character separates them and
    (given the ``text``) neither of the two is CJK."""
    ids = np.zeros(len(offsets), dtype=np.int64)
    for t in range(1, len(offsets)):
        new = offsets[t][0] != offsets[t - 1][1]
        if not new and text is not None:
            new = bool(_CJK.search(text[offsets[t][0]:offsets[t][1]]) or _CJK.search(text[offsets[t - 1][0]:offsets[t - 1][1]]))
        ids[t] = ids[t - 1] + new
    return ids


def word_mean(probs: np.ndarray, word_ids: np.ndarray) -> np.ndarray:
    """Every sub-word token takes its word's mean probabilities, so a word is never split between labels."""
    if len(probs) == 0:
        return probs
    sums = np.zeros((word_ids[-1] + 1, probs.shape[1]))
    np.add.at(sums, word_ids, probs)
    counts = np.bincount(word_ids, minlength=len(sums))[:, None]
    return (sums / counts)[word_ids]


class EncoderTokenLR(QueryModel):
    """Span query model: a token-level LogisticRegression on frozen, standardised token embeddings.

    The head predicts IO tags (O or one class per label): a linear probe on frozen features cannot tell a
    word-initial sub-word from a continuation reliably, so B/I is decided at decoding time instead — a
    token opens a span when the previous token does not carry the same label (adjacent mentions of one
    label therefore merge; rare in practice). Sub-word tokens of one word (no character between them) share
    the word's mean probabilities, so a word is never split between labels. Decoding then goes through
    ``alignment.decode_spans``.
    """

    name = "encoder_lr"
    tasks = ("spans",)

    def __init__(self, corpus: Corpus, offsets, token_embs: list[np.ndarray], C: float):
        self.corpus = corpus
        self.offsets = offsets
        self.C = C
        self.tags = ["O", *corpus.labels]
        self.bio = bio_labels(corpus.labels)
        lengths = np.array([len(e) for e in token_embs])
        self.start = np.concatenate([[0], np.cumsum(lengths)])
        dim = token_embs[0].shape[1] if token_embs else 0
        X = np.concatenate(token_embs) if lengths.sum() else np.zeros((0, dim), dtype=np.float32)
        self.embeddings = np.stack([
            e.mean(axis=0) if len(e) else np.zeros(dim, dtype=np.float32) for e in token_embs
        ]) if token_embs else np.zeros((0, dim))
        if len(X):
            X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-6)
        self.X = X.astype(np.float32)
        gold = []
        for offs, spans in zip(offsets, corpus.targets):
            ids = np.asarray(encode_spans(offs, spans, corpus.labels), dtype=np.int64) if offs else np.zeros(0, np.int64)
            gold.append((np.where(ids < 0, 0, ids) + 1) // 2)  # BIO id -> IO id: B-X/I-X -> X
        self.gold_tags = gold
        self.word_ids = [word_ids(offs, text) for offs, text in zip(offsets, corpus.texts)]

    @classmethod
    def build(cls, corpus, encoder, *, C=None, progress=True, train_options=None, device=None) -> EncoderTokenLR:
        offsets, embs = encode_tokens(corpus.texts, encoder, progress=progress, device=device)
        return cls(corpus, offsets, embs, C or 0.1)

    def to_bio(self, io_probs: np.ndarray) -> np.ndarray:
        """IO probabilities [T, 1+L] → BIO probabilities [T, 1+2L] for ``decode_spans``."""
        out = np.zeros((len(io_probs), len(self.bio)))
        out[:, 0] = io_probs[:, 0] if len(io_probs) else 0
        pred = io_probs.argmax(axis=1) if len(io_probs) else np.zeros(0, dtype=np.int64)
        for t in range(len(io_probs)):
            cont = t > 0 and pred[t] != 0 and pred[t - 1] == pred[t]
            for j in range(1, len(self.tags)):
                out[t, 2 * j if cont and j == pred[t] else 2 * j - 1] = io_probs[t, j]
        return out

    def _rows(self, docs: np.ndarray) -> np.ndarray:
        if len(docs) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(self.start[d], self.start[d + 1]) for d in docs])

    def fit(self, docs, pseudo_docs=None, pseudo_targets=None, pseudo_weight: float = 0.3):
        """Fit on gold docs' tokens (+ pseudo-labeled docs' tokens at a lower weight)."""
        rows = self._rows(docs)
        y = np.concatenate([self.gold_tags[d] for d in docs]) if len(docs) else np.zeros(0, np.int64)
        w = None
        if pseudo_docs is not None and len(pseudo_docs):
            prow = self._rows(pseudo_docs)
            py = np.concatenate(list(pseudo_targets))
            w = np.concatenate([np.ones(len(rows)), np.full(len(prow), pseudo_weight)])
            rows, y = np.concatenate([rows, prow]), np.concatenate([y, py])
        if len(rows) == 0:
            y = np.zeros(1, dtype=np.int64)
            rows = np.zeros(1, dtype=np.int64)
        return fit_lr(self.X[rows], y, w, len(self.tags), self.C, max_iter=200)

    def probs(self, model, docs: np.ndarray) -> list[np.ndarray]:
        """Per doc token probabilities [T, 1 + n_labels] (IO tags)."""
        rows = self._rows(docs)
        flat = model(self.X[rows]) if len(rows) else np.zeros((0, len(self.tags)))
        out, pos = [], 0
        for d in docs:
            n = self.start[d + 1] - self.start[d]
            out.append(word_mean(flat[pos : pos + n], self.word_ids[d]))
            pos += n
        return out

    def pseudo(self, probs: list[np.ndarray], threshold: float) -> tuple[np.ndarray, list[np.ndarray]]:
        """Documents whose document-level confidence reaches threshold, with their argmax tags."""
        conf = 1.0 - span_uncertainty(probs, "least_confidence")
        keep = np.flatnonzero(conf >= threshold)
        return keep, [probs[i].argmax(axis=1) for i in keep]

    def evaluate(self, model, docs: np.ndarray) -> dict:
        probs = self.probs(model, docs)
        pred = [
            [s.key() for s in decode_spans(self.corpus.texts[d], self.offsets[d], self.to_bio(p), self.corpus.labels)]
            for d, p in zip(docs, probs)
        ]
        return evaluate_spans([self.corpus.targets[d] for d in docs], pred)
