"""Hugging Face encoder models: token classification (BIO spans) and sequence classification (Choices).

Fast path: every text is tokenised once (fast tokenizer, offsets kept), split into overlapping windows
no longer than the model's window, all windows of a request are sorted by length and run in token-budget
batches with dynamic padding under ``torch.inference_mode``; optional int8 dynamic quantization of the
linear layers for serving.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..alignment import SERVE_OVERLAP, bio_labels, decode_spans, encode_spans, merge_windows, windows
from .base import Examples, Model, TextPrediction

log = logging.getLogger(__name__)

_THREADS_SET = False
# transformers resolves its attributes lazily and that is not thread-safe: two threads loading models at
# once (the backend warms several projects in parallel) can see "no attribute 'AutoTokenizer'". Every
# access to it goes through this lock.
_LOAD_LOCK = threading.RLock()


def _transformers():
    """The transformers module, quiet, with the classes goldloop uses resolved under the load lock."""
    with _LOAD_LOCK:
        import transformers

        for name in ("AutoTokenizer", "AutoModel", "AutoModelForTokenClassification", "AutoModelForSequenceClassification"):
            getattr(transformers, name)
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        return transformers


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def set_torch_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads from the machine (once per process unless a number is given)."""
    global _THREADS_SET
    import torch

    n = threads or available_cores()
    if threads or not _THREADS_SET:
        torch.set_num_threads(n)
        _THREADS_SET = True
    return torch.get_num_threads()


def quantize_int8_torch(model):
    """PyTorch int8 dynamic quantization of the encoder's nn.Linear layers (weights int8, activations on the fly).

    The task head (classifier) stays fp32: it is tiny, and quantizing it costs the most accuracy.
    """
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    targets = {name for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear) and ".encoder." in f".{name}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, targets, dtype=torch.qint8)  # inplace=False: a quantized copy


# none: fp32 as trained; int8: ONNX Runtime int8 (per-channel weights; the fast one); int8-torch: PyTorch
# dynamic int8 (no extra build step, less accurate, slower); bf16: a bfloat16 copy (pays off only on CPUs
# with AVX-512-BF16/AMX)
QUANTIZE_MODES = ("none", "int8", "int8-torch", "bf16")


def serving_model(model, quantize: str, threads: int = 0, cache_dir: Path | None = None):
    """The model inference runs on; `cache_dir` keeps the int8 graph of a saved model for the next load."""
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if quantize == "int8":
        from .onnx_int8 import ort_int8_model

        import torch

        return ort_int8_model(model, threads or torch.get_num_threads(), cache_dir)
    if quantize == "int8-torch":
        return quantize_int8_torch(model)
    if quantize == "bf16":
        import copy

        import torch

        return copy.deepcopy(model).to(torch.bfloat16).eval()
    return model


def _onnx_cache_dir(saved_dir: Path) -> Path:
    """Where a saved model keeps its int8 ONNX graphs (built by prepare_serving or on the first int8 load)."""
    return saved_dir / "onnx"


