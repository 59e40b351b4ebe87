"""Query strategies: which unlabeled documents a person should label next.

Every strategy ranks a pool and returns indices into it, most informative first. Uncertainty scores are
all scaled to [0, 1] (higher = more uncertain), so ``confidence_score = 1 - uncertainty`` ranks exactly
the other way round: Label Studio's "Uncertainty sampling" ordering (lowest prediction score first) and
``select`` agree.

Span documents: a document's uncertainty is the mean of its ``top_k`` most uncertain tokens
(default 10; all tokens when it has fewer). The mean of the worst tokens neither favours long documents
(as ``1 - prod(max p)`` does, which tends to 1 for any long text) nor drowns one unsure mention in a sea of
confident ``O`` tokens (as the plain mean does). An empty document scores 0.

``total_margin`` instead sums the margin uncertainty of all of a document's tokens (total token uncertainty,
Settles and Craven 2008): it ranks first the documents with the most unsure tokens, which are those with many
(or many hard) mentions, so each labeled document teaches more spans, at the cost of longer documents to label.
Its scores are not in [0, 1]; only the ranking counts (the queue turns it into a rank score). For a document
label it is plain margin.

``cost_aware`` ranks by expected gain per predicted second of annotation: a document's total margin (the expected
number of unsure tokens it teaches) divided by the seconds ``ml_backend.cost`` predicts for it (tokens and predicted
spans), so of two equally unsure documents the quicker one to label comes first.

``rank_pool`` is the one entry point both the loop's queue (``server.loop.order_scores``) and the simulation
(``server.simulate.run``) rank through: it takes what the model gives per scored control and returns the pool's order.
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence, TypeVar, Union

import numpy as np

KINDS = ("least_confidence", "margin", "entropy", "total_margin")
STRATEGIES: tuple[str, ...] = ("least_confidence", "margin", "entropy", "total_margin", "diversity", "cost_aware", "random")
TOTAL_KINDS = {"total_margin": "margin"}  # summed over a document's tokens, per token the kind it maps to
DEFAULT_TOP_K = 10


def _as_probs(probs: object) -> np.ndarray:
    """A 2-D float array of probabilities, validated."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"probs must be a 2-D array [n, k], got shape {arr.shape}")
    return arr


def uncertainty(probs: np.ndarray, kind: str) -> np.ndarray:
    """Per-row uncertainty in [0, 1] of class probabilities [n, k]; higher = more uncertain."""
    p = _as_probs(probs)
    n, k = p.shape
    if kind not in KINDS:
        raise ValueError(f"unknown uncertainty kind {kind!r}; expected one of {list(KINDS)}")
    if n == 0:
        return np.zeros(0)
    if k == 1:
        return np.zeros(n)
    kind = TOTAL_KINDS.get(kind, kind)
    if kind == "least_confidence":
        return np.clip(1.0 - p.max(axis=1), 0.0, 1.0)
    if kind == "margin":
        top2 = np.sort(p, axis=1)[:, -2:]
        return np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0)
    q = np.clip(p, 1e-12, 1.0)
    ent = -(p * np.log(q)).sum(axis=1) / np.log(k)
    return np.clip(ent, 0.0, 1.0)


def span_uncertainty(token_probs: Sequence[np.ndarray], kind: str, top_k: int = DEFAULT_TOP_K) -> np.ndarray:
    """Per-document uncertainty from its tokens' [T, n_bio] probabilities: mean of the top_k worst tokens
    (a ``TOTAL_KINDS`` kind: the sum over all tokens)."""
    out = np.zeros(len(token_probs))
    for i, tp in enumerate(token_probs):
        arr = np.asarray(tp, dtype=np.float64)
        if arr.size == 0:
            continue
        u = uncertainty(arr.reshape(len(arr), -1), kind)
        if kind in TOTAL_KINDS:
            out[i] = float(u.sum())
            continue
        k = min(top_k, len(u))
        out[i] = float(np.partition(u, len(u) - k)[len(u) - k :].mean())
    return out


def _is_ragged_token_probs(probs: object) -> bool:
    return isinstance(probs, (list, tuple)) and (len(probs) == 0 or np.ndim(probs[0]) == 2)


def confidence_score(probs: object, kind: str = "least_confidence") -> np.ndarray:
    """The model's confidence in [0, 1] per row (or per document for a list of token-prob arrays)."""
    if kind in TOTAL_KINDS:
        raise ValueError(f"{kind!r} ranks documents but gives no confidence in [0, 1]; use {TOTAL_KINDS[kind]!r}")
    if _is_ragged_token_probs(probs):
        return 1.0 - span_uncertainty(probs, kind)  # type: ignore[arg-type]
    return 1.0 - uncertainty(probs, kind)  # type: ignore[arg-type]


