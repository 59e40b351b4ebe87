"""The query model ``finetune``: the loop's own model and recipe (``ml_backend.training.train_control``: a
fine-tuned SequenceClassifier or TokenClassifier, early stopping on the labeled documents that the task-id
hash puts in the dev split) trained afresh every round. Far slower (minutes per round on 2 cores), but it is
the model the live loop serves. Diversity uses the frozen encoder's mean-pooled embeddings. Self-training is the
loop's too (``ml_backend.training.self_train``): confident documents for document labels, per token for spans."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np

from ml_backend.evaluation import evaluate_spans

from ..corpus import Corpus
from ..features import encode_texts
from .base import QueryModel, confident_choices, evaluate_choice_probs


class Finetune(QueryModel):
    """The live loop's model as the query model: ``train_control`` fine-tunes a fresh encoder on each labeled set.

    ``fit`` returns the trained goldloop model; probabilities come from it (document labels: [n, k]; spans: the
    merged BIO token probabilities per document, which ``span_uncertainty`` scores as in the live loop).
    """

    name = "finetune"
    tasks = ("choices", "spans")

    def __init__(self, corpus: Corpus, encoder: str, options=None, progress: bool = True, device: str | None = None):
        from ml_backend.splits import split_of
        from ml_backend.training import TrainOptions

        self.corpus = corpus
        self.encoder = encoder
        self.control = corpus.spec
        opts = options or TrainOptions()
        self.options = dataclasses.replace(opts, cold_start_labels=0, model_name=encoder, progress=False, self_training=False,
                                           mlm_steps=0, device=device or opts.device)
        self.dev = np.array([split_of(i) == "dev" for i in corpus.ids])
        self.progress = progress
        self._embeddings: np.ndarray | None = None
        self.fits: list[dict] = []
        self._last_token_probs: tuple | None = None  # (model, docs, [(offsets, probs)]) of the last spans ``probs``

    @classmethod
    def build(cls, corpus, encoder, *, C=None, progress=True, train_options=None, device=None) -> Finetune:
        return cls(corpus, encoder, train_options, progress, device)

    @property
    def embeddings(self) -> np.ndarray:
        """Frozen-encoder document embeddings (for diversity), computed on first use."""
        if self._embeddings is None:
            self._embeddings = encode_texts(self.corpus.texts, self.encoder, progress=self.progress, device=self.options.device or None)
        return self._embeddings

    def _examples(self, docs, targets=None, weight: float = 1.0):
        from ml_backend.models import Examples

        labels = self.corpus.labels
        tg = [self.corpus.targets[d] for d in docs] if targets is None else list(targets)
        tg = [[labels[t]] for t in tg] if self.corpus.task == "choices" else [list(t) for t in tg]
        return Examples([self.corpus.texts[d] for d in docs], tg, None if weight == 1.0 else [weight] * len(docs))

    def _split(self, docs) -> tuple[np.ndarray, np.ndarray]:
        """(train, dev) positions of labeled docs: the task-id hash's dev split is held back, as in the loop."""
        docs = np.asarray(docs, dtype=np.int64)
        dev, train = docs[self.dev[docs]], docs[~self.dev[docs]]
        if len(train) == 0:  # every labeled doc hashed to dev: train on them rather than on nothing
            dev, train = dev[:0], dev
        return train, dev

    def fit(self, docs, pseudo_docs=None, pseudo_targets=None, pseudo_weight: float = 0.3):
        from ml_backend.training import merge_examples, train_control

        self._last_token_probs = None  # a new round: the last round's model need not stay in memory
        train, dev = self._split(docs)
        ex = self._examples(train)
        if pseudo_docs is not None and len(pseudo_docs):
            ex = merge_examples(ex, self._examples(pseudo_docs, pseudo_targets, pseudo_weight))
        model, info = train_control(self.control, ex, self._examples(dev), self.options)
        fit = info.get("fit") or {}
        self.fits.append({"labels": int(len(docs)), "kind": model.kind, "steps": fit.get("steps"),
                          "seconds": fit.get("seconds")})
        return model

    def self_train(self, model, docs, unlabeled, probs, threshold: float, weight: float):
        """Spans: the loop's per-token self-training (the fitted teacher labels every unlabeled document, its
        tokens under ``threshold`` masked, and continues on gold + pseudo-labels at ``weight``); document labels:
        confident documents and a refit, as for every query model."""
        if self.corpus.task != "spans":
            return super().self_train(model, docs, unlabeled, probs, threshold, weight)
        from ml_backend.training import self_train

        last, self._last_token_probs = self._last_token_probs, None
        known = last[2] if last and last[0] is model and last[1] == np.asarray(unlabeled).tobytes() else None
        model = copy.deepcopy(model)  # the teacher continues training: on a copy, the given model stays as it was
        train, dev = self._split(docs)
        opts = dataclasses.replace(self.options, self_training=True, pseudo_threshold=threshold, pseudo_weight=weight)
        model, info = self_train(self.control, model, self._examples(train), self._examples(dev),
                                 [self.corpus.texts[d] for d in unlabeled], opts, token_probs=known)
        fit = info.get("self_training_fit") or {}
        self.fits.append({"labels": int(len(docs)), "kind": model.kind, "steps": fit.get("steps"),
                          "seconds": fit.get("seconds"), "self_training": True, "pseudo_labels": info["pseudo_labels"],
                          "pseudo_masked_chars": info.get("pseudo_masked_chars", 0)})
        return model, int(info["pseudo_labels"])

    def probs(self, model, docs: np.ndarray):
        texts = [self.corpus.texts[d] for d in docs]
        if self.corpus.task == "spans":  # always a TokenClassifier: cold_start_labels is 0
            pairs = model.token_probs(texts)
            self._last_token_probs = (model, np.asarray(docs).tobytes(), pairs)  # self_train labels the pool from them
            return [p for _, p in pairs]
        if not texts:
            return np.zeros((0, len(self.corpus.labels)))
        return np.array([[p.probs[lbl] for lbl in self.corpus.labels] for p in model.predict(texts)])

    def pseudo(self, probs, threshold: float):
        if self.corpus.task == "spans":
            raise ValueError("the 'finetune' query model self-trains spans per token (self_train), not per document")
        return confident_choices(probs, threshold)

    def evaluate(self, model, docs: np.ndarray) -> dict:
        if self.corpus.task == "spans":
            texts = [self.corpus.texts[d] for d in docs]
            pred = [[s.key() for s in p.spans] for p in model.predict(texts)]
            return evaluate_spans([self.corpus.targets[d] for d in docs], pred, texts)
        return evaluate_choice_probs(self.corpus, docs, self.probs(model, docs))
