"""Mention replacement: a span model's training documents with their entity mentions swapped for other mentions
of the same label, drawn afresh each epoch.

A set of 200 short documents runs some 36 epochs under the span recipe's step floor: each epoch repeats the same
contexts around the same mentions. Swapping a mention for another one of its label from the training set keeps the
context and the tags true and shows the model new pairs of context and mention (Dai and Adel, "An Analysis of Simple
Data Augmentation for Named Entity Recognition", COLING 2020). No text outside the training set is used.
"""
from __future__ import annotations

import random

from ..alignment import select_non_overlapping
from .base import Examples


class MentionSwap:
    """Each epoch's version of a set of span examples: every mention of a gold document is replaced, with
    probability ``p``, by a mention of the same label drawn from the set (as often as it occurs there).

    Left as they are: documents with masked characters or a weight other than 1 (a teacher's pseudo-labels),
    documents with overlapping spans, and labels with a single distinct mention.
    """

    def __init__(self, examples: Examples, p: float, seed: int = 0):
        if not 0 <= p <= 1:
            raise ValueError(f"mention replacement probability must be in [0, 1], not {p}")
        self.examples, self.p, self.seed = examples, p, seed
        # per document its spans in order (None: left as it is), under the project's one non-overlap rule
        self.gold = [self._swappable(j) for j in range(len(examples.texts))]
        mentions: dict[str, list[str]] = {}
        for j, spans in enumerate(self.gold):
            if spans:
                text = examples.texts[j]
                for s, e, label in spans:
                    mentions.setdefault(label, []).append(text[s:e])
        self.mentions = {label: m for label, m in mentions.items() if len(set(m)) > 1}

    def _swappable(self, j: int) -> list | None:
        ex = self.examples
        if (ex.masks is not None and ex.masks[j]) or (ex.weights is not None and ex.weights[j] != 1.0):
            return None
        spans, dropped = select_non_overlapping(ex.targets[j])
        return None if dropped else spans

    @property
    def active(self) -> bool:
        """Whether any mention can change at all."""
        return self.p > 0 and bool(self.mentions)

    def draw(self, epoch: int) -> Examples:
        """The examples of this epoch (the same for the same seed and epoch)."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        ex = self.examples
        texts, targets = [], []
        for j, text in enumerate(ex.texts):
            spans = ex.targets[j]
            if self.gold[j]:
                text, spans = self._swap(text, self.gold[j], rng)
            texts.append(text)
            targets.append(spans)
        return Examples(texts, targets, ex.weights, ex.masks)

    def _swap(self, text: str, spans: list, rng: random.Random) -> tuple[str, list]:
        parts, out, at, shift = [], [], 0, 0
        for s, e, label in spans:
            pool = self.mentions.get(label)
            new = rng.choice(pool) if pool and rng.random() < self.p else text[s:e]
            parts += [text[at:s], new]
            out.append((s + shift, s + shift + len(new), label))
            shift += len(new) - (e - s)
            at = e
        parts.append(text[at:])
        return "".join(parts), out
