"""Offline active-learning simulation: gold labels play the annotator, query strategies compete.

One run: a fixed held-out test split (stratified for document labels, never queried); per repeat a random
seed set (the same for every strategy of that repeat); each round the query model is fitted on the labeled
set, scored on the test split, the pool is scored and the strategy picks ``batch_size`` documents, whose
gold labels are then revealed. A full-data run (every non-test document) gives the reference metric.

Query models (fast enough to refit every round on a laptop CPU):
- ``tfidf_lr``: TF-IDF (word 1-2 grams, fitted once on every text, labels unused) + LogisticRegression
  (class-balanced weights, as for every document-label head: tiny seed sets are rarely balanced).
  Document labels only. Diversity uses a 64-d truncated SVD of the TF-IDF matrix.
- ``encoder_lr``: a frozen encoder run ONCE over all documents. Document labels: mean-pooled,
  L2-normalised embeddings + LogisticRegression. Spans: contextual token embeddings (long documents in
  overlapping windows, merged) + a token-level LogisticRegression over BIO tags, decoded to character
  spans with ``ml_backend.alignment``; document embeddings (mean of tokens) feed diversity.
- ``finetune``: the loop's own model and recipe (``ml_backend.training.train_control``: a fine-tuned
  SequenceClassifier or TokenClassifier, early stopping on the labeled documents that the task-id hash puts
  in the dev split) trained afresh every round. Far slower (minutes per round on 2 cores), but it is the
  model the live loop serves. Diversity uses the frozen encoder's mean-pooled embeddings. Self-training with
  it labels documents only.
- ``auto``: ``encoder_lr`` for spans, ``tfidf_lr`` for document labels.

Domain-adaptive MLM (``mlm_steps > 0``, encoder query models only): before the features are computed, the
encoder is trained with masked-language modelling (``ml_backend.training.domain_adapt``, the loop's own code)
on the pool's texts (never the test split's) in a temporary folder; the result JSON records the run under
``domain_adaptation``. Run once with and once without to measure it on/off.

Self-training (``self_training=True``) adds, for every strategy, a ``<strategy>+self_training`` variant:
each round, pool documents the model is confident about (document confidence ≥ ``self_training_threshold``)
join training with their predicted labels at sample weight ``self_training_weight``. Left as ``None`` both
come from the query model (``PSEUDO_DEFAULTS``; ``finetune`` takes the loop's own ``TrainOptions``); for spans this is the
document-level version (confidence = 1 - span uncertainty, every token of the document takes its argmax
tag). Pseudo-labels never count as labels on the curve.

``labels_to_95``: the first labeled-document count at which the mean curve reaches 95% of the full-data
metric, linearly interpolated between the two curve points that straddle it (the first point when it is
already there); ``None`` when the curve never gets there. ``ratio_to_random`` divides a strategy's figure
by random's (``None`` when either is ``None``). ``labels_to_95_runs`` holds each repeat's own crossing (same
rule on that repeat's curve), the spread behind the mean: with few repeats the mean curve's crossing can swing
by a hundred labels, most of all for random, whose curve flattens near the target.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ml_backend.evaluation import evaluate_choices, evaluate_spans, plot_learning_curves, primary_metric
from ml_backend.sampling import STRATEGIES, get_strategy, span_uncertainty, uncertainty
from ml_backend.schema import parse_label_config

from .errors import ConfigError

log = logging.getLogger(__name__)

QUERY_MODELS = ("tfidf_lr", "encoder_lr", "finetune", "auto")
SELF_TRAINING_SUFFIX = "+self_training"
# self-training's (confidence threshold, pseudo-label weight) per fast query model, measured at 100 labels
# (README, "Active-learning curves"): a class-balanced LR on frozen MiniLM vectors gained most at 0.8 on
# PhraseBank and on Twitter; TF-IDF + LR probabilities are soft, 0.7 is where it starts to pass any
PSEUDO_DEFAULTS = {"tfidf_lr": (0.7, 0.3), "encoder_lr": (0.8, 0.3)}


# data -----------------------------------------------------------------------------------------------
@dataclass
class Corpus:
    """Documents of one control: ids, texts and gold targets (a label, or a list of spans)."""

    ids: list[str]
    texts: list[str]
    task: str  # "choices" | "spans"
    labels: list[str]
    control: str
    targets: list[Any]  # choices: label index per doc; spans: [(start, end, label), ...] per doc
    duplicates_dropped: int = 0
    spec: Any = None  # the labeling config's ml_backend.schema.Control for `control`


def load_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file (blank lines skipped)."""
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{n}: not a JSON object: {exc}") from exc
    return rows