class HFModel(Model):
    """Shared tokenisation, windowing, batching and persistence for encoder models."""

    auto_class: str = ""

    def __init__(
        self,
        labels: Sequence[str],
        multi: bool = False,
        *,
        model_name: str,
        max_length: int | None = None,
        stride: int = SERVE_OVERLAP,
        train_length: int = 128,
        batch_size: int = 16,
        token_budget: int = 8192,
        quantize: str = "none",
        threads: int = 0,
        max_windows: int | None = None,
        _model=None,
        _tokenizer=None,
    ):
        super().__init__(labels, multi)
        transformers = _transformers()
        self.model_name = model_name
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.quantize = quantize
        self.max_windows = max_windows
        set_torch_threads(threads)
        with _LOAD_LOCK:
            self.tokenizer = _tokenizer or transformers.AutoTokenizer.from_pretrained(model_name)
            if not getattr(self.tokenizer, "is_fast", False):
                raise ValueError(f"{model_name}: a fast tokenizer (with offset mapping) is required")
            self.model = _model or self._new_model(transformers)
        self.model.eval()
        limit = getattr(self.model.config, "max_position_embeddings", 512) or 512
        # training window and serving window; they stay equal unless max_length is given (see default_serve_length)
        self.train_length = min(train_length, limit)
        self.max_length = min(max_length or self.default_serve_length(limit), limit)
        self.stride = stride
        self.threads = threads
        saved = Path(model_name)
        onnx_cache = _onnx_cache_dir(saved) if (saved / "goldloop_model.json").is_file() else None  # a saved goldloop model
        self._serving = serving_model(self.model, quantize, threads, onnx_cache)
        self.revision = 0

    def _new_model(self, transformers):
        raise NotImplementedError

    def default_serve_length(self, limit: int) -> int:
        # serve with the window the model was trained on: measured on NCBI disease (300 abstracts, 5 epochs,
        # 128-token training windows) 512-token serving windows dropped entity F1 from 0.54 to 0.44
        return self.train_length

    def cache_key(self) -> str:
        return f"{self.kind}:{id(self)}:{self.revision}:{self.quantize}"

    # tokenisation and batching -----------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
        """Token ids (no special tokens) and character offsets for each text, in one tokenizer call."""
        enc = self.tokenizer(
            list(texts), add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        return enc["input_ids"], [[tuple(o) for o in offs] for offs in enc["offset_mapping"]]

    def _windows_for(self, n_tokens: int) -> list[tuple[int, int]]:
        spans = windows(n_tokens, self.max_length - 2, self.stride)
        if self.max_windows:
            spans = spans[: self.max_windows]
        return spans

    def _wrap(self, ids: Sequence[int]) -> list[int]:
        return [self.tokenizer.cls_token_id, *ids, self.tokenizer.sep_token_id]

    def forward(self, seqs: Sequence[Sequence[int]], model=None) -> list[np.ndarray]:
        """Run sequences through the model, sorted by length in token-budget batches; logits per sequence."""
        import torch

        model = model or self._serving
        out: list[np.ndarray | None] = [None] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        pad = self.tokenizer.pad_token_id or 0
        batch: list[int] = []

        def run(batch: list[int]) -> None:
            width = max(len(seqs[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, : len(seqs[i])] = torch.tensor(seqs[i], dtype=torch.long)
                mask[row, : len(seqs[i])] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits.float().numpy()
            for row, i in enumerate(batch):
                out[i] = logits[row, : len(seqs[i])] if logits.ndim == 3 else logits[row]

        with torch.inference_mode():
            for i in order:
                width = len(seqs[i])  # sorted ascending: the newcomer is the widest
                if batch and (len(batch) >= self.batch_size or width * (len(batch) + 1) > self.token_budget):
                    run(batch)
                    batch = []
                batch.append(i)
            if batch:
                run(batch)
        return out  # type: ignore[return-value]

    # persistence -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        self._write_meta(path, **self._saved_options())

    def _saved_options(self) -> dict:
        """What goldloop_model.json records next to the weights (read back by ``load``)."""
        return {"base_model": self.model_name, "max_length": self.max_length, "train_length": self.train_length,
                "stride": self.stride, "max_windows": self.max_windows}

    def prepare_serving(self, saved_dir: Path, quantize: str) -> None:
        """Build what loading this (saved) model with `quantize` needs, so the load itself is fast."""
        if quantize == "int8":
            from .onnx_int8 import cached_int8_path

            cached_int8_path(self.model, _onnx_cache_dir(Path(saved_dir)))

    @classmethod
    def load(cls, path: Path, **options: Any) -> "HFModel":
        meta = cls.read_meta(path)
        opts = {k: meta[k] for k in ("max_length", "train_length", "stride", "max_windows") if meta.get(k) is not None}
        opts.update(options)
        opts.pop("model_name", None)
        return cls(meta["labels"], meta.get("multi", False), model_name=str(path), **opts)


POOLINGS = ("mean", "model")


def use_mean_pooling(model) -> bool:
    """Make a ``*ForSequenceClassification`` model classify the masked mean of its last hidden states.

    Sentence encoders (all-MiniLM-L6-v2 and other sentence-transformers) are trained for mean pooling; their
    [CLS] vector and BERT pooler are not. Measured on Financial PhraseBank with 100 labels, a logistic
    regression on frozen features scores macro-F1 0.78 on mean-pooled vectors and 0.63 on [CLS] or pooler
    output. The model's ``forward`` is replaced on this instance (weights and saved files are unchanged;
    the choice is saved in goldloop_model.json and re-applied on load). Only for heads that are a single
    linear layer on a hidden-size vector behind dropout (BERT, MiniLM, ...); returns False otherwise.
    """
    import types

    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    head, base = getattr(model, "classifier", None), getattr(model, "base_model", None)
    hidden = getattr(model.config, "hidden_size", None)
    if not isinstance(head, torch.nn.Linear) or head.in_features != hidden or base is None or base is model:
        return False
    if not isinstance(getattr(model, "dropout", None), torch.nn.Module):
        model.dropout = torch.nn.Identity()

    def forward(self, input_ids=None, attention_mask=None, **_ignored):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled_output(self, input_ids, attention_mask))))

    model.forward = types.MethodType(forward, model)
    model.goldloop_pooling = "mean"
    return True


