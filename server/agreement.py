"""Inter-annotator agreement (Cohen's kappa, Fleiss' kappa, pairwise span F1) and conflict resolution.

Plain functions over plain Python values, plus one accumulator that the exporter feeds one document at a
time so agreement figures need memory proportional to annotators and labels, never to documents.

Conventions:
- A kappa is ``None`` when it is undefined (expected agreement is 1: every rating is the same category).
- Fleiss' kappa accepts items with different numbers of raters: each item's agreement is computed with its
  own rater count n_i (P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1))), P-bar is the plain mean over items,
  and category proportions p_j are pooled over all ratings (sum_i n_ij / sum_i n_i). Items with fewer than
  two raters carry no agreement information and are skipped. With a fixed rater count this is exactly
  Fleiss (1971).
- Per Choices control: Fleiss' kappa over the annotations that chose something for it (a multiple-choice
  annotation's whole label set is one category), Cohen's kappa per pair of annotators who labeled the same
  documents (reported as the control's Cohen's kappa when exactly one pair exists), and per label Fleiss'
  kappa of "has this label or not" (one-vs-rest). An annotator with two annotations on a document counts twice
  for Fleiss and is skipped for Cohen.
- Span agreement is exact match of (start, end, label); F1 between two annotations is 2|A∩B| / (|A| + |B|),
  summed over every pair of annotations of the same document (micro-average), overall and per label.
"""
from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RESOLVE_POLICIES = ("majority", "latest", "ground-truth")


# --------------------------------------------------------------------------------------------- kappas
def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels for the same items (None when undefined)."""
    if len(a) != len(b):
        raise ValueError(f"both raters must label the same items: got {len(a)} and {len(b)} labels")
    return cohen_kappa_from_confusion(Counter(zip(a, b)))


def cohen_kappa_from_confusion(confusion: Mapping[tuple[Hashable, Hashable], int]) -> float | None:
    """Cohen's kappa from counts of (label of rater A, label of rater B) pairs (None when undefined)."""
    n = sum(confusion.values())
    if n == 0:
        return None
    observed = sum(c for (x, y), c in confusion.items() if x == y) / n
    row: Counter = Counter()
    col: Counter = Counter()
    for (x, y), c in confusion.items():
        row[x] += c
        col[y] += c
    expected = sum(row[k] * col.get(k, 0) for k in row) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def fleiss_kappa(table: Iterable[Sequence[int]]) -> float | None:
    """Fleiss' kappa from an items x categories table of rater counts (rater counts may vary per item)."""
    acc = FleissAccumulator()
    for row in table:
        acc.add_counts(row)
    return acc.kappa()


