"""Query models: the model each simulated round refits on the labeled set and uses to score the pool.

One interface (``QueryModel``), one class per (name, task) pair, chosen by name through ``query_model_class``:
``tfidf_lr`` (``TfidfLR``, document labels), ``encoder_lr`` (``EncoderLR`` for document labels,
``EncoderTokenLR`` for spans) and ``finetune`` (``Finetune``, both). ``auto`` is ``encoder_lr`` for spans and
``tfidf_lr`` for document labels. The LR models are fast enough to refit every round on a laptop CPU.

Domain-adaptive MLM (``mlm_steps > 0``, ``encoder_lr`` only): before the features are computed, the encoder
is trained with masked-language modelling (``ml_backend.mlm.domain_adapt``, the loop's own code) on the given
texts in a temporary folder; the model's ``domain_adaptation`` records the run. ``device`` (``auto | cpu | cuda |
cuda:N``; ``None``: the process's device) is where the encoder, MLM and fine-tuning run.

Without a given encoder, the one the loop would choose for the corpus' documents is used (``choose_encoder``:
multilingual-e5-small where the default reads over 1% of the tokens as unknown, e.g. Chinese); the model's
``encoder_choice`` records why.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from ...config import default_model
from ..corpus import Corpus
from .base import QueryModel
from .finetune import Finetune
from .lr import EncoderLR, TfidfLR
from .token_lr import EncoderTokenLR

QUERY_MODELS = ("tfidf_lr", "encoder_lr", "finetune", "auto")
IMPLEMENTATIONS: tuple[type[QueryModel], ...] = (TfidfLR, EncoderLR, EncoderTokenLR, Finetune)
# self-training's (confidence threshold, pseudo-label weight) per fast query model, measured at 100 labels
# (README, "Active-learning curves"): a class-balanced LR on frozen MiniLM vectors gained most at 0.8 on
# PhraseBank and on Twitter; TF-IDF + LR probabilities are soft, 0.7 is where it starts to pass any
PSEUDO_DEFAULTS = {"tfidf_lr": (0.7, 0.3), "encoder_lr": (0.8, 0.3)}


def resolve_name(name: str, task: str) -> str:
    """The query model ``name`` stands for on a corpus of ``task``: ``auto`` picks by task."""
    if name == "auto":
        return "encoder_lr" if task == "spans" else "tfidf_lr"
    return name


def query_model_class(name: str, task: str) -> type[QueryModel]:
    """The class behind a query model name for a corpus task ("choices" or "spans")."""
    if name not in QUERY_MODELS:
        raise ValueError(f"unknown query model {name!r}; expected one of {list(QUERY_MODELS)}")
    name = resolve_name(name, task)
    for cls in IMPLEMENTATIONS:
        if cls.name == name and task in cls.tasks:
            return cls
    raise ValueError(f"query model {name!r} labels documents only; use 'encoder_lr' for spans")


def pick_encoder(corpus: Corpus, encoder: str | None, cache_dir: Path | None = None) -> tuple[str, dict | None]:
    """(loadable encoder, why): a given ``encoder`` as it is; else the one a loop round would choose for the corpus'
    documents, converted encoders written under ``cache_dir`` (default: the data dir's encoders cache)."""
    if encoder is not None:
        return encoder, None
    from ml_backend.encoders import choose_encoder

    from ...config import Settings

    return choose_encoder(corpus.texts, default_model(), Path(cache_dir) if cache_dir else Settings.from_env().data_dir.encoders)


def build_query_model(corpus: Corpus, query_model: str, encoder: str | None, *, progress: bool = True,
                      C: float | None = None, mlm_steps: int = 0, mlm_texts: Sequence[str] = (), seed: int = 0,
                      train_options=None, device: str | None = None, encoder_cache: Path | None = None) -> tuple[QueryModel, str, str | None]:
    """The query model's features, computed once for every document; returns (model, resolved name, encoder).

    ``mlm_steps > 0`` first adapts the encoder on ``mlm_texts`` (masked-language modelling) and computes the
    features with the adapted encoder.
    """
    if mlm_steps > 0:
        resolved = resolve_name(query_model, corpus.task)
        if resolved == "tfidf_lr":
            raise ValueError("domain-adaptive MLM trains an encoder: use the query model 'encoder_lr'")
        if resolved == "finetune":
            raise ValueError("the 'finetune' query model adapts its encoder in the loop's own training "
                             "(TrainOptions.mlm_steps); use --mlm-steps with 'encoder_lr'")
        cls = query_model_class(query_model, corpus.task)
        from ml_backend.mlm import domain_adapt

        encoder, choice = pick_encoder(corpus, encoder, encoder_cache)
        with tempfile.TemporaryDirectory(prefix="goldloop-mlm-") as tmp:
            adapted = Path(tmp) / "encoder"
            info = domain_adapt(encoder, list(mlm_texts), adapted, steps=mlm_steps, seed=seed, progress=progress, device=device)
            model = cls.build(corpus, str(adapted), C=C, progress=progress, train_options=train_options, device=device)
        info.pop("path", None)
        model.domain_adaptation = {"base_encoder": encoder, **info}
        model.encoder_choice = choice
        return model, cls.name, encoder
    cls = query_model_class(query_model, corpus.task)
    if not cls.uses_encoder:
        return cls.build(corpus, None, C=C, progress=progress, train_options=train_options, device=device), cls.name, None
    encoder, choice = pick_encoder(corpus, encoder, encoder_cache)
    model = cls.build(corpus, encoder, C=C, progress=progress, train_options=train_options, device=device)
    model.encoder_choice = choice
    return model, cls.name, encoder


def pseudo_defaults(query_model: str, train_options=None, task: str = "choices") -> tuple[float, float]:
    """Self-training's (threshold, weight) for a resolved query model: the loop's own for ``finetune`` (its
    document weight for document labels, its per-token weight for spans)."""
    if query_model == "finetune":
        from ml_backend.training import TrainOptions

        opts = train_options or TrainOptions()
        return opts.pseudo_threshold, (opts.pseudo_weight if task == "spans" else opts.doc_pseudo_weight)
    return PSEUDO_DEFAULTS[query_model]


__all__ = [
    "IMPLEMENTATIONS", "PSEUDO_DEFAULTS", "QUERY_MODELS", "EncoderLR", "EncoderTokenLR", "Finetune", "QueryModel",
    "TfidfLR", "build_query_model", "pseudo_defaults", "query_model_class", "resolve_name",
]
