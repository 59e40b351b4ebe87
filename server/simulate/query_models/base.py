"""The query model's interface: what the simulation's round asks of the model that scores the pool."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

import numpy as np

from ml_backend.evaluation import evaluate_choices

from ..corpus import Corpus


class QueryModel(ABC):
    """Features of every document of a corpus, computed once, and a model refitted on each labeled set.

    ``fit`` returns an opaque fitted model; the other methods take it (or the probabilities ``probs`` gives)
    back and never change it (the simulation shares a repeat's seed-round model between strategies). Document
    positions (``docs``) index ``corpus``. Probabilities are ``[n, n_labels]`` for document labels, and one
    ``[T, n_tags]`` array of token probabilities per document for spans.
    """

    name: ClassVar[str]  # the name the CLI and the result JSON use
    tasks: ClassVar[tuple[str, ...]]  # the corpus tasks it labels: "choices", "spans"
    uses_encoder: ClassVar[bool] = True  # whether it needs an encoder (name or path)

    corpus: Corpus
    embeddings: np.ndarray  # one vector per document, for the diversity strategy
    domain_adaptation: dict | None = None  # the MLM record when the encoder was adapted first
    encoder_choice: dict | None = None  # why this encoder (choose_encoder's record) when none was given
    fits: list[dict] | None = None  # a record per fit, where fits are worth reporting

    @classmethod
    @abstractmethod
    def build(cls, corpus: Corpus, encoder: str | None, *, C: float | None = None, progress: bool = True,
              train_options=None, device: str | None = None) -> QueryModel:
        """The query model with its features for every document of ``corpus``; ``C`` overrides the LR's default;
        ``device``: where the encoder runs (``None``: the process's device)."""

    @abstractmethod
    def fit(self, docs: np.ndarray, pseudo_docs: np.ndarray | None = None, pseudo_targets: Sequence | None = None,
            pseudo_weight: float = 0.3) -> Any:
        """Fit on gold docs (+ pseudo-labeled docs with their predicted targets at ``pseudo_weight``)."""

    @abstractmethod
    def probs(self, model: Any, docs: np.ndarray) -> Any:
        """The fitted model's probabilities for ``docs``."""

    def uncertainty(self, probs: Any, kind: str) -> np.ndarray:
        """One uncertainty score per document under ``kind``: the loop's measure (``sampling.control_uncertainty``,
        the one ``rank_pool`` ranks by)."""
        from ml_backend.sampling import control_uncertainty

        return control_uncertainty(probs, kind)

    def predicted_spans(self, probs: Any) -> np.ndarray:
        """Entities the model predicts per document (0 for document labels): the cost model's span count."""
        if self.corpus.task != "spans":
            return np.zeros(len(probs))
        from ml_backend.cost import predicted_spans

        return predicted_spans(probs)

    @abstractmethod
    def pseudo(self, probs: Any, threshold: float) -> tuple[np.ndarray, Any]:
        """Positions (into ``probs``) of confident documents, and their predicted targets for ``fit``."""

    @abstractmethod
    def evaluate(self, model: Any, docs: np.ndarray) -> dict:
        """Metrics of the fitted model on ``docs`` against the gold targets."""

    def self_train(self, model: Any, docs: np.ndarray, unlabeled: np.ndarray, probs: Any, threshold: float,
                   weight: float) -> tuple[Any, int]:
        """Self-training after ``model`` was fitted on ``docs``: its confident predictions on ``unlabeled`` (whose
        probabilities are ``probs``) join the gold labels at ``weight`` in a refit. Returns (the model to use,
        the number of pseudo-labeled documents)."""
        keep, targets = self.pseudo(probs, threshold)
        if not len(keep):
            return model, 0
        return self.fit(docs, unlabeled[keep], targets, weight), int(len(keep))


def confident_choices(probs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions of confident document-label predictions and their predicted label ids."""
    keep = np.flatnonzero(probs.max(axis=1) >= threshold)
    return keep, probs[keep].argmax(axis=1)


def evaluate_choice_probs(corpus: Corpus, docs: np.ndarray, probs: np.ndarray) -> dict:
    """Document-label metrics of ``[n, n_labels]`` probabilities for ``docs`` against their gold labels."""
    labels = corpus.labels
    gold = np.asarray(corpus.targets)[docs]
    return evaluate_choices([labels[i] for i in gold], [labels[i] for i in probs.argmax(axis=1)], labels, probs)
