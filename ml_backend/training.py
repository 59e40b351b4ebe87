"""Fine-tuning of the encoder models: AdamW, warmup, weight decay, class weights, early stopping,
optional frozen lower layers or LoRA adapters. No HTTP, no Label Studio."""
from __future__ import annotations

import copy
import logging
import math
import random
import time
from typing import Any, Callable, Sequence

import numpy as np

from .models.base import Examples

log = logging.getLogger(__name__)


def freeze_lower_layers(model, n_layers: int) -> int:
    """Freeze the embeddings and the lowest n encoder layers; return how many parameters stay trainable."""
    if n_layers > 0:
        for name, param in model.named_parameters():
            if ".embeddings." in name or name.startswith("embeddings."):
                param.requires_grad = False
            for i in range(n_layers):
                if f"encoder.layer.{i}." in name:
                    param.requires_grad = False
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _batches(n: int, batch_size: int, lengths: Sequence[int], rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (shuffle, then sort inside chunks) to cut padding."""
    idx = list(range(n))
    rng.shuffle(idx)
    chunk = batch_size * 50
    out: list[list[int]] = []
    for c in range(0, n, chunk):
        part = sorted(idx[c : c + chunk], key=lambda i: lengths[i])
        out += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(out)
    return out


def _pad(seqs: Sequence[Sequence[int]], value: int):
    import torch

    width = max(len(s) for s in seqs)
    t = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        t[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return t


def _class_weights(counts: np.ndarray) -> np.ndarray:
    """Inverse square-root frequency, normalised to mean 1 over the classes present (unseen classes get 1)."""
    w = np.ones_like(counts, dtype=np.float64)
    seen = counts > 0
    w[seen] = 1.0 / np.sqrt(counts[seen])
    w[seen] *= seen.sum() / w[seen].sum()
    return w


def train_loop(
    wrapper,
    feats: list[tuple[list[int], Any]],
    weights: list[float],
    loss_fn: Callable,
    val_feats: list[tuple[list[int], Any]] | None = None,
    *,
    epochs: int = 3,
    lr: float = 5e-5,
    batch_size: int = 16,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    patience: int = 1,
    freeze_layers: int = 0,
    lora: bool = False,
    lora_rank: int = 8,
    max_steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """The shared fine-tuning loop; keeps the weights of the best validation epoch."""
    import torch
    from tqdm.auto import tqdm

    if not feats:
        raise ValueError("no training examples (every text was empty)")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = wrapper.model
    if lora:
        from peft import LoraConfig, get_peft_model

        task = "TOKEN_CLS" if wrapper.task == "spans" else "SEQ_CLS"
        model = get_peft_model(model, LoraConfig(task_type=task, r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.1, target_modules=["query", "value"]))
    trainable = freeze_lower_layers(model, freeze_layers)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    lengths = [len(f[0]) for f in feats]
    steps_per_epoch = math.ceil(len(feats) / batch_size)
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    warmup = max(1, int(total * warmup_ratio))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / max(1, total - warmup)) if s >= warmup else (s + 1) / warmup
    )
    pad = wrapper.tokenizer.pad_token_id or 0
    history: list[dict] = []
    best_val, best_state, bad_epochs, step = math.inf, None, 0, 0
    started = time.perf_counter()
    bar = tqdm(total=total, desc=f"fine-tune {wrapper.kind}", unit="step", disable=not progress, leave=False)
    for epoch in range(epochs):
        model.train()
        losses = []
        for batch in _batches(len(feats), batch_size, lengths, rng):
            if step >= total:
                break
            ids = _pad([feats[i][0] for i in batch], pad)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(batch):
                mask[r, : len(feats[i][0])] = 1
            out = model(input_ids=ids, attention_mask=mask).logits
            loss = loss_fn(out, [feats[i][1] for i in batch], torch.tensor([weights[i] for i in batch], dtype=torch.float32))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None}
        if val_feats:
            record["val_loss"] = evaluate_loss(wrapper, model, val_feats, loss_fn, batch_size)
            if record["val_loss"] < best_val - 1e-4:
                best_val, bad_epochs = record["val_loss"], 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_epochs += 1
        history.append(record)
        log.info("epoch %s: %s", epoch + 1, record)
        if step >= total or (val_feats and bad_epochs >= patience):
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    if lora:
        model = model.merge_and_unload()
    for p in model.parameters():
        p.requires_grad = True
    wrapper.model = model
    model.eval()
    return {
        "history": history,
        "steps": step,
        "epochs_run": len(history),
        "best_val_loss": None if best_val is math.inf else best_val,
        "trainable_params": trainable,
        "seconds": round(time.perf_counter() - started, 2),
        "examples": len(feats),
    }


def evaluate_loss(wrapper, model, feats, loss_fn, batch_size: int) -> float:
    """Mean loss over features, no gradients."""
    import torch

    model.eval()
    pad = wrapper.tokenizer.pad_token_id or 0
    losses, sizes = [], []
    with torch.inference_mode():
        order = sorted(range(len(feats)), key=lambda i: len(feats[i][0]))
        for c in range(0, len(order), batch_size):
            batch = order[c : c + batch_size]
            ids = _pad([feats[i][0] for i in batch], pad)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(batch):
                mask[r, : len(feats[i][0])] = 1
            out = model(input_ids=ids, attention_mask=mask).logits
            losses.append(float(loss_fn(out, [feats[i][1] for i in batch], torch.ones(len(batch)))))
            sizes.append(len(batch))
    model.train()
    return float(np.average(losses, weights=sizes))


def _split_val(examples: Examples, val: Examples | None, val_fraction: float, seed: int):
    if val is not None or val_fraction <= 0 or len(examples.texts) < 10:
        return examples, val
    rng = random.Random(seed)
    idx = list(range(len(examples.texts)))
    rng.shuffle(idx)
    k = max(1, int(len(idx) * val_fraction))
    v, t = idx[:k], idx[k:]
    w = examples.weights
    pick = lambda ids: Examples([examples.texts[i] for i in ids], [examples.targets[i] for i in ids], None if w is None else [w[i] for i in ids])  # noqa: E731
    return pick(t), pick(v)


def fit_token_classifier(wrapper, examples: Examples, val: Examples | None = None, *, val_fraction: float = 0.1, class_weighting: bool = True, **options) -> dict:
    """Fine-tune a TokenClassifier on character spans (BIO on every sub-word; -100 on specials)."""
    import torch

    train, val = _split_val(examples, val, val_fraction, options.get("seed", 0))
    feats, weights = [], []
    for j, text in enumerate(train.texts):
        f = wrapper.features([text], [train.targets[j]])
        feats += f
        weights += [1.0 if train.weights is None else train.weights[j]] * len(f)
    n_tags = len(wrapper.tags)
    counts = np.zeros(n_tags)
    for _, labels in feats:
        for y in labels:
            if y >= 0:
                counts[y] += 1
    cw = torch.tensor(_class_weights(counts) if class_weighting else np.ones(n_tags), dtype=torch.float32)

    def loss_fn(logits, labels, w):
        y = _pad(labels, -100)
        per_tok = torch.nn.functional.cross_entropy(logits.reshape(-1, n_tags), y.reshape(-1), weight=cw, ignore_index=-100, reduction="none").reshape(y.shape)
        valid = (y != -100).float()
        per_seq = (per_tok * valid).sum(1) / valid.sum(1).clamp(min=1)
        return (per_seq * w).sum() / w.sum()

    val_feats = wrapper.features(val.texts, val.targets) if val is not None else None
    result = train_loop(wrapper, feats, weights, loss_fn, val_feats, **options)
    result["class_weights"] = dict(zip(wrapper.tags, map(float, cw)))
    return result


def fit_sequence_classifier(wrapper, examples: Examples, val: Examples | None = None, *, val_fraction: float = 0.1, class_weighting: bool = True, **options) -> dict:
    """Fine-tune a SequenceClassifier on document labels (single- or multi-label)."""
    import torch

    train, val = _split_val(examples, val, val_fraction, options.get("seed", 0))
    feats = wrapper.features(train.texts, train.targets)
    weights = [1.0] * len(feats) if train.weights is None else list(train.weights)
    k = len(wrapper.labels)
    if wrapper.multi:
        counts = np.sum([f[1] for f in feats], axis=0)
        pos_weight = torch.tensor(np.clip((len(feats) - counts) / np.maximum(counts, 1), 1, 20) if class_weighting else np.ones(k), dtype=torch.float32)

        def loss_fn(logits, labels, w):
            y = torch.tensor(labels, dtype=torch.float32)
            per = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="none").mean(1)
            return (per * w).sum() / w.sum()
    else:
        counts = np.bincount([f[1] for f in feats], minlength=k).astype(float)
        if (counts > 0).sum() < 2:
            raise ValueError(f"need at least two classes to train, got only {[wrapper.labels[i] for i in np.nonzero(counts)[0]]}")
        cw = torch.tensor(_class_weights(counts) if class_weighting else np.ones(k), dtype=torch.float32)

        def loss_fn(logits, labels, w):
            per = torch.nn.functional.cross_entropy(logits, torch.tensor(labels), weight=cw, reduction="none")
            return (per * w).sum() / w.sum()

    val_feats = wrapper.features(val.texts, val.targets) if val is not None else None
    return train_loop(wrapper, feats, weights, loss_fn, val_feats, **options)