def fleiss_kappa_from_labels(items: Iterable[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa from each item's list of assigned labels (one label per rater)."""
    acc = FleissAccumulator()
    for labels in items:
        acc.add_labels(labels)
    return acc.kappa()


@dataclass
class FleissAccumulator:
    """Running sums for Fleiss' kappa: memory grows with categories, not with items."""

    items: int = 0
    sum_p_i: float = 0.0
    ratings: int = 0
    category_totals: Counter = field(default_factory=Counter)

    def add_counts(self, counts: Sequence[int] | Mapping[Hashable, int]) -> None:
        """Add one item given as per-category rater counts (a row or a {category: count} mapping)."""
        pairs = counts.items() if isinstance(counts, Mapping) else enumerate(counts)
        pairs = [(k, int(v)) for k, v in pairs if v]
        n_i = sum(v for _, v in pairs)
        if n_i < 2:
            return
        self.items += 1
        self.sum_p_i += (sum(v * v for _, v in pairs) - n_i) / (n_i * (n_i - 1))
        self.ratings += n_i
        for k, v in pairs:
            self.category_totals[k] += v

    def add_labels(self, labels: Sequence[Hashable]) -> None:
        """Add one item given as the list of labels its raters chose."""
        self.add_counts(Counter(labels))

    def kappa(self) -> float | None:
        """Fleiss' kappa over the items added so far (None when undefined)."""
        if self.items == 0 or self.ratings == 0:
            return None
        p_bar = self.sum_p_i / self.items
        p_e = sum((t / self.ratings) ** 2 for t in self.category_totals.values())
        if p_e >= 1.0:
            return None
        return (p_bar - p_e) / (1.0 - p_e)


# ------------------------------------------------------------------------------------------- span F1
Span = tuple[int, int, str]


def span_f1(a: Iterable[Span], b: Iterable[Span]) -> float | None:
    """F1 between two annotations' spans, exact (start, end, label) match (None when both are empty)."""
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return None
    return 2 * len(sa & sb) / (len(sa) + len(sb))


@dataclass
class SpanAgreement:
    """Pairwise span F1 summed over annotation pairs, overall and per label."""

    pairs: int = 0
    matched: Counter = field(default_factory=Counter)  # label -> 2 * |A∩B| summed over pairs
    total: Counter = field(default_factory=Counter)  # label -> |A| + |B| summed over pairs

    def add_document(self, annotations: Sequence[Iterable[Span]]) -> None:
        """Add every pair of annotations of one document."""
        sets = [set(s) for s in annotations]
        for sa, sb in itertools.combinations(sets, 2):
            self.pairs += 1
            for s in sa & sb:
                self.matched[s[2]] += 2
            for s in sa:
                self.total[s[2]] += 1
            for s in sb:
                self.total[s[2]] += 1

    def summary(self) -> dict[str, Any]:
        """Overall and per-label F1 (None where a label never occurs)."""
        tot = sum(self.total.values())
        return {
            "pairs": self.pairs,
            "f1": _round(sum(self.matched.values()) / tot) if tot else None,
            "per_label": {
                lbl: _round(self.matched[lbl] / t) if t else None for lbl, t in sorted(self.total.items())
            },
        }


def pairwise_span_f1(documents: Iterable[Sequence[Iterable[Span]]]) -> dict[str, Any]:
    """Pairwise span F1 over documents, each a list of its annotations' spans: overall and per label."""
    acc = SpanAgreement()
    for anns in documents:
        acc.add_document(anns)
    return acc.summary()


# ---------------------------------------------------------------------------------------- accumulator
@dataclass
class _ChoiceStats:
    labels: tuple[str, ...]
    multi: bool
    fleiss: FleissAccumulator = field(default_factory=FleissAccumulator)
    per_label: dict[str, FleissAccumulator] = field(default_factory=dict)
    pairs: dict[tuple[str, str], Counter] = field(default_factory=lambda: defaultdict(Counter))
    items_multi_rated: int = 0


class AgreementAccumulator:
    """Agreement figures for a whole project, fed one document at a time."""

    def __init__(self, choice_controls: Mapping[str, tuple[Sequence[str], bool]], span_controls: Iterable[str]):
        self._choices = {
            name: _ChoiceStats(tuple(labels), multi) for name, (labels, multi) in choice_controls.items()
        }
        self._spans = {name: SpanAgreement() for name in span_controls}
        self.documents = 0
        self.multi_annotated = 0

    def add_document(
        self,
        annotators: Sequence[str],
        choices: Sequence[Mapping[str, Sequence[str]]],
        spans: Sequence[Mapping[str, Iterable[Span]]],
    ) -> None:
        """Add one document: per annotation (same order in all three) its annotator and its labels."""
        self.documents += 1
        if len(annotators) < 2:
            return
        self.multi_annotated += 1
        for name, st in self._choices.items():
            rated = [(who, tuple(sorted(c[name]))) for who, c in zip(annotators, choices) if c.get(name)]
            if len(rated) < 2:
                continue
            st.items_multi_rated += 1
            if st.multi:
                st.fleiss.add_labels(["|".join(v) for _, v in rated])
            else:
                st.fleiss.add_labels([v[0] for _, v in rated])
            for lbl in st.labels:
                acc = st.per_label.setdefault(lbl, FleissAccumulator())
                acc.add_labels([lbl in v for _, v in rated])
            for (wa, va), (wb, vb) in itertools.combinations(rated, 2):
                if wa == wb:
                    continue
                if str(wa) > str(wb):
                    (wa, va), (wb, vb) = (wb, vb), (wa, va)
                st.pairs[(str(wa), str(wb))]["|".join(va), "|".join(vb)] += 1
        for name, acc in self._spans.items():
            acc.add_document([s.get(name, ()) for s in spans])

    def summary(self) -> dict[str, Any]:
        """JSON-ready agreement figures: per choice control (kappas) and per span control (F1)."""
        out: dict[str, Any] = {
            "documents": self.documents,
            "multi_annotated_documents": self.multi_annotated,
            "choices": {},
            "spans": {name: acc.summary() for name, acc in self._spans.items()},
        }
        for name, st in self._choices.items():
            pairs = {
                f"{a}~{b}": {"items": sum(c.values()), "cohen_kappa": _round(cohen_kappa_from_confusion(c))}
                for (a, b), c in sorted(st.pairs.items())
            }
            out["choices"][name] = {
                "items": st.items_multi_rated,
                "fleiss_kappa": _round(st.fleiss.kappa()),
                "cohen_kappa": next(iter(pairs.values()))["cohen_kappa"] if len(pairs) == 1 else None,
                "pairwise_cohen_kappa": pairs,
                "per_label_fleiss_kappa": {lbl: _round(a.kappa()) for lbl, a in st.per_label.items()},
            }
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


# ------------------------------------------------------------------------------------ conflict resolution
@dataclass(frozen=True)
class Vote:
    """One annotation's labels for one document, as resolution sees it."""

    annotation_id: Any
    order: tuple  # sort key: larger = more recent
    ground_truth: bool
    choices: Mapping[str, tuple[str, ...]]
    spans: frozenset  # of (from_name, start, end, label)


@dataclass
class Resolution:
    """The resolved labels of a document, and which annotation counts as the final one."""

    choices: dict[str, list[str]]
    spans: list[tuple[str, int, int, str]]
    final: Vote
    conflict: bool
    fallback: bool = False  # ground-truth policy fell back to latest


def resolve(votes: Sequence[Vote], policy: str, multi: Mapping[str, bool]) -> Resolution:
    """Resolve several annotations of one document into one label set under a policy."""
    if policy not in RESOLVE_POLICIES:
        raise ValueError(f"resolution policy must be one of {RESOLVE_POLICIES}, got {policy!r}")
    if not votes:
        raise ValueError("resolve needs at least one annotation")
    ordered = sorted(votes, key=lambda v: v.order)
    latest = ordered[-1]
    conflict = len({(tuple(sorted(v.choices.items())), v.spans) for v in votes}) > 1
    if policy == "latest" or len(votes) == 1:
        return Resolution(_choices_of(latest), sorted(latest.spans), latest, conflict)
    if policy == "ground-truth":
        gts = [v for v in ordered if v.ground_truth]
        if gts:
            return Resolution(_choices_of(gts[-1]), sorted(gts[-1].spans), gts[-1], conflict)
        return Resolution(_choices_of(latest), sorted(latest.spans), latest, conflict, fallback=True)
    # majority
    choices: dict[str, list[str]] = {}
    names = sorted({n for v in votes for n in v.choices})
    for name in names:
        rated = [v for v in ordered if v.choices.get(name)]
        if not rated:
            continue
        if multi.get(name):
            counts = Counter(lbl for v in rated for lbl in set(v.choices[name]))
            last = set(rated[-1].choices[name])
            kept = [
                lbl for lbl, c in counts.items() if 2 * c > len(rated) or (2 * c == len(rated) and lbl in last)
            ]
            choices[name] = sorted(kept)
        else:
            counts = Counter(v.choices[name][0] for v in rated)
            best = max(counts.values())
            tied = {lbl for lbl, c in counts.items() if c == best}
            # tie: the label of the most recent annotation among the tied labels
            winner = next(v.choices[name][0] for v in reversed(rated) if v.choices[name][0] in tied)
            choices[name] = [winner]
    span_counts = Counter(s for v in votes for s in v.spans)
    n = len(votes)
    spans = sorted(s for s, c in span_counts.items() if 2 * c > n or (2 * c == n and s in latest.spans))
    return Resolution(choices, spans, latest, conflict)


def _choices_of(v: Vote) -> dict[str, list[str]]:
    return {k: list(vals) for k, vals in v.choices.items() if vals}
