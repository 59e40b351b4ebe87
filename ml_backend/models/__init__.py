"""Model kinds behind one interface (`Model`), chosen by name through `MODEL_KINDS`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Examples, Model, TextPrediction
from .hf import Encoder, SequenceClassifier, TokenClassifier
from .prototype import PrototypeClassifier
from .sklearn_models import SpanMatcher, TfidfClassifier

MODEL_KINDS: dict[str, type[Model]] = {
    cls.kind: cls for cls in (TokenClassifier, SequenceClassifier, TfidfClassifier, SpanMatcher, PrototypeClassifier)
}


def model_class(kind: str) -> type[Model]:
    try:
        return MODEL_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}") from None


def load_model(path: Path, **options: Any) -> Model:
    """Load any saved model; its kind is read from the metadata written by `save`."""
    meta = Model.read_meta(Path(path))
    return model_class(meta["kind"]).load(Path(path), **options)


__all__ = ["Examples", "Model", "TextPrediction", "MODEL_KINDS", "model_class", "load_model",
           "TokenClassifier", "SequenceClassifier", "TfidfClassifier", "SpanMatcher", "PrototypeClassifier", "Encoder"]