def pooled_output(model, input_ids, attention_mask):
    """The vector a mean-pooling classification head sees: the masked mean of the last hidden states."""
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class TokenClassifier(HFModel):
    """BIO token classification on a Hugging Face encoder → character spans with scores."""

    kind = "token_classifier"
    task = "spans"
    LOW_K = 10  # document confidence: mean max-probability of its K least confident tokens

    def _new_model(self, transformers):
        tags = bio_labels(self.labels)
        return transformers.AutoModelForTokenClassification.from_pretrained(
            self.model_name, num_labels=len(tags), id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)}
        )

    @property
    def tags(self) -> list[str]:
        return bio_labels(self.labels)

    def token_probs(self, texts: Sequence[str]) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
        """Per text: token offsets and merged BIO probabilities [T, 1+2L] over all its windows."""
        ids, offsets = self.tokenize(texts)
        seqs, owners = [], []
        plan: list[list[tuple[int, int]]] = []
        for d, doc_ids in enumerate(ids):
            spans = windows(len(doc_ids), self.max_length - 2, self.stride) if doc_ids else []
            plan.append(spans)
            for a, b in spans:
                seqs.append(self._wrap(doc_ids[a:b]))
                owners.append(d)
        logits = self.forward(seqs) if seqs else []
        per_doc: list[list[np.ndarray]] = [[] for _ in texts]
        for d, lg in zip(owners, logits):
            per_doc[d].append(_softmax(lg[1:-1]))
        out = []
        for d in range(len(texts)):
            if not plan[d]:
                out.append((offsets[d], np.zeros((0, len(self.tags)), dtype=np.float32)))
            else:
                out.append((offsets[d], merge_windows(len(ids[d]), plan[d], per_doc[d])))
        return out

    def predict(self, texts: Sequence[str]) -> list[TextPrediction]:
        preds = []
        for text, (offs, probs) in zip(texts, self.token_probs(texts)):
            if len(offs) == 0:
                preds.append(TextPrediction(spans=[], confidence=1.0))
                continue
            spans = decode_spans(text, offs, probs, self.labels)
            best = np.sort(probs.max(axis=1))[: self.LOW_K]
            preds.append(TextPrediction(spans=spans, confidence=float(best.mean())))
        return preds

    def features(self, texts: Sequence[str], targets: Sequence[Sequence[tuple[int, int, str]]]):
        """Training windows: (input ids with specials, BIO label ids with -100 on specials), per window."""
        ids, offsets = self.tokenize(texts)
        out = []
        for doc_ids, offs, spans in zip(ids, offsets, targets):
            if not doc_ids:
                continue
            labels = encode_spans(offs, spans, self.labels)
            for a, b in windows(len(doc_ids), self.train_length - 2, self.train_length // 4):
                out.append((self._wrap(doc_ids[a:b]), [-100, *labels[a:b], -100]))
        return out

    def fit(self, examples: Examples, **options: Any) -> dict:
        from ..training import fit_token_classifier

        result = fit_token_classifier(self, examples, **options)
        self._after_fit()
        return result

    def _after_fit(self) -> None:
        self.model.eval()
        self._serving = serving_model(self.model, self.quantize, self.threads)  # new weights: not the saved model's
        self.revision += 1


class SequenceClassifier(HFModel):
    """Document classification (single- or multi-label Choices) on a Hugging Face encoder."""

    kind = "sequence_classifier"
    task = "choices"

    def __init__(self, labels, multi=False, *, pooling: str = "mean", **kw):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling  # before the model is built: _new_model reads it
        kw.setdefault("max_windows", 4)
        super().__init__(labels, multi, **kw)

    def _new_model(self, transformers):
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            self.model_name,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id={t: i for i, t in enumerate(self.labels)},
            problem_type="multi_label_classification" if self.multi else "single_label_classification",
        )
        if self.pooling == "mean" and not use_mean_pooling(model):
            log.info("%s: its classification head does not take a pooled vector; keeping the architecture's own pooling", self.model_name)
            self.pooling = "model"
        return model

    def _saved_options(self) -> dict:
        return {**super()._saved_options(), "pooling": self.pooling}

    @classmethod
    def load(cls, path: Path, **options: Any) -> "HFModel":
        # models saved before mean pooling existed used the architecture's own ([CLS]) pooling
        options.setdefault("pooling", cls.read_meta(path).get("pooling") or "model")
        return super().load(path, **options)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """[n, k] label probabilities; a long document's windows (up to max_windows) are averaged in logit space."""
        ids, _ = self.tokenize(texts)
        seqs, owners = [], []
        for d, doc_ids in enumerate(ids):
            for a, b in self._windows_for(len(doc_ids)) if doc_ids else [(0, 0)]:
                seqs.append(self._wrap(doc_ids[a:b]))
                owners.append(d)
        logits = self.forward(seqs)
        sums = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        counts = np.zeros(len(texts))
        for d, lg in zip(owners, logits):
            sums[d] += lg
            counts[d] += 1
        mean = sums / counts[:, None]
        return _sigmoid(mean) if self.multi else _softmax(mean)

    def predict(self, texts: Sequence[str]) -> list[TextPrediction]:
        probs = self.probabilities(texts)
        out = []
        for row in probs:
            conf = float(np.mean(np.maximum(row, 1 - row))) if self.multi else float(row.max())
            out.append(TextPrediction(probs=dict(zip(self.labels, map(float, row))), confidence=conf))
        return out

    def features(self, texts: Sequence[str], targets: Sequence[Sequence[str]]):
        """Training inputs: the first window of each text with its label id (or multi-hot vector)."""
        ids, _ = self.tokenize(texts)
        index = {lbl: i for i, lbl in enumerate(self.labels)}
        out = []
        for doc_ids, labels in zip(ids, targets):
            unknown = [lbl for lbl in labels if lbl not in index]
            if unknown:
                raise ValueError(f"labels {unknown} are not among {self.labels}")
            (a, b) = (0, min(len(doc_ids), self.train_length - 2))
            if self.multi:
                y: Any = [1.0 if lbl in labels else 0.0 for lbl in self.labels]
            else:
                if len(labels) != 1:
                    raise ValueError(f"single-choice control needs exactly one label per text, got {labels}")
                y = index[labels[0]]
            out.append((self._wrap(doc_ids[a:b]), y))
        return out

    def fit(self, examples: Examples, **options: Any) -> dict:
        from ..training import fit_sequence_classifier

        result = fit_sequence_classifier(self, examples, **options)
        TokenClassifier._after_fit(self)  # same post-fit swap
        return result


def write_json(path: Path, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj, indent=2))