def load_corpus(data: Path | Sequence[dict], schema: Path | str, control: str | None = None) -> Corpus:
    """Read documents + labeling config; check every gold label is one of the control's labels."""
    rows = load_jsonl(Path(data)) if isinstance(data, (str, Path)) else list(data)
    if not rows:
        raise ConfigError(f"{data}: no documents")
    is_xml = isinstance(schema, str) and schema.lstrip().startswith("<")
    xml = schema if is_xml else Path(schema).read_text(encoding="utf-8")
    spec = parse_label_config(xml)
    task = "spans" if any("spans" in r for r in rows) else "choices"
    if task == "choices" and not all("label" in r for r in rows):
        raise ConfigError("every document needs a 'label' (document labels) or 'spans' (span labels)")
    pool = spec.span_controls if task == "spans" else spec.choice_controls
    if control is not None:
        ctl = spec.control(control)
        if ctl.kind != task:
            raise ConfigError(f"control {control!r} labels {ctl.kind}, but the data has {task}")
    elif not pool:
        want = "<Labels>" if task == "spans" else "<Choices>"
        raise ConfigError(f"the data has {task} but the labeling config has no {want} control")
    else:
        ctl = pool[0]
    labels = list(ctl.labels)
    seen: set[str] = set()
    ids, texts, targets = [], [], []
    dropped = 0
    for i, r in enumerate(rows):
        rid = str(r.get("id", i))
        if rid in seen:
            dropped += 1
            continue
        seen.add(rid)
        text = r.get("text")
        if not isinstance(text, str):
            raise ConfigError(f"document {rid!r}: 'text' must be a string, got {type(text).__name__}")
        if task == "choices":
            if r["label"] not in labels:
                raise ConfigError(f"document {rid!r}: label {r['label']!r} is not one of {labels} (control {ctl.name!r})")
            targets.append(labels.index(r["label"]))
        else:
            spans = []
            for s in r.get("spans") or []:
                if s["label"] not in labels:
                    raise ConfigError(
                        f"document {rid!r}: span label {s['label']!r} is not one of {labels} (control {ctl.name!r})"
                    )
                spans.append((int(s["start"]), int(s["end"]), str(s["label"])))
            targets.append(spans)
        ids.append(rid)
        texts.append(text)
    return Corpus(ids, texts, task, labels, ctl.name, targets, dropped, ctl)


