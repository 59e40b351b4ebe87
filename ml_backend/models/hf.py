"""Hugging Face models: token classification (BIO spans), sequence classification (Choices) and a bare
encoder (text and token embeddings).

Fast path: every text is tokenised once (fast tokenizer, offsets kept), split into overlapping windows
no longer than the model's window, all windows of a request are sorted by length and run in token-budget
batches with dynamic padding under ``torch.inference_mode``. Serving precision (``QUANTIZE_MODES``): fp32,
int8 through ONNX Runtime (``onnx_int8.py``), PyTorch dynamic int8, or bf16. Fine-tuning is in ``finetune.py``.

Device: a model runs on ``device`` (``torch_utils.resolve_device``; ``None`` is the process's device). On CUDA
inference runs under bf16/fp16 autocast, in batches sized by the free GPU memory; the int8 modes are CPU
kernels, so their serving twin stays on the CPU whatever the device (the model itself may train on CUDA).
Saved weights are CPU tensors: a model trained on one device loads on any.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..alignment import SERVE_OVERLAP, bio_labels, decode_spans, empty_overlaps, encode_spans, merge_windows, served_spans, windows
from .base import Examples, Model, TextPrediction, choice_predictions
from .finetune import fit_sequence_classifier, fit_token_classifier
from .torch_utils import (LOAD_LOCK, autocast, cpu_state_dict, device_token_budget, length_batches, pad_batch, pooled_output,
                          resolve_device, set_torch_threads, sigmoid, softmax, transformers_module)

log = logging.getLogger(__name__)


def quantize_int8_torch(model):
    """PyTorch int8 dynamic quantization of the encoder's nn.Linear layers (weights int8, activations on the fly).

    The task head (classifier) stays fp32: it is tiny, and quantizing it costs the most accuracy.
    """
    import copy
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    targets = {name for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear) and ".encoder." in f".{name}"}
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if on_cpu:
            return quantize_dynamic(model, targets, dtype=torch.qint8)  # inplace=False: a quantized copy
        # int8 kernels are CPU kernels: quantize a CPU copy of a CUDA model, in place
        return quantize_dynamic(copy.deepcopy(model).cpu(), targets, dtype=torch.qint8, inplace=True)


# none: fp32 as trained; int8: ONNX Runtime int8 (per-channel weights; the fast one); int8-torch: PyTorch
# dynamic int8 (no extra build step, less accurate, slower); bf16: a bfloat16 copy (pays off only on CPUs
# with AVX-512-BF16/AMX)
QUANTIZE_MODES = ("none", "int8", "int8-torch", "bf16")
CPU_QUANTIZE = ("int8", "int8-torch")  # CPU kernels: their serving twin runs on the CPU on any device


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


def onnx_cache_dir(saved_dir: Path) -> Path:
    """Where a saved model keeps its int8 ONNX graphs (built by prepare_serving or on the first int8 load)."""
    return saved_dir / "onnx"


class HFModel:
    """A Hugging Face model with its fast tokenizer: tokenisation, overlapping windows, token-budget batches."""

    def __init__(
        self,
        *,
        model_name: str,
        max_length: int | None = None,
        stride: int = SERVE_OVERLAP,
        train_length: int = 128,
        batch_size: int | None = 16,
        token_budget: int = 8192,
        quantize: str = "none",
        threads: int = 0,
        max_windows: int | None = None,
        device: str | None = None,
        _model=None,
        _tokenizer=None,
    ):
        transformers = transformers_module()
        self.device = resolve_device(device)  # first: a bad device fails before a model loads
        self.model_name = model_name
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.quantize = quantize
        self.max_windows = max_windows
        set_torch_threads(threads)
        with LOAD_LOCK:
            self.tokenizer = _tokenizer or transformers.AutoTokenizer.from_pretrained(model_name)
            if not getattr(self.tokenizer, "is_fast", False):
                raise ValueError(f"{model_name}: a fast tokenizer (with offset mapping) is required")
            self.model = _model or self._new_model(transformers)
        self.model.to(self.device)
        self.model.eval()
        if self.device.type == "cuda":  # the token budget alone sizes GPU batches, from the free memory
            self.batch_size = None
            self.token_budget = device_token_budget(self.device, self.model.config, token_budget)
        limit = getattr(self.model.config, "max_position_embeddings", 512) or 512
        self.position_limit = limit
        # training window and serving window; they stay equal unless max_length is given (see default_serve_length)
        self.train_length = min(train_length, limit)
        self.max_length = min(max_length or self.default_serve_length(limit), limit)
        self.stride = stride
        self.threads = threads
        saved = Path(model_name)
        onnx_cache = onnx_cache_dir(saved) if (saved / "goldloop_model.json").is_file() else None  # a saved goldloop model
        self.serving = serving_model(self.model, quantize, threads, onnx_cache)  # what inference runs on

    def _new_model(self, transformers):
        raise NotImplementedError

    def default_serve_length(self, limit: int) -> int:
        # serve with the window the model was trained on: measured on NCBI disease (300 abstracts, 5 epochs,
        # 128-token training windows) 512-token serving windows dropped entity F1 from 0.54 to 0.44
        return self.train_length

    # tokenisation and batching -----------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
        """Token ids (no special tokens) and character offsets for each text, in one tokenizer call."""
        enc = self.tokenizer(
            list(texts), add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
        )
        return enc["input_ids"], [empty_overlaps(offs) for offs in enc["offset_mapping"]]

    def windows_for(self, n_tokens: int) -> list[tuple[int, int]]:
        """The serving windows of a text of ``n_tokens`` tokens: the first ``max_windows`` when that is set."""
        spans = windows(n_tokens, self.max_length - 2, self.stride)
        if self.max_windows:
            spans = spans[: self.max_windows]
        return spans

    def wrap(self, ids: Sequence[int]) -> list[int]:
        """A window's token ids between the model's special tokens."""
        return [self.tokenizer.cls_token_id, *ids, self.tokenizer.sep_token_id]

    def window_inputs(
        self, ids: Sequence[Sequence[int]], spans_of: Callable[[int], list[tuple[int, int]]]
    ) -> tuple[list[list[tuple[int, int]]], list[list[int]], list[int]]:
        """Every text's windows as model inputs: (plan, seqs, owners).

        ``plan[d]`` lists text d's [start, end) token windows (``spans_of(n_tokens)``), ``seqs`` every
        window wrapped in special tokens, ``owners[j]`` the text window j belongs to.
        """
        plan, seqs, owners = [], [], []
        for d, doc_ids in enumerate(ids):
            spans = spans_of(len(doc_ids))
            plan.append(spans)
            for a, b in spans:
                seqs.append(self.wrap(doc_ids[a:b]))
                owners.append(d)
        return plan, seqs, owners

    @property
    def serving_device(self):
        """Where inference runs: the model's device, or the CPU for the int8 modes."""
        import torch

        return torch.device("cpu") if self.quantize in CPU_QUANTIZE else self.device

    def outputs(self, result):
        """What ``forward`` keeps of a model call: the logits (``Encoder``: the last hidden states)."""
        return result.logits

    def forward(self, seqs: Sequence[Sequence[int]], model=None, *, token_budget: int | None = None, progress: bool = False,
                desc: str = "forward") -> list[np.ndarray]:
        """Run sequences through the model, sorted by length in token-budget batches; outputs per sequence.

        Per-token outputs come back cut to the sequence's length ([len, d]); per-sequence ones as a vector.
        """
        import torch
        from tqdm.auto import tqdm

        model = model if model is not None else self.serving
        device = self.serving_device if model is self.serving else self.device
        out: list[np.ndarray | None] = [None] * len(seqs)
        pad = self.tokenizer.pad_token_id or 0
        batches = length_batches([len(s) for s in seqs], self.batch_size, token_budget or self.token_budget)
        # fp32 weights run under the process's autocast (bf16/fp16 on CUDA; the CPU only with precision bf16); the
        # bf16/int8 serving twins run as they are
        amp = autocast(device) if self.quantize == "none" else nullcontext()
        with torch.inference_mode(), amp:
            for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
                ids, mask = pad_batch([seqs[i] for i in batch], pad)
                result = model(input_ids=ids.to(device), attention_mask=mask.to(device))
                values = self.outputs(result).float().cpu().numpy()
                for row, i in enumerate(batch):
                    out[i] = values[row, : len(seqs[i])] if values.ndim == 3 else values[row]
        return out  # type: ignore[return-value]


