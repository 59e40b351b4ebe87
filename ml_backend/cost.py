"""Predicted seconds to annotate a document: what cost-aware selection divides its gain by, and what the simulation
counts its learning curves in.

The model is linear, as the annotation-time studies found it: ``seconds = a + b·tokens + c·spans + d·uncertainty``,
with ``tokens`` the document's words (each CJK character counts as one: a Chinese reader's unit, and what the
encoders split Chinese into), ``spans`` the entities in it (predicted before labeling, gold after) and ``uncertainty``
the model's doubt about it (1 - the score of the prediction shown).

**The prior** (``PRIOR``), used until a project has its own times: a = 2.44 s, b = 0.119 s per token, c = 4.69 s per
entity, d = 0. Wei et al. 2019 ("Cost-aware active learning for named entity recognition in clinical text", JAMIA
26(11):1314-1322) had 9 annotators mark clinical entities in i2b2/VA 2010 sentences for two 120-minute sessions each
(random order, then cost-aware active learning); their Table 4 gives, per user and session, the sentences done, words
per sentence and entities per sentence. The coefficients are the least-squares fit of seconds per sentence (120 minutes
/ sentences) on words and entities over those 18 sessions with one intercept per user, the intercept being the users'
mean: the per-user intercept keeps a fast annotator's short sessions from passing for a length effect (a pooled fit
gives a negative seconds-per-word). In it an entity costs as much as ~40 words read. Settles, Craven & Friedland (2008,
"Active learning with real annotation costs") and Tomanek & Hahn (2010) report the same kind of dependence (time varies
with length and entity content, so labels are a poor unit of cost) but give no coefficients this model could reuse.
The prior does not use uncertainty (d = 0): the table gives none to fit it on.

**The project's own fit** (``fit_cost_model``): once a project has ``MIN_ROWS`` annotations with recorded seconds
(``server/effort.py`` keeps one row per annotation in the store's ``annotation_effort`` table), ordinary least squares
on them replaces the prior, every coefficient clipped at 0 (more text or more entities never takes less time; a
negative slope on a few dozen rows is noise). Skipped and capped annotations are left out: a skip's seconds are not
the labeling's, and a capped one's are not its own.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

# enough rows for four coefficients to mean something; below it the prior is closer to the truth than a fit
MIN_ROWS = 30
# a prediction under a second would let a near-empty document win any gain-per-second race
MIN_SECONDS = 1.0
_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]|[^\W_]+", re.UNICODE)


def count_tokens(text: str) -> int:
    """Words of a text: runs of letters and digits, each CJK character (and kana, hangul syllable) on its own."""
    return len(_TOKEN.findall(text or ""))


@dataclass(frozen=True)
class CostModel:
    """``seconds = intercept + per_token·tokens + per_span·spans + per_uncertainty·uncertainty`` (at least
    ``MIN_SECONDS``); ``source`` says where the coefficients come from, ``n_rows`` how many annotations fitted them."""

    intercept: float
    per_token: float
    per_span: float
    per_uncertainty: float = 0.0
    source: str = "prior"
    n_rows: int = 0

    def predict(self, tokens: Sequence[float], spans: Sequence[float] | None = None,
                uncertainty: Sequence[float] | None = None) -> np.ndarray:
        """Predicted seconds per document."""
        t = np.asarray(tokens, dtype=np.float64)
        s = np.zeros_like(t) if spans is None else np.asarray(spans, dtype=np.float64)
        u = np.zeros_like(t) if uncertainty is None else np.asarray(uncertainty, dtype=np.float64)
        out = self.intercept + self.per_token * t + self.per_span * s + self.per_uncertainty * u
        return np.maximum(out, MIN_SECONDS)

    def predict_texts(self, texts: Sequence[str], spans: Sequence[float] | None = None,
                      uncertainty: Sequence[float] | None = None) -> np.ndarray:
        """Predicted seconds for texts (their tokens counted here)."""
        return self.predict([count_tokens(t) for t in texts], spans, uncertainty)

    def to_dict(self) -> dict:
        return asdict(self)


PRIOR = CostModel(intercept=2.44, per_token=0.119, per_span=4.69, per_uncertainty=0.0,
                  source="prior: Wei et al. 2019 (JAMIA), Table 4, per-user least squares")


def fit_cost_model(samples: Iterable[Mapping], min_rows: int = MIN_ROWS, prior: CostModel = PRIOR) -> CostModel:
    """The linear model fitted on ``samples`` (``tokens``, ``spans``, ``uncertainty``, ``seconds`` each), or
    ``prior`` when fewer than ``min_rows`` of them have seconds."""
    rows = [r for r in samples if _finite(r.get("seconds")) and _finite(r.get("tokens"))]
    if len(rows) < min_rows:
        return prior
    X = np.array([[1.0, float(r["tokens"]), float(r.get("spans") or 0.0), float(r.get("uncertainty") or 0.0)]
                  for r in rows])
    y = np.array([float(r["seconds"]) for r in rows])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    slopes = np.maximum(coef[1:], 0.0)
    # refit the intercept on what the clipped slopes leave, so the mean prediction stays the mean time
    intercept = float(np.mean(y - X[:, 1:] @ slopes))
    return CostModel(intercept=max(intercept, 0.0), per_token=float(slopes[0]), per_span=float(slopes[1]),
                     per_uncertainty=float(slopes[2]), source="fitted on the project's annotation times",
                     n_rows=len(rows))


def effort_samples(rows: Iterable[Mapping], texts: Mapping[int, str], spans: Mapping[int, int] | None = None) -> list[dict]:
    """Fit samples from the store's effort rows (``server.store.list_effort``): the task's text by task id
    (``texts``), its labeled span count (``spans``; without it the spans the annotator added, re-labelled or
    re-bounded) and 1 - the shown prediction's score. Skipped and capped rows, and tasks without a text, are left
    out."""
    out = []
    for r in rows:
        tid = r.get("task_id")
        if r.get("skipped") or r.get("capped") or tid not in texts or not _finite(r.get("seconds")):
            continue
        n_spans = spans[tid] if spans is not None and tid in spans else sum(int(r.get(k) or 0) for k in ("add", "relabel", "rebound"))
        score = r.get("prediction_score")
        out.append({"tokens": count_tokens(texts[tid]), "spans": n_spans, "seconds": float(r["seconds"]),
                    "uncertainty": 1.0 - float(score) if _finite(score) else 0.0})
    return out


def predicted_spans(token_probs: Sequence[np.ndarray]) -> np.ndarray:
    """Entities a span model predicts per document: runs of tokens whose most likely tag is not O (tag 0), so IO and
    BIO tags count alike (two adjacent mentions count once: rare, and the cost model needs no more)."""
    out = np.zeros(len(token_probs))
    for i, tp in enumerate(token_probs):
        arr = np.asarray(tp)
        if arr.size == 0:
            continue
        inside = arr.reshape(len(arr), -1).argmax(axis=1) != 0
        out[i] = float(np.count_nonzero(inside[1:] & ~inside[:-1]) + int(inside[0]))
    return out


def _finite(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and bool(np.isfinite(x))
