"""One interface for every model kind: predict, fit, save, load."""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ..alignment import Span

META_FILE = "goldloop_model.json"


@dataclass
class TextPrediction:
    """What a model says about one text: spans (span models) or label probabilities (choice models)."""

    spans: list[Span] = field(default_factory=list)
    probs: dict[str, float] | None = None
    confidence: float = 1.0  # the model's confidence for the whole text, in [0, 1]


@dataclass
class Examples:
    """Training data for one control: texts and, per text, spans (start, end, label) or choice labels."""

    texts: list[str]
    targets: list[list]  # spans: [(start, end, label), ...]; choices: [label, ...]
    weights: list[float] | None = None  # per-example weight (pseudo-labels get less)
    # spans only: per example, character ranges whose tokens stay out of the loss (a teacher's uncertain tokens)
    masks: list[list[tuple[int, int]]] | None = None

    def __post_init__(self):
        if len(self.texts) != len(self.targets):
            raise ValueError(f"got {len(self.texts)} texts but {len(self.targets)} targets")
        if self.weights is not None and len(self.weights) != len(self.texts):
            raise ValueError(f"got {len(self.texts)} texts but {len(self.weights)} weights")
        if self.masks is not None and len(self.masks) != len(self.texts):
            raise ValueError(f"got {len(self.texts)} texts but {len(self.masks)} masks")


def choice_predictions(labels: Sequence[str], probs: np.ndarray, independent: bool) -> list[TextPrediction]:
    """One TextPrediction per row of label probabilities [n, k].

    ``independent``: each label has its own yes/no probability (multi-label sigmoid outputs); the text's
    confidence is then the mean certainty of those decisions. Otherwise a row is one distribution and the
    confidence is its top probability.
    """
    out = []
    for row in probs:
        conf = float(np.mean(np.maximum(row, 1 - row))) if independent else float(row.max())
        out.append(TextPrediction(probs=dict(zip(labels, map(float, row))), confidence=conf))
    return out


def chosen_labels(probs: dict[str, float] | None, multi: bool) -> list[str]:
    """The labels a choice prediction picks: every label at 0.5 or more (multi), else the most probable one."""
    if not probs:
        return []
    if multi:
        return [lbl for lbl, p in probs.items() if p >= 0.5]
    return [max(probs, key=probs.get)]


class Model(ABC):
    """A model for one control of a labeling config."""

    kind: ClassVar[str]  # registry name, e.g. "token_classifier"
    task: ClassVar[str]  # "spans" | "choices"
    # What a kind can do beyond the interface; callers ask these, never hasattr or a class check:
    learns_online: ClassVar[bool] = False  # learns from single annotations (the cold-start matcher and prototypes)
    scores_tokens: ClassVar[bool] = False  # token_probs(texts): per-token label probabilities (uncertainty, self-training)
    embeds: ClassVar[bool] = False  # embed(texts): L2-normalised text embeddings (diversity sampling)
    distillable: ClassVar[bool] = False  # a fine-tuned transformer ml_backend.distill can shrink

    def __init__(self, labels: Sequence[str], multi: bool = False):
        if not labels:
            raise ValueError("a model needs at least one label")
        self.labels = list(labels)
        self.multi = multi

    @abstractmethod
    def predict(self, texts: Sequence[str]) -> list[TextPrediction]:
        """One prediction per text, in order."""

    @abstractmethod
    def fit(self, examples: Examples, **options: Any) -> dict:
        """Train on labeled examples; return a dict of training facts (loss curve, epochs, ...)."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write everything needed to load the model again under `path`, in formats whose loading runs no code
        (safetensors, numpy arrays, JSON, skops): a model file is data, never a pickle."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, **options: Any) -> "Model":
        """Load a model written by `save`."""

    def cache_key(self) -> str:
        """What distinguishes this model's outputs (changes whenever its predictions may change)."""
        return f"{self.kind}:{id(self)}"

    # shared helpers ---------------------------------------------------------------------------
    def _write_meta(self, path: Path, **extra: Any) -> None:
        path.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "labels": self.labels, "multi": self.multi, **extra}
        (path / META_FILE).write_text(json.dumps(meta, indent=2))

    @staticmethod
    def read_meta(path: Path) -> dict:
        try:
            return json.loads((Path(path) / META_FILE).read_text())
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{path} holds no goldloop model ({META_FILE} missing)") from exc