def split_test(corpus: Corpus, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (pool, test) index split; stratified by label for document labels when every class allows it."""
    n = len(corpus.ids)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = max(1, int(round(n * test_fraction)))
    if n - n_test < 2:
        raise ConfigError(f"{n} documents leave no pool after a {test_fraction:.0%} test split")
    rng = np.random.default_rng(seed)
    if corpus.task == "choices":
        y = np.asarray(corpus.targets)
        counts = np.bincount(y, minlength=len(corpus.labels))
        if counts[counts > 0].min() >= 2:
            from sklearn.model_selection import train_test_split

            pool, test = train_test_split(
                np.arange(n), test_size=n_test, stratify=y, random_state=int(rng.integers(0, 2**31 - 1))
            )
            return np.sort(pool), np.sort(test)
    perm = rng.permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


# encoder features -----------------------------------------------------------------------------------
def _load_encoder(name: str):
    import transformers

    from ml_backend.models.hf import set_torch_threads

    transformers.logging.set_verbosity_error()
    set_torch_threads()
    tok = transformers.AutoTokenizer.from_pretrained(name)
    if not getattr(tok, "is_fast", False):
        raise ConfigError(f"{name}: a fast tokenizer (with offset mapping) is required")
    model = transformers.AutoModel.from_pretrained(name)
    model.eval()
    return tok, model


def _run_encoder(model, tok, seqs: list[list[int]], token_budget: int, progress: bool, desc: str) -> list[np.ndarray]:
    """Hidden states [len, d] per sequence, length-sorted token-budget batches under inference_mode."""
    import torch
    from tqdm.auto import tqdm

    out: list[np.ndarray | None] = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and len(seqs[i]) * (len(cur) + 1) > token_budget:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    pad = tok.pad_token_id or 0
    with torch.inference_mode():
        for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
            width = max(len(seqs[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, : len(seqs[i])] = torch.tensor(seqs[i], dtype=torch.long)
                mask[row, : len(seqs[i])] = 1
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state.float().numpy()
            for row, i in enumerate(batch):
                out[i] = hidden[row, : len(seqs[i])]
    return out  # type: ignore[return-value]


def encode_texts(texts: Sequence[str], encoder: str, *, max_length: int = 256, token_budget: int = 8192,
                 progress: bool = True) -> np.ndarray:
    """Mean-pooled (special tokens included, as sentence-transformers does), L2-normalised text embeddings."""
    tok, model = _load_encoder(encoder)
    enc = tok(list(texts), truncation=True, max_length=max_length, verbose=False)
    hidden = _run_encoder(model, tok, enc["input_ids"], token_budget, progress, "embed")
    emb = np.stack([h.mean(axis=0) for h in hidden]).astype(np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def encode_tokens(texts: Sequence[str], encoder: str, *, max_length: int = 512, stride: int = 64,
                  token_budget: int = 8192, progress: bool = True) -> tuple[list[list[tuple[int, int]]], list[np.ndarray]]:
    """Character offsets and contextual embeddings [T, d] of every token (no special tokens) per text."""
    from ml_backend.alignment import merge_windows, windows

    tok, model = _load_encoder(encoder)
    limit = getattr(model.config, "max_position_embeddings", 512) or 512
    size = min(max_length, limit) - 2
    enc = tok(list(texts), add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    seqs, owners = [], []
    for d, ids in enumerate(enc["input_ids"]):
        spans = windows(len(ids), size, stride)
        for a, b in spans:
            seqs.append([tok.cls_token_id, *ids[a:b], tok.sep_token_id])
            owners.append((d, a, b))
    hidden = _run_encoder(model, tok, seqs, token_budget, progress, "embed tokens")
    per_doc: list[list[tuple[tuple[int, int], np.ndarray]]] = [[] for _ in texts]
    for (d, a, b), h in zip(owners, hidden):
        per_doc[d].append(((a, b), h[1:-1]))
    dim = model.config.hidden_size
    embs = []
    for d, parts in enumerate(per_doc):
        n_tok = len(enc["input_ids"][d])
        if n_tok == 0:
            embs.append(np.zeros((0, dim), dtype=np.float32))
            continue
        embs.append(merge_windows(n_tok, [p[0] for p in parts], [p[1] for p in parts]).astype(np.float32))
    offsets = [[tuple(o) for o in offs] for offs in enc["offset_mapping"]]
    return offsets, embs


# query models ---------------------------------------------------------------------------------------
def _fit_lr(X, y: np.ndarray, w: np.ndarray | None, n_classes: int, C: float, max_iter: int = 300,
            class_weight: str | None = None):
    """A LogisticRegression, or a constant when one class is present; returns a [n, n_classes] prob function."""
    from sklearn.linear_model import LogisticRegression

    classes = np.unique(y)
    if len(classes) == 1:
        const = np.zeros(n_classes)
        const[classes[0]] = 1.0
        return lambda Z: np.tile(const, (Z.shape[0], 1))
    lr = LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight)
    lr.fit(X, y, sample_weight=w)

    def proba(Z):
        out = np.zeros((Z.shape[0], n_classes))
        if Z.shape[0]:
            out[:, lr.classes_] = lr.predict_proba(Z)
        return out

    return proba


class ChoiceBackend:
    """Document-label query model on precomputed features (TF-IDF rows or frozen embeddings)."""

    def __init__(self, corpus: Corpus, X, embeddings: np.ndarray, C: float):
        self.corpus = corpus
        self.X = X
        self.embeddings = embeddings
        self.y = np.asarray(corpus.targets)
        self.C = C

    def fit(self, docs: np.ndarray, pseudo_docs: np.ndarray | None = None, pseudo_targets=None,
            pseudo_weight: float = 0.3):
        """Fit on gold docs (+ weighted pseudo-labeled docs); returns a model (a prob function)."""
        y = self.y[docs]
        if pseudo_docs is not None and len(pseudo_docs):
            rows = np.concatenate([docs, pseudo_docs])
            y = np.concatenate([y, np.asarray(pseudo_targets)])
            w = np.concatenate([np.ones(len(docs)), np.full(len(pseudo_docs), pseudo_weight)])
        else:
            rows, w = docs, None
        return _fit_lr(self.X[rows], y, w, len(self.corpus.labels), self.C, class_weight="balanced")

    def probs(self, model, docs: np.ndarray) -> np.ndarray:
        """[n, n_labels] probabilities."""
        return model(self.X[docs])

    def uncertainty(self, probs: np.ndarray, kind: str) -> np.ndarray:
        return uncertainty(probs, kind)

    def pseudo(self, probs: np.ndarray, threshold: float) -> tuple[np.ndarray, Any]:
        """Positions of confident predictions and their predicted label ids."""
        keep = np.flatnonzero(probs.max(axis=1) >= threshold)
        return keep, probs[keep].argmax(axis=1)

    def evaluate(self, model, docs: np.ndarray) -> dict:
        labels = self.corpus.labels
        p = self.probs(model, docs)
        return evaluate_choices([labels[i] for i in self.y[docs]], [labels[i] for i in p.argmax(axis=1)], labels, p)


def _word_ids(offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """Word index per token: a token continues the previous token's word when no character separates them."""
    ids = np.zeros(len(offsets), dtype=np.int64)
    for t in range(1, len(offsets)):
        ids[t] = ids[t - 1] + (offsets[t][0] != offsets[t - 1][1])
    return ids


def _word_mean(probs: np.ndarray, word_ids: np.ndarray) -> np.ndarray:
    """Every sub-word token takes its word's mean probabilities, so a word is never split between labels."""
    if len(probs) == 0:
        return probs
    sums = np.zeros((word_ids[-1] + 1, probs.shape[1]))
    np.add.at(sums, word_ids, probs)
    counts = np.bincount(word_ids, minlength=len(sums))[:, None]
    return (sums / counts)[word_ids]


class SpanBackend:
    """Span query model: a token-level LogisticRegression on frozen, standardised token embeddings.

    The head predicts IO tags (O or one class per label): a linear probe on frozen features cannot tell a
    word-initial sub-word from a continuation reliably, so B/I is decided at decoding time instead — a
    token opens a span when the previous token does not carry the same label (adjacent mentions of one
    label therefore merge; rare in practice). Sub-word tokens of one word (no character between them) share
    the word's mean probabilities, so a word is never split between labels. Decoding then goes through
    ``alignment.decode_spans``.
    """

    def __init__(self, corpus: Corpus, offsets, token_embs: list[np.ndarray], C: float):
        from ml_backend.alignment import bio_labels, encode_spans

        self.corpus = corpus
        self.offsets = offsets
        self.C = C
        self.tags = ["O", *corpus.labels]
        self.bio = bio_labels(corpus.labels)
        lengths = np.array([len(e) for e in token_embs])
        self.start = np.concatenate([[0], np.cumsum(lengths)])
        dim = token_embs[0].shape[1] if token_embs else 0
        X = np.concatenate(token_embs) if lengths.sum() else np.zeros((0, dim), dtype=np.float32)
        self.embeddings = np.stack([
            e.mean(axis=0) if len(e) else np.zeros(dim, dtype=np.float32) for e in token_embs
        ]) if token_embs else np.zeros((0, dim))
        if len(X):
            X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-6)
        self.X = X.astype(np.float32)
        gold = []
        for offs, spans in zip(offsets, corpus.targets):
            ids = np.asarray(encode_spans(offs, spans, corpus.labels), dtype=np.int64) if offs else np.zeros(0, np.int64)
            gold.append((np.where(ids < 0, 0, ids) + 1) // 2)  # BIO id -> IO id: B-X/I-X -> X
        self.gold_tags = gold
        self.word_ids = [_word_ids(offs) for offs in offsets]

    def to_bio(self, io_probs: np.ndarray) -> np.ndarray:
        """IO probabilities [T, 1+L] → BIO probabilities [T, 1+2L] for ``decode_spans``."""
        out = np.zeros((len(io_probs), len(self.bio)))
        out[:, 0] = io_probs[:, 0] if len(io_probs) else 0
        pred = io_probs.argmax(axis=1) if len(io_probs) else np.zeros(0, dtype=np.int64)
        for t in range(len(io_probs)):
            cont = t > 0 and pred[t] != 0 and pred[t - 1] == pred[t]
            for j in range(1, len(self.tags)):
                out[t, 2 * j if cont and j == pred[t] else 2 * j - 1] = io_probs[t, j]
        return out

    def _rows(self, docs: np.ndarray) -> np.ndarray:
        if len(docs) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(self.start[d], self.start[d + 1]) for d in docs])

    def fit(self, docs: np.ndarray, pseudo_docs: np.ndarray | None = None, pseudo_targets=None,
            pseudo_weight: float = 0.3):
        """Fit on gold docs' tokens (+ pseudo-labeled docs' tokens at a lower weight)."""
        rows = self._rows(docs)
        y = np.concatenate([self.gold_tags[d] for d in docs]) if len(docs) else np.zeros(0, np.int64)
        w = None
        if pseudo_docs is not None and len(pseudo_docs):
            prow = self._rows(pseudo_docs)
            py = np.concatenate(list(pseudo_targets))
            w = np.concatenate([np.ones(len(rows)), np.full(len(prow), pseudo_weight)])
            rows, y = np.concatenate([rows, prow]), np.concatenate([y, py])
        if len(rows) == 0:
            y = np.zeros(1, dtype=np.int64)
            rows = np.zeros(1, dtype=np.int64)
        return _fit_lr(self.X[rows], y, w, len(self.tags), self.C, max_iter=200)

    def probs(self, model, docs: np.ndarray) -> list[np.ndarray]:
        """Per doc token probabilities [T, 1 + n_labels] (IO tags)."""
        rows = self._rows(docs)
        flat = model(self.X[rows]) if len(rows) else np.zeros((0, len(self.tags)))
        out, pos = [], 0
        for d in docs:
            n = self.start[d + 1] - self.start[d]
            out.append(_word_mean(flat[pos : pos + n], self.word_ids[d]))
            pos += n
        return out

    def uncertainty(self, probs: list[np.ndarray], kind: str) -> np.ndarray:
        return span_uncertainty(probs, kind)

    def pseudo(self, probs: list[np.ndarray], threshold: float) -> tuple[np.ndarray, Any]:
        """Documents whose document-level confidence reaches threshold, with their argmax tags."""
        conf = 1.0 - span_uncertainty(probs, "least_confidence")
        keep = np.flatnonzero(conf >= threshold)
        return keep, [probs[i].argmax(axis=1) for i in keep]

    def evaluate(self, model, docs: np.ndarray) -> dict:
        from ml_backend.alignment import decode_spans

        probs = self.probs(model, docs)
        pred = [
            [s.key() for s in decode_spans(self.corpus.texts[d], self.offsets[d], self.to_bio(p), self.corpus.labels)]
            for d, p in zip(docs, probs)
        ]
        return evaluate_spans([self.corpus.targets[d] for d in docs], pred)


