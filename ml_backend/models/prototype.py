"""Zero-/few-shot Choices on a frozen sentence encoder: nearest label prototype by cosine similarity.

Before any label exists a label's prototype is the embedding of its name; every labeled document moves
it (prototype = normalised mean of the name embedding and the label's document embeddings). Cheap to fit
(one forward pass per new document), so it serves Choices from the first minute of a project. The encoder
runs on the model's device (``HFModel``); the prototypes are numpy arrays, saved and loaded on any device.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from .base import Examples, TextPrediction, choice_predictions
from .hf import HFTaskModel
from .torch_utils import LOAD_LOCK, mean_pool, resolve_device, softmax, transformers_module


class _MeanPool:
    """Wraps an encoder so that `.logits` is the attention-masked mean of its last hidden states."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.config = encoder.config

    def __call__(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return SimpleNamespace(logits=mean_pool(hidden, attention_mask))

    def eval(self):
        self.encoder.eval()
        return self

    def to(self, device):
        self.encoder.to(device)
        return self


# Frozen encoders shared by every prototype model of the process, per (encoder, device): a labeling config with
# eight Choices controls, or twenty projects on one encoder, hold one copy (~90 MB for MiniLM) instead of one each.
# At most MAX_SHARED_ENCODERS distinct encoders are kept for new models; one dropped here lives on only as long as
# a loaded model still uses it (Registry.max_loaded bounds those).
MAX_SHARED_ENCODERS = 4
_shared: "OrderedDict[tuple[str, str], tuple[Any, Any]]" = OrderedDict()


def shared_encoder(model_name: str, device: str | None = None) -> tuple[Any, Any]:
    """The process's (mean-pooling encoder, tokenizer) for ``model_name`` on ``device``, loaded on first use."""
    key = (str(model_name), str(resolve_device(device)))
    with LOAD_LOCK:  # one load per key, even when several projects warm at once
        if key in _shared:
            _shared.move_to_end(key)
            return _shared[key]
        transformers = transformers_module()
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_name)
        encoder = _MeanPool(transformers.AutoModel.from_pretrained(model_name))
        _shared[key] = (encoder, tokenizer)
        while len(_shared) > MAX_SHARED_ENCODERS:
            _shared.popitem(last=False)
        return encoder, tokenizer


def shared_encoders() -> int:
    """How many encoders the process keeps for new prototype models (tests, /metrics-style checks)."""
    return len(_shared)


class PrototypeClassifier(HFTaskModel):
    """Cosine similarity to label prototypes on mean-pooled frozen encoder embeddings."""

    kind = "prototype"
    learns_online = True
    embeds = True
    task = "choices"
    TEMPERATURE = 0.05

    def __init__(self, labels, multi=False, **kw):
        kw.setdefault("max_windows", 2)
        kw.setdefault("quantize", "none")
        if kw.get("_model") is None and kw.get("quantize") == "none":  # frozen and never changed: one copy serves all
            kw["_model"], kw["_tokenizer"] = shared_encoder(kw["model_name"], kw.get("device"))
        super().__init__(labels, multi, **kw)
        names = self.embed(list(self.labels))
        self.name_vectors = names
        self.sums = np.zeros_like(names)
        self.counts = np.zeros(len(self.labels))

    def _new_model(self, transformers):
        return _MeanPool(transformers.AutoModel.from_pretrained(self.model_name))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, one row per text (long texts: mean of the first windows)."""
        ids, _ = self.tokenize(texts)
        _, seqs, owners = self.window_inputs(ids, self.windows_for)
        vecs = self.forward(seqs)
        out = np.zeros((len(texts), vecs[0].shape[0]), dtype=np.float32)
        for d, v in zip(owners, vecs):
            out[d] += v
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def prototypes(self) -> np.ndarray:
        p = self.name_vectors + self.sums
        return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-9)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        sims = self.embed(texts) @ self.prototypes().T
        return softmax(sims / self.TEMPERATURE)

    def predict(self, texts: Sequence[str]) -> list[TextPrediction]:
        # one softmax over the prototypes, even for a multi-choice control: the top probability is the confidence
        return choice_predictions(self.labels, self.probabilities(texts), independent=False)

    def fit(self, examples: Examples, **options: Any) -> dict:
        index = {lbl: i for i, lbl in enumerate(self.labels)}
        vecs = self.embed(examples.texts)
        weights = examples.weights or [1.0] * len(examples.texts)
        for v, labels, w in zip(vecs, examples.targets, weights):
            for lbl in labels:
                if lbl not in index:
                    raise ValueError(f"label {lbl!r} is not among {self.labels}")
                self.sums[index[lbl]] += w * v
                self.counts[index[lbl]] += w
        self.revision += 1
        return {"examples": len(examples.texts), "per_label": dict(zip(self.labels, self.counts.tolist()))}

    def save(self, path: Path) -> None:
        path = Path(path)
        self._write_meta(path, base_model=self.model_name, max_length=self.max_length, stride=self.stride, max_windows=self.max_windows)
        np.save(path / "sums.npy", self.sums)
        (path / "counts.json").write_text(json.dumps(self.counts.tolist()))

    @classmethod
    def load(cls, path: Path, **options: Any) -> "PrototypeClassifier":
        meta = cls.read_meta(path)
        options.pop("model_name", None)
        opts = {k: meta[k] for k in ("max_length", "stride", "max_windows") if meta.get(k) is not None}
        opts.update(options)
        m = cls(meta["labels"], meta.get("multi", False), model_name=meta["base_model"], **opts)
        m.sums = np.load(Path(path) / "sums.npy")
        m.counts = np.array(json.loads((Path(path) / "counts.json").read_text()))
        return m
