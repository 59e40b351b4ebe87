"""Frozen-encoder features, computed once for every document (``ml_backend.models.hf.Encoder``): mean-pooled
text embeddings and contextual token embeddings (long documents in overlapping windows, merged), on ``device``
(``auto | cpu | cuda | cuda:N``; ``None``: the process's device)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ml_backend.models.hf import Encoder


def encode_texts(texts: Sequence[str], encoder: str, *, max_length: int = 256, token_budget: int | None = None,
                 progress: bool = True, device: str | None = None) -> np.ndarray:
    """Mean-pooled (special tokens included, as sentence-transformers does), L2-normalised text embeddings."""
    return Encoder(encoder, device=device).embed(texts, max_length=max_length, token_budget=token_budget, progress=progress)


def encode_tokens(texts: Sequence[str], encoder: str, *, max_length: int = 512, stride: int = 64,
                  token_budget: int | None = None, progress: bool = True, device: str | None = None) -> tuple[list[list[tuple[int, int]]], list[np.ndarray]]:
    """Character offsets and contextual embeddings [T, d] of every token (no special tokens) per text."""
    return Encoder(encoder, device=device).token_embeddings(texts, max_length=max_length, stride=stride, token_budget=token_budget,
                                             progress=progress)