class FinetuneBackend:
    """The live loop's model as the query model: ``train_control`` fine-tunes a fresh encoder on each labeled set.

    ``fit`` returns the trained goldloop model; probabilities come from it (document labels: [n, k]; spans: the
    merged BIO token probabilities per document, which ``span_uncertainty`` scores as in the live loop).
    """

    def __init__(self, corpus: Corpus, encoder: str, options=None, progress: bool = True):
        from ml_backend.splits import split_of
        from ml_backend.training import TrainOptions

        self.corpus = corpus
        self.encoder = encoder
        self.control = corpus.spec
        base = options or TrainOptions()
        self.options = TrainOptions(**{**base.__dict__, "cold_start_labels": 0, "model_name": encoder, "progress": False,
                                       "self_training": False, "mlm_steps": 0})
        self.dev = np.array([split_of(i) == "dev" for i in corpus.ids])
        self.y = np.asarray(corpus.targets) if corpus.task == "choices" else None
        self.progress = progress
        self._embeddings: np.ndarray | None = None
        self.fits: list[dict] = []

    @property
    def embeddings(self) -> np.ndarray:
        """Frozen-encoder document embeddings (for diversity), computed on first use."""
        if self._embeddings is None:
            self._embeddings = encode_texts(self.corpus.texts, self.encoder, progress=self.progress)
        return self._embeddings

    def _examples(self, docs, targets=None, weight: float = 1.0):
        from ml_backend.models import Examples

        labels = self.corpus.labels
        tg = [self.corpus.targets[d] for d in docs] if targets is None else list(targets)
        tg = [[labels[t]] for t in tg] if self.corpus.task == "choices" else [list(t) for t in tg]
        return Examples([self.corpus.texts[d] for d in docs], tg, None if weight == 1.0 else [weight] * len(docs))

    def fit(self, docs: np.ndarray, pseudo_docs: np.ndarray | None = None, pseudo_targets=None,
            pseudo_weight: float = 0.3):
        from ml_backend.training import _merge, train_control

        docs = np.asarray(docs, dtype=np.int64)
        dev, train = docs[self.dev[docs]], docs[~self.dev[docs]]
        if len(train) == 0:  # every labeled doc hashed to dev: train on them rather than on nothing
            dev, train = dev[:0], dev
        ex = self._examples(train)
        if pseudo_docs is not None and len(pseudo_docs):
            ex = _merge(ex, self._examples(pseudo_docs, pseudo_targets, pseudo_weight))
        model, info = train_control(self.control, ex, self._examples(dev), self.options)
        fit = info.get("fit") or {}
        self.fits.append({"labels": int(len(docs)), "kind": model.kind, "steps": fit.get("steps"),
                          "seconds": fit.get("seconds")})
        return model

    def probs(self, model, docs: np.ndarray):
        texts = [self.corpus.texts[d] for d in docs]
        if self.corpus.task == "spans":  # always a TokenClassifier: cold_start_labels is 0
            return [p for _, p in model.token_probs(texts)]
        return np.array([[p.probs[lbl] for lbl in self.corpus.labels] for p in model.predict(texts)]) if texts else np.zeros((0, len(self.corpus.labels)))

    def uncertainty(self, probs, kind: str) -> np.ndarray:
        return span_uncertainty(probs, kind) if self.corpus.task == "spans" else uncertainty(probs, kind)

    def pseudo(self, probs, threshold: float):
        if self.corpus.task == "spans":
            raise ValueError("self-training with the 'finetune' query model labels documents only")
        keep = np.flatnonzero(probs.max(axis=1) >= threshold)
        return keep, probs[keep].argmax(axis=1)

    def evaluate(self, model, docs: np.ndarray) -> dict:
        labels = self.corpus.labels
        texts = [self.corpus.texts[d] for d in docs]
        if self.corpus.task == "spans":
            pred = [[s.key() for s in p.spans] for p in model.predict(texts)]
            return evaluate_spans([self.corpus.targets[d] for d in docs], pred, texts)
        p = self.probs(model, docs)
        return evaluate_choices([labels[i] for i in self.y[docs]], [labels[i] for i in p.argmax(axis=1)], labels, p)