def merge_text_windows(n_tokens: Sequence[int], plan: Sequence[Sequence[tuple[int, int]]], owners: Sequence[int],
                       values: Sequence[np.ndarray], width: int) -> list[np.ndarray]:
    """Per text, its windows' per-token values merged into one [T, width] array (``alignment.merge_windows``).

    ``values[j]`` belongs to window j of text ``owners[j]`` (special tokens cut off); an empty text gets [0, width].
    """
    per_text: list[list[np.ndarray]] = [[] for _ in n_tokens]
    for d, v in zip(owners, values):
        per_text[d].append(v)
    return [merge_windows(n, list(plan[d]), per_text[d]) if n else np.zeros((0, width), dtype=np.float32)
            for d, n in enumerate(n_tokens)]


class Encoder(HFModel):
    """A bare encoder (``AutoModel``, no head): mean-pooled text embeddings and contextual token embeddings."""

    def __init__(self, model_name: str, *, threads: int = 0, device: str | None = None, _model=None, _tokenizer=None):
        # no count limit per batch: the token budget alone sizes them
        super().__init__(model_name=model_name, batch_size=None, threads=threads, device=device, _model=_model, _tokenizer=_tokenizer)

    def _new_model(self, transformers):
        return transformers.AutoModel.from_pretrained(self.model_name)

    def outputs(self, result):
        return result.last_hidden_state

    @property
    def dim(self) -> int:
        """The embedding size (the encoder's hidden size)."""
        return int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str], max_length: int = 256, token_budget: int | None = None, progress: bool = True) -> np.ndarray:
        """L2-normalised float32 text embeddings [n, d]: the mean over every token of the text truncated to
        ``max_length`` tokens, special tokens included (as sentence-transformers pools); ``token_budget``: padded
        tokens per batch (default the model's: 8192 on the CPU, sized by the free memory on CUDA)."""
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        enc = self.tokenizer(list(texts), truncation=True, max_length=max_length, verbose=False)
        hidden = self.forward(enc["input_ids"], token_budget=token_budget, progress=progress, desc="embed")
        emb = np.stack([h.mean(axis=0) for h in hidden]).astype(np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def token_embeddings(self, texts: Sequence[str], max_length: int = 512, stride: int = 64, token_budget: int | None = None,
                         progress: bool = True) -> tuple[list[list[tuple[int, int]]], list[np.ndarray]]:
        """Character offsets and contextual embeddings [T, d] of every token (no special tokens) per text.

        Long texts run in windows of ``max_length`` tokens (at most the model's) overlapping by ``stride``;
        each token takes its vector from the window where it is most central.
        """
        size = min(max_length, self.position_limit) - 2
        ids, offsets = self.tokenize(texts)
        plan, seqs, owners = self.window_inputs(ids, lambda n: windows(n, size, stride))
        hidden = self.forward(seqs, token_budget=token_budget, progress=progress, desc="embed tokens")
        embs = merge_text_windows([len(x) for x in ids], plan, owners, [h[1:-1] for h in hidden], self.dim)
        return offsets, embs


class HFTaskModel(HFModel, Model):
    """An HF model serving one control: its labels, and ``save``/``load`` of the weights + goldloop_model.json."""

    def __init__(self, labels: Sequence[str], multi: bool = False, **kw: Any):
        Model.__init__(self, labels, multi)  # first: building the model reads the labels
        HFModel.__init__(self, **kw)
        self.revision = 0

    def cache_key(self) -> str:
        return f"{self.kind}:{id(self)}:{self.revision}:{self.quantize}"

    def _after_fit(self) -> None:
        self.model.eval()
        self.serving = serving_model(self.model, self.quantize, self.threads)  # new weights: not the saved model's
        self.revision += 1

    # persistence -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        # CPU tensors: a model trained on a GPU loads on a machine without one (and back)
        self.model.save_pretrained(path, state_dict=cpu_state_dict(self.model))
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

            cached_int8_path(self.model, onnx_cache_dir(Path(saved_dir)))

    @classmethod
    def load(cls, path: Path, **options: Any) -> "HFTaskModel":
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



class TokenClassifier(HFTaskModel):
    """BIO token classification on a Hugging Face encoder → character spans with scores."""

    kind = "token_classifier"
    scores_tokens = True
    distillable = True
    task = "spans"
    LOW_K = 10  # document confidence: mean max-probability of its K least confident tokens

    def __init__(self, labels: Sequence[str], multi: bool = False, *, encoder_layers: int = 0, **kw: Any):
        self.encoder_layers = encoder_layers  # read by _new_model, which HFModel.__init__ calls
        super().__init__(labels, multi, **kw)

    def _new_model(self, transformers):
        tags = bio_labels(self.labels)
        config = transformers.AutoConfig.from_pretrained(
            self.model_name, num_labels=len(tags), id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)}
        )
        if 0 < self.encoder_layers < config.num_hidden_layers:  # the lowest layers load, the rest are left out
            config.num_hidden_layers = self.encoder_layers
        return transformers.AutoModelForTokenClassification.from_pretrained(self.model_name, config=config)

    @property
    def tags(self) -> list[str]:
        return bio_labels(self.labels)

    def token_probs(self, texts: Sequence[str]) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
        """Per text: token offsets and merged BIO probabilities [T, 1+2L] over all its windows."""
        ids, offsets = self.tokenize(texts)
        # every window of the text, whatever max_windows says: spans are wanted all through a document
        plan, seqs, owners = self.window_inputs(ids, lambda n: windows(n, self.max_length - 2, self.stride) if n else [])
        logits = self.forward(seqs) if seqs else []
        probs = merge_text_windows([len(x) for x in ids], plan, owners, [softmax(lg[1:-1]) for lg in logits], len(self.tags))
        return list(zip(offsets, probs))

    def predict(self, texts: Sequence[str]) -> list[TextPrediction]:
        preds = []
        for text, (offs, probs) in zip(texts, self.token_probs(texts)):
            if len(offs) == 0:
                preds.append(TextPrediction(spans=[], confidence=1.0))
                continue
            # whole words: measured on NCBI disease, +1.2 entity-F1 points (new recipe), +3.6 (old); CJK unchanged
            spans = served_spans(text, decode_spans(text, offs, probs, self.labels))
            best = np.sort(probs.max(axis=1))[: self.LOW_K]
            preds.append(TextPrediction(spans=spans, confidence=float(best.mean())))
        return preds

    def features(self, texts: Sequence[str], targets: Sequence[Sequence[tuple[int, int, str]]],
                 masks: Sequence[Sequence[tuple[int, int]]] | None = None):
        """Training windows: (input ids with specials, BIO label ids with -100 on specials), per window.

        ``masks``: per text, character ranges whose tokens get -100 too (left out of the loss).
        """
        ids, offsets = self.tokenize(texts)
        out = []
        for j, (doc_ids, offs, spans) in enumerate(zip(ids, offsets, targets)):
            if not doc_ids:
                continue
            labels = encode_spans(offs, spans, self.labels)
            if masks is not None and masks[j]:
                # a token is masked when any of its characters is: prefix sums over a per-character mask
                end = max(max(e for _, e in masks[j]), max((e for _, e in offs), default=0))
                marked = np.zeros(end + 1, dtype=np.int32)
                for ms, me in masks[j]:
                    marked[ms:me] = 1
                cum = np.concatenate([[0], np.cumsum(marked)])
                for t, (ts, te) in enumerate(offs):
                    if te > ts and cum[te] - cum[ts] > 0:
                        labels[t] = -100
            for a, b in windows(len(doc_ids), self.train_length - 2, self.train_length // 4):
                out.append((self.wrap(doc_ids[a:b]), [-100, *labels[a:b], -100]))
        return out

    def fit(self, examples: Examples, **options: Any) -> dict:
        result = fit_token_classifier(self, examples, **options)
        self._after_fit()
        return result


class SequenceClassifier(HFTaskModel):
    """Document classification (single- or multi-label Choices) on a Hugging Face encoder."""

    kind = "sequence_classifier"
    distillable = True
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
    def load(cls, path: Path, **options: Any) -> "HFTaskModel":
        # models saved before mean pooling existed used the architecture's own ([CLS]) pooling
        options.setdefault("pooling", cls.read_meta(path).get("pooling") or "model")
        return super().load(path, **options)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """[n, k] label probabilities; a long document's windows (up to max_windows) are averaged in logit space."""
        ids, _ = self.tokenize(texts)
        _, seqs, owners = self.window_inputs(ids, self.windows_for)
        logits = self.forward(seqs)
        sums = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        counts = np.zeros(len(texts))
        for d, lg in zip(owners, logits):
            sums[d] += lg
            counts[d] += 1
        mean = sums / counts[:, None]
        return sigmoid(mean) if self.multi else softmax(mean)

    def predict(self, texts: Sequence[str]) -> list[TextPrediction]:
        return choice_predictions(self.labels, self.probabilities(texts), independent=self.multi)

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
            out.append((self.wrap(doc_ids[a:b]), y))
        return out

    def fit(self, examples: Examples, **options: Any) -> dict:
        result = fit_sequence_classifier(self, examples, **options)
        self._after_fit()
        return result