def _rank_desc(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices by score descending; ties broken at random (reproducibly through rng)."""
    tie = rng.random(len(scores))
    return np.lexsort((tie, -np.asarray(scores, dtype=np.float64)))


class Strategy(Protocol):
    """A query strategy: ranks a pool, returns indices most informative first."""

    name: str

    def select(
        self,
        n: int,
        *,
        probs: np.ndarray | None = None,
        uncertainty: np.ndarray | None = None,
        embeddings: np.ndarray | None = None,
        rng: np.random.Generator,
    ) -> np.ndarray: ...


def _pool_size(*arrays: object) -> int:
    for a in arrays:
        if a is not None:
            return len(a)  # type: ignore[arg-type]
    raise ValueError("select needs probs, uncertainty or embeddings to know the pool")


class UncertaintySampling:
    """Most uncertain first under least confidence, margin, entropy or total margin."""

    def __init__(self, kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown uncertainty kind {kind!r}; expected one of {list(KINDS)}")
        self.name = kind
        self.kind = kind

    def scores(self, probs: np.ndarray | None, unc: np.ndarray | None) -> np.ndarray:
        """Uncertainty per pool row: the given scores, else computed from probs."""
        if unc is not None:
            return np.asarray(unc, dtype=np.float64)
        if probs is None:
            raise ValueError(f"strategy {self.name!r} needs probs or uncertainty scores")
        if _is_ragged_token_probs(probs):
            return span_uncertainty(probs, self.kind)  # type: ignore[arg-type]
        return uncertainty(probs, self.kind)

    def select(self, n, *, probs=None, uncertainty=None, embeddings=None, rng):
        """The n most uncertain pool indices."""
        u = self.scores(probs, uncertainty)
        return _rank_desc(u, rng)[: max(0, min(n, len(u)))]


class RandomSampling:
    """A seeded random permutation of the pool: the baseline every strategy must beat."""

    name = "random"

    def select(self, n, *, probs=None, uncertainty=None, embeddings=None, rng):
        """n pool indices drawn uniformly without replacement."""
        size = _pool_size(probs, uncertainty, embeddings)
        return rng.permutation(size)[: max(0, min(n, size))]


class DiversitySampling:
    """Top-uncertain candidates clustered by k-means on embeddings; clusters take turns giving their best.

    The ``candidate_factor * n`` most uncertain documents (by ``kind``) are clustered into
    ``n_clusters`` groups (default n); clusters are visited in order of their most uncertain member and each
    gives its next most uncertain document in turn, so a batch never piles up near-duplicates. Without
    probabilities or scores every document is a candidate with equal uncertainty (pure diversity).
    """

    name = "diversity"

    def __init__(self, kind: str = "margin", candidate_factor: int = 5, n_clusters: int | None = None):
        self.unc = UncertaintySampling(kind)
        self.candidate_factor = max(1, candidate_factor)
        self.n_clusters = n_clusters

    def select(self, n, *, probs=None, uncertainty=None, embeddings=None, rng):
        """n pool indices, spread over clusters of the most uncertain documents."""
        if embeddings is None:
            raise ValueError("strategy 'diversity' needs embeddings of the pool documents")
        emb = np.asarray(embeddings, dtype=np.float64)
        size = len(emb)
        n = max(0, min(n, size))
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if probs is None and uncertainty is None:
            u = np.zeros(size)
        else:
            u = self.unc.scores(probs, uncertainty)
        order = _rank_desc(u, rng)
        cand = order[: min(size, self.candidate_factor * n)]
        k = min(self.n_clusters or n, len(cand))
        if k <= 1:
            return cand[:n]
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, n_init=3, random_state=int(rng.integers(0, 2**31 - 1)))
        assign = km.fit_predict(emb[cand])
        # cand is already most-uncertain first, so each cluster's members stay in that order
        queues = [list(cand[assign == c]) for c in range(k)]
        queues = [q for q in queues if q]
        queues.sort(key=lambda q: -u[q[0]])
        picked: list[int] = []
        while len(picked) < n and queues:
            for q in queues:
                if q and len(picked) < n:
                    picked.append(int(q.pop(0)))
            queues = [q for q in queues if q]
        return np.asarray(picked, dtype=np.int64)


def get_strategy(name: str, **kw) -> Strategy:
    """The strategy registered under name; ValueError listing the names otherwise."""
    if name in KINDS:
        return UncertaintySampling(name)
    if name == "random":
        return RandomSampling()
    if name == "diversity":
        return DiversitySampling(**kw)
    if name == "cost_aware":
        return CostAwareSampling(**kw)
    raise ValueError(f"unknown query strategy {name!r}; expected one of {list(STRATEGIES)}")


class CostAwareSampling:
    """Most expected gain per predicted second first: uncertainty (``gain_kind``, total margin by default) divided by
    each document's predicted annotation seconds (``ml_backend.cost``). Without costs it is plain ``gain_kind``."""

    name = "cost_aware"

    def __init__(self, gain_kind: str = "total_margin", min_seconds: float = 1.0):
        self.unc = UncertaintySampling(gain_kind)
        self.kind = gain_kind
        # a floor under predicted seconds: a zero or negative prediction (an empty document, a bad fit) must not
        # put a document first by dividing by it
        self.min_seconds = min_seconds

    def scores(self, probs: np.ndarray | None, unc: np.ndarray | None, cost: np.ndarray | None) -> np.ndarray:
        """Gain per predicted second for every pool document."""
        gain = self.unc.scores(probs, unc)
        if cost is None:
            return gain
        cost = np.maximum(np.asarray(cost, dtype=np.float64), self.min_seconds)
        if cost.shape != gain.shape:
            raise ValueError(f"cost has {cost.shape[0] if cost.ndim else 0} entries for a pool of {len(gain)}")
        return gain / cost

    def select(self, n, *, probs=None, uncertainty=None, embeddings=None, rng, cost=None):
        """The n pool indices with the most gain per predicted second."""
        s = self.scores(probs, uncertainty, cost)
        return _rank_desc(s, rng)[: max(0, min(n, len(s)))]


# --- one ranking for the loop and the simulation ---------------------------------------------------------------

T = TypeVar("T")
# what a model says about one scored control for every pool document: label probabilities [n, k], token
# probabilities (one [T, k] array per document) or, for controls without probabilities (multi-label, the cold-start
# matcher), a confidence per document [n]
ControlSignal = Union[np.ndarray, Sequence[np.ndarray]]
Lazy = Union[T, Callable[[], T]]


def _resolve(value: Lazy[T] | None) -> T | None:
    """A lazily given input: computed only when the strategy asks for it (token probabilities, embeddings and
    costs can take seconds on a large pool)."""
    return value() if callable(value) else value


def control_uncertainty(signal: ControlSignal, kind: str, top_k: int = DEFAULT_TOP_K) -> np.ndarray:
    """Per-document uncertainty of one control's signal under ``kind``: token probabilities through
    ``span_uncertainty``, label probabilities through ``uncertainty``, a confidence per document as 1 - it."""
    if _is_ragged_token_probs(signal):
        return span_uncertainty(signal, kind, top_k)  # type: ignore[arg-type]
    arr = np.asarray(signal, dtype=np.float64)
    if arr.ndim == 1:
        return 1.0 - arr
    return uncertainty(arr, kind)


def pool_uncertainty(controls: Sequence[ControlSignal], kind: str, top_k: int = DEFAULT_TOP_K) -> np.ndarray:
    """Per document, the uncertainty of its most uncertain control (the task score takes the least confident one)."""
    if not controls:
        raise ValueError("pool_uncertainty needs at least one control's probabilities or confidences")
    return np.max([control_uncertainty(c, kind, top_k) for c in controls], axis=0)


def rank_pool(
    strategy: str,
    size: int,
    *,
    rng: np.random.Generator,
    n: int | None = None,
    controls: Lazy[Sequence[ControlSignal]] | None = None,
    confidence: np.ndarray | None = None,
    embeddings: Lazy[np.ndarray] | None = None,
    cost: Lazy[np.ndarray] | None = None,
    top_k: int = DEFAULT_TOP_K,
) -> np.ndarray:
    """The order in which a pool of ``size`` documents should be labeled under ``strategy``, most informative first
    (its first ``n`` when given): indices into the pool.

    ``controls``: one signal per scored control (``ControlSignal``); uncertainty strategies take the most uncertain
    control of each document. ``confidence``: the task score per document; diversity spreads its candidates by
    1 - confidence when it is given, else by the controls' margin. ``embeddings``: one vector per document
    (diversity). ``cost``: predicted seconds per document (cost_aware). ``controls``, ``embeddings`` and ``cost``
    may be given as callables, called only when the strategy needs them. The rng draws ties (and random's order).
    """
    strat = get_strategy(strategy)
    n = size if n is None else max(0, min(n, size))
    if size == 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    if strategy == "random":
        return np.asarray(strat.select(n, uncertainty=np.zeros(size), rng=rng), dtype=np.int64)
    if strategy == "diversity":
        if confidence is not None:
            unc = 1.0 - np.asarray(confidence, dtype=np.float64)
        else:
            unc = pool_uncertainty(_resolve(controls) or (), strat.unc.kind, top_k)
        return np.asarray(strat.select(n, uncertainty=unc, embeddings=_resolve(embeddings), rng=rng), dtype=np.int64)
    unc = pool_uncertainty(_resolve(controls) or (), strat.kind, top_k)
    if strategy == "cost_aware":
        return np.asarray(strat.select(n, uncertainty=unc, cost=_resolve(cost), rng=rng), dtype=np.int64)
    return np.asarray(strat.select(n, uncertainty=unc, rng=rng), dtype=np.int64)