def build_backend(corpus: Corpus, query_model: str, encoder: str | None, *, progress: bool = True,
                  C: float | None = None, mlm_steps: int = 0, mlm_texts: Sequence[str] = (), seed: int = 0,
                  train_options=None):
    """The query model's features, computed once for every document; returns (backend, resolved name, encoder).

    ``mlm_steps > 0`` first adapts the encoder on ``mlm_texts`` (masked-language modelling) and computes the
    features with the adapted encoder; the adaptation's record is then ``backend.domain_adaptation``.
    """
    if mlm_steps > 0:
        if query_model == "tfidf_lr" or (query_model == "auto" and corpus.task == "choices"):
            raise ValueError("domain-adaptive MLM trains an encoder: use the query model 'encoder_lr'")
        import tempfile

        from ml_backend.training import domain_adapt

        if encoder is None:
            from .config import default_model

            encoder = default_model()
        with tempfile.TemporaryDirectory(prefix="goldloop-mlm-") as tmp:
            info = domain_adapt(encoder, list(mlm_texts), Path(tmp) / "encoder", steps=mlm_steps, seed=seed, progress=progress)
            if query_model == "finetune":
                raise ValueError("the 'finetune' query model adapts its encoder in the loop's own training "
                                 "(TrainOptions.mlm_steps); use --mlm-steps with 'encoder_lr'")
            backend, qm, _ = build_backend(corpus, query_model, str(Path(tmp) / "encoder"), progress=progress, C=C)
        info.pop("path", None)
        backend.domain_adaptation = {"base_encoder": encoder, **info}
        return backend, qm, encoder
    if query_model not in QUERY_MODELS:
        raise ValueError(f"unknown query model {query_model!r}; expected one of {list(QUERY_MODELS)}")
    if query_model == "auto":
        query_model = "encoder_lr" if corpus.task == "spans" else "tfidf_lr"
    if query_model == "tfidf_lr":
        if corpus.task == "spans":
            raise ValueError("query model 'tfidf_lr' labels documents only; use 'encoder_lr' for spans")
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        X = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit_transform(corpus.texts)
        k = max(1, min(64, X.shape[1] - 1, X.shape[0] - 1))
        emb = TruncatedSVD(n_components=k, random_state=0).fit_transform(X)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return ChoiceBackend(corpus, X.tocsr(), emb, C or 1.0), query_model, None
    if encoder is None:
        from .config import default_model

        encoder = default_model()
    if query_model == "finetune":
        return FinetuneBackend(corpus, encoder, train_options, progress), query_model, encoder
    if corpus.task == "choices":
        emb = encode_texts(corpus.texts, encoder, progress=progress)
        return ChoiceBackend(corpus, emb, emb, C or 10.0), query_model, encoder
    offsets, embs = encode_tokens(corpus.texts, encoder, progress=progress)
    return SpanBackend(corpus, offsets, embs, C or 0.1), query_model, encoder


# the loop -------------------------------------------------------------------------------------------
def pseudo_defaults(query_model: str, train_options=None) -> tuple[float, float]:
    """Self-training's (threshold, weight) for a resolved query model: the loop's own for ``finetune``."""
    if query_model == "finetune":
        from ml_backend.training import TrainOptions

        opts = train_options or TrainOptions()
        return opts.pseudo_threshold, opts.doc_pseudo_weight
    return PSEUDO_DEFAULTS[query_model]


def _labels_to_target(curve: list[dict], target: float) -> float | None:
    """First label count whose mean reaches target, linearly interpolated between straddling points."""
    prev = None
    for pt in curve:
        if pt["mean"] >= target:
            if prev is None or pt["mean"] == prev["mean"]:
                return float(pt["labels"])
            frac = (target - prev["mean"]) / (pt["mean"] - prev["mean"])
            return float(prev["labels"] + frac * (pt["labels"] - prev["labels"]))
        prev = pt
    return None


def _one_run(backend, strategy_name: str, self_training: bool, pool: np.ndarray, test: np.ndarray,
             seed_docs: np.ndarray, rng: np.random.Generator, *, batch_size: int, rounds: int,
             threshold: float, weight: float, strategy_kw: dict, tick) -> dict:
    """One learning curve for one strategy and one seed set."""
    strategy = get_strategy(strategy_name, **strategy_kw)
    kind = strategy_name if strategy_name in ("least_confidence", "margin", "entropy") else "margin"
    labeled = list(seed_docs)
    in_labeled = np.zeros(len(backend.corpus.ids), dtype=bool)
    in_labeled[seed_docs] = True
    points, n_pseudo = [], []
    for rnd in range(rounds + 1):
        docs = np.asarray(labeled, dtype=np.int64)
        model = backend.fit(docs)
        remaining = pool[~in_labeled[pool]]
        rem_probs = backend.probs(model, remaining) if len(remaining) else None
        if self_training and rem_probs is not None:
            keep, targets = backend.pseudo(rem_probs, threshold)
            n_pseudo.append(int(len(keep)))
            if len(keep):
                model = backend.fit(docs, remaining[keep], targets, weight)
                rem_probs = backend.probs(model, remaining)
        metrics = backend.evaluate(model, test)
        points.append({"labels": len(labeled), "metric": primary_metric(metrics)})
        tick()
        if rnd == rounds or len(remaining) == 0:
            break
        unc = backend.uncertainty(rem_probs, kind) if strategy_name != "random" else None
        pick = strategy.select(
            min(batch_size, len(remaining)), probs=None, uncertainty=unc if unc is not None else np.zeros(len(remaining)),
            embeddings=backend.embeddings[remaining] if strategy_name == "diversity" else None, rng=rng,
        )
        chosen = remaining[pick]
        labeled.extend(int(i) for i in chosen)
        in_labeled[chosen] = True
    out = {"points": points, "labeled_ids": [backend.corpus.ids[i] for i in labeled]}
    if self_training:
        out["pseudo_labeled"] = n_pseudo
    return out


def run_simulation(
    data: Path,
    schema: Path,
    strategies: list[str],
    *,
    self_training: bool = False,
    seed_size: int = 20,
    batch_size: int = 20,
    rounds: int = 10,
    repeats: int = 3,
    query_model: str = "auto",
    test_fraction: float = 0.2,
    out: Path,
    seed: int = 0,
    encoder: str | None = None,
    progress: bool = True,
    control: str | None = None,
    self_training_threshold: float | None = None,
    self_training_weight: float | None = None,
    documents: Sequence[dict] | None = None,
    backend=None,
    mlm_steps: int = 0,
    train_options=None,
) -> dict:
    """Simulate active learning against gold labels; write JSON to `out` and a PNG curve next to it.

    ``documents`` (records) replaces reading ``data``; ``backend`` reuses features already computed by
    ``build_backend`` for the same corpus (both for benchmarks that run several configurations).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    strategies = list(dict.fromkeys(strategies))
    if not strategies:
        raise ValueError(f"give at least one strategy; expected names from {list(STRATEGIES)}")
    for name in strategies:
        get_strategy(name)  # ValueError listing the names
    for name, v in (("seed_size", seed_size), ("batch_size", batch_size), ("repeats", repeats)):
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    if mlm_steps < 0:
        raise ValueError(f"mlm_steps must be >= 0, got {mlm_steps}")
    if self_training_threshold is not None and not 0.0 < self_training_threshold <= 1.0:
        raise ValueError(f"self_training_threshold must be in (0, 1], got {self_training_threshold}")
    if self_training_weight is not None and not self_training_weight > 0.0:
        raise ValueError(f"self_training_weight must be > 0, got {self_training_weight}")
    corpus = load_corpus(documents if documents is not None else Path(data), schema, control)
    pool, test = split_test(corpus, test_fraction, seed)
    if seed_size > len(pool):
        raise ConfigError(f"seed_size {seed_size} exceeds the {len(pool)} documents outside the test split")
    t_feat = time.perf_counter()
    if backend is None:
        backend, qm, enc = build_backend(corpus, query_model, encoder, progress=progress, mlm_steps=mlm_steps,
                                         mlm_texts=[corpus.texts[i] for i in pool], seed=seed, train_options=train_options)
    else:
        qm, enc = query_model, encoder
        if qm == "auto":  # as build_backend resolves it
            qm = "encoder_lr" if corpus.task == "spans" else "tfidf_lr"
        if backend.corpus.ids != corpus.ids:
            raise ValueError("the given backend was built for other documents")
    features_s = time.perf_counter() - t_feat
    threshold, weight = pseudo_defaults(qm, train_options)
    threshold = threshold if self_training_threshold is None else self_training_threshold
    weight = weight if self_training_weight is None else self_training_weight

    from threadpoolctl import threadpool_limits

    # tiny fits: one BLAS/OpenMP thread is faster than two fighting; fine-tuning wants every core
    limiter = threadpool_limits(1) if qm != "finetune" else None
    if qm == "finetune" and self_training and corpus.task == "spans":
        raise ValueError("self-training with the 'finetune' query model labels documents only")
    try:
        full_model = backend.fit(pool)
        full_metrics = backend.evaluate(full_model, test)
        full = primary_metric(full_metrics)
        metric_name = "entity_f1" if corpus.task == "spans" else "macro_f1"

        variants = [(s, False) for s in strategies] + ([(s, True) for s in strategies] if self_training else [])
        seeds = [seed + 1000 * (r + 1) for r in range(repeats)]
        n_points = min(rounds, int(np.ceil((len(pool) - seed_size) / batch_size))) + 1
        bar = tqdm(total=len(variants) * repeats * n_points, desc="simulate", disable=not progress)
        results: dict[str, dict] = {}
        timing: dict[str, float] = {}
        for name, st in variants:
            key = name + (SELF_TRAINING_SUFFIX if st else "")
            bar.set_postfix_str(key)
            ts = time.perf_counter()
            runs = []
            for r, s in enumerate(seeds):
                seed_docs = np.random.default_rng(s).choice(pool, size=seed_size, replace=False)
                run = _one_run(
                    backend, name, st, pool, test, seed_docs, np.random.default_rng(s + 1),
                    batch_size=batch_size, rounds=rounds, threshold=threshold,
                    weight=weight, strategy_kw={}, tick=lambda: bar.update(1),
                )
                runs.append({"repeat": r, "seed": s, **run})
            timing[key] = round(time.perf_counter() - ts, 3)
            length = min(len(run["points"]) for run in runs)
            curve = []
            for i in range(length):
                vals = np.array([run["points"][i]["metric"] for run in runs])
                curve.append({"labels": runs[0]["points"][i]["labels"], "mean": float(vals.mean()), "std": float(vals.std())})
            for run in runs:  # each repeat's own crossing: the spread behind the mean curve's
                own = [{"labels": p["labels"], "mean": p["metric"]} for p in run["points"]]
                run["labels_to_95"] = _labels_to_target(own, 0.95 * full)
            results[key] = {
                "strategy": name,
                "self_training": st,
                "curve": curve,
                "labels_to_95": _labels_to_target(curve, 0.95 * full),
                "labels_to_95_runs": [run["labels_to_95"] for run in runs],
                "aulc": float(np.mean([p["mean"] for p in curve])) if curve else None,
                "runs": runs,
            }
        bar.close()
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    base = results.get("random", {}).get("labels_to_95")
    for res in results.values():
        l95 = res["labels_to_95"]
        res["ratio_to_random"] = (l95 / base) if (l95 is not None and base) else None
    if self_training:
        for name in strategies:
            plain, st = results[name]["curve"], results[name + SELF_TRAINING_SUFFIX]["curve"]
            results[name + SELF_TRAINING_SUFFIX]["gain_over_plain"] = [
                {"labels": a["labels"], "gain": b["mean"] - a["mean"]} for a, b in zip(plain, st)
            ]

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_path = out.with_suffix(".png")
    plot_learning_curves({k: v["curve"] for k, v in results.items()}, plot_path, metric_name, reference=full,
                         title=f"{Path(str(data)).name if data is not None else 'documents'} · {qm}")
    report = {
        "data": str(data) if data is not None else None,
        "schema": str(schema) if isinstance(schema, Path) or not str(schema).lstrip().startswith("<") else None,
        "task": corpus.task,
        "control": corpus.control,
        "labels": corpus.labels,
        "metric": metric_name,
        "query_model": qm,
        "encoder": enc,
        "fits": getattr(backend, "fits", None),  # finetune: the model kind, steps and seconds of every fit
        "n_documents": len(corpus.ids),
        "duplicates_dropped": corpus.duplicates_dropped,
        "n_pool": int(len(pool)),
        "n_test": int(len(test)),
        "test_ids": [corpus.ids[i] for i in test],
        "seed": seed,
        "seeds": seeds,
        "seed_size": seed_size,
        "batch_size": batch_size,
        "rounds": rounds,
        "repeats": repeats,
        "domain_adaptation": getattr(backend, "domain_adaptation", None),
        "self_training": self_training,
        "self_training_threshold": threshold if self_training else None,
        "self_training_weight": weight if self_training else None,
        "full_data": {"labels": int(len(pool)), "metric": full, "metrics": full_metrics},
        "target_95": 0.95 * full,
        "strategies": results,
        "ratio_to_random": {k: v["ratio_to_random"] for k, v in results.items()},
        "timing": {"features_s": round(features_s, 3), "strategies_s": timing,
                   "total_s": round(time.perf_counter() - t0, 3)},
        "plot": str(plot_path),
    }
    out.write_text(json.dumps(report, indent=1, default=_json_default), encoding="utf-8")
    return report


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def per_repeat_spread(values: Sequence[float | None]) -> str:
    """Repeats' own labels-to-95 as 'median (min-max) reached/n'; a repeat that never reached it counts as
    infinitely many labels, so the median is '-' when half of them or more never did."""
    n = len(values)
    reached = sorted(float(v) for v in values if v is not None)
    if not reached:
        return f"- 0/{n}"
    med = float(np.median([float("inf") if v is None else float(v) for v in values]))
    med_s = "-" if med == float("inf") else f"{med:.0f}"
    return f"{med_s} ({reached[0]:.0f}-{reached[-1]:.0f}) {len(reached)}/{n}"


def summary_table(report: dict) -> str:
    """A plain-text table: strategy, labels to 95% (mean curve, and each repeat's), ratio to random, AULC,
    final mean."""
    rows = [f"{'strategy':<30} {'labels_to_95':>12} {'per repeat: median (range) reached':>34} {'ratio':>7} "
            f"{'aulc':>7} {'final':>7}"]
    for k, v in report["strategies"].items():
        l95 = "-" if v["labels_to_95"] is None else f"{v['labels_to_95']:.0f}"
        runs = per_repeat_spread(v["labels_to_95_runs"]) if "labels_to_95_runs" in v else "n/a"
        ratio = "-" if v["ratio_to_random"] is None else f"{v['ratio_to_random']:.2f}"
        final = v["curve"][-1]["mean"] if v["curve"] else float("nan")
        rows.append(f"{k:<30} {l95:>12} {runs:>34} {ratio:>7} {v['aulc']:>7.3f} {final:>7.3f}")
    rows.append(f"full data ({report['full_data']['labels']} labels): {report['metric']} = "
                f"{report['full_data']['metric']:.3f}; 95% target = {report['target_95']:.3f}")
    return "\n".join(rows)
