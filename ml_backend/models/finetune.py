"""Fine-tuning of the Hugging Face models: AdamW, warmup, weight decay, class weights, early stopping,
optional frozen lower layers or LoRA adapters, a linear-probe head start for document classifiers, and an input
embedding that trains only the rows the training windows use.

The model classes in ``hf.py`` call these functions from ``fit``; this module sees a model only through
what it uses (``model``, ``tokenizer``, ``features``, ``labels``, ``multi``, ``kind``, ``task``, ``tags``,
``device``) and never imports ``hf.py``. Training runs on the model's device; on CUDA under autocast (bf16
where the GPU supports it, else fp16 with a gradient scaler), on the CPU in fp32 as always.
"""
from __future__ import annotations

import copy
import functools
import logging
import math
import random
import re
import time
from typing import Any, Callable, Sequence

import numpy as np

from .augment import MentionSwap
from .base import Examples
from .torch_utils import autocast, grad_scaler, length_batches, pad_batch, pooled_output, precision_name

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


@functools.lru_cache(maxsize=None)
def _used_rows_class():
    import torch

    class UsedRowsEmbedding(torch.nn.Module):
        """An input embedding whose trainable weight is only the given rows of a frozen full one.

        A token the rows lack reads the full embedding (it cannot be in a training window: only the padding)."""

        def __init__(self, full, rows: list[int]):
            super().__init__()
            self.full = full
            self.rows = rows
            self.weight = torch.nn.Parameter(full.weight.detach()[rows].clone())
            index = torch.full((full.num_embeddings,), -1, dtype=torch.long, device=full.weight.device)
            index[rows] = torch.arange(len(rows), device=full.weight.device)
            self.register_buffer("index", index, persistent=False)

        def forward(self, ids):
            local = self.index[ids]
            hit = local >= 0
            picked = torch.nn.functional.embedding(local.clamp(min=0), self.weight)
            return torch.where(hit.unsqueeze(-1), picked, self.full(ids))

    return UsedRowsEmbedding


def train_used_rows(model, windows: Sequence[Sequence[int]]) -> Callable[[], None] | None:
    """Make the input embedding train only the rows that ``windows`` use; return what writes them back.

    The other rows get no gradient anyway, but a dense AdamW step still reads, decays and writes them all:
    for multilingual-e5-small's 250k-row embedding (96M of its 118M parameters) that doubles the step time
    (docs/encoders.md). Training the used rows alone is the same update for those rows, and leaves the others
    as pretrained instead of weight-decayed, so a piece first seen at serving time reads its pretrained vector.
    None (nothing swapped) where the embedding is frozen or not a plain ``nn.Embedding``.
    """
    import torch

    try:
        full = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if type(full) is not torch.nn.Embedding or not full.weight.requires_grad:
        return None
    rows = sorted({int(i) for w in windows for i in w} - {full.padding_idx})
    rows = [i for i in rows if 0 <= i < full.num_embeddings]
    swapped = _used_rows_class()(full, rows)
    full.weight.requires_grad_(False)
    model.set_input_embeddings(swapped)

    def restore() -> None:
        with torch.no_grad():
            full.weight[swapped.rows] = swapped.weight.detach().to(full.weight.dtype)
        full.weight.requires_grad_(True)
        model.set_input_embeddings(full)

    return restore


def set_attention_dropout(model, p: float | None) -> Callable[[], None] | None:
    """Set the dropout on the attention probabilities of every self-attention module to ``p`` for a fit; return
    what restores the model's own rates (None: nothing changed, ``p`` is None or the model has no such module).

    At 0 the attention runs as one fused kernel (torch's scaled_dot_product_attention takes that path only without
    dropout) and no random mask of batch x heads x length x length is drawn in each layer, so a training step is
    cheaper (docs/benchmarks-appendix.md, "Cheaper rounds").
    The modules are found by their role, not their architecture: a ``*SelfAttention`` module's ``dropout``.
    """
    if p is None:
        return None
    return _set_rates(_attention_dropouts(model), p)


def set_hidden_dropout(model, p: float | None) -> Callable[[], None] | None:
    """Set every dropout but the attention probabilities' (embeddings, each layer's outputs, the head's input) to
    ``p`` for a fit; return what restores the model's own rates (None: nothing changed).

    Without those masks a multilingual-e5-small span fit takes 12-18% less time on a 2-core CPU, and loses 1.8 points
    of entity F1 at 200 questions (docs/benchmarks-appendix.md, "Hidden dropout and layer-wise rates"): not a default.
    """
    import torch

    if p is None:
        return None
    attention = {id(d) for d in _attention_dropouts(model)}
    return _set_rates([m for m in model.modules() if isinstance(m, torch.nn.Dropout) and id(m) not in attention], p)


def _attention_dropouts(model) -> list:
    import torch

    return [m.dropout for m in model.modules()
            if type(m).__name__.endswith("SelfAttention") and isinstance(getattr(m, "dropout", None), torch.nn.Dropout)]


def _set_rates(drops: list, p: float) -> Callable[[], None] | None:
    """Set these dropout modules to ``p``; return what gives each its old rate back (None: there were none)."""
    if not drops:
        return None
    changed = [(d, d.p) for d in drops]
    for d in drops:
        d.p = p

    def restore() -> None:
        for d, old in changed:
            d.p = old

    return restore


def shuffled_batches(n: int, batch_size: int, lengths: Sequence[int], rng: random.Random) -> list[list[int]]:
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


def class_weights(counts: np.ndarray) -> np.ndarray:
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
    min_steps: int = 0,
    min_tokens: int = 0,
    head_lr: float | None = None,
    early_stopping: bool = True,
    attention_dropout: float | None = None,
    hidden_dropout: float | None = None,
    layer_decay: float = 1.0,
    epoch_feats: Callable[[int], tuple[list, list[float]]] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """The shared fine-tuning loop; keeps the weights of the best validation epoch.

    ``head_lr``: the freshly drawn task head (``classifier.*``) learns at this rate, the pretrained encoder
    at ``lr``. ``early_stopping=False`` runs the whole schedule and keeps its last weights; the validation
    loss is still recorded.

    ``min_steps``: a small set runs more epochs, so that it gets at least this many optimizer steps (4 epochs of
    100 documents are 28 steps, too few to move the encoder). ``min_tokens``: and at least this many training
    tokens (specials included), so that a set of short documents, whose steps hold fewer tokens, is not trained
    less than a set of long ones. Early stopping and the choice of the best validation epoch start once that
    minimum schedule has run: a dev split of 15 documents is too noisy to cut it short.

    ``attention_dropout``: the dropout on attention probabilities during this fit (None: the model's own rate);
    ``hidden_dropout``: every other dropout of the model (None: its own rates). ``layer_decay`` < 1: layer-wise
    learning rates, the top encoder layer at ``lr`` and each one below at ``layer_decay`` times the one above.
    ``epoch_feats``: epoch → that epoch's (feats, weights), e.g. the documents with their mentions swapped
    (``augment.MentionSwap``); the schedule and the embedding rows that train still come from ``feats``.
    """
    import torch
    from tqdm.auto import tqdm

    if not feats:
        raise ValueError("no training examples (every text was empty)")
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], not {layer_decay}")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = wrapper.model
    device = wrapper.device
    scaler = grad_scaler(device)
    if lora:
        from peft import LoraConfig, get_peft_model

        task = "TOKEN_CLS" if wrapper.task == "spans" else "SEQ_CLS"
        model = get_peft_model(model, LoraConfig(task_type=task, r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.1, target_modules=["query", "value"]))
    trainable = freeze_lower_layers(model, freeze_layers)
    restore_rows = train_used_rows(model, [f[0] for f in feats] + [f[0] for f in val_feats or []])
    restore_dropout = set_attention_dropout(model, attention_dropout)
    restore_hidden = set_hidden_dropout(model, hidden_dropout)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = []
    for rate, named in parameter_rates(model, lr, head_lr, layer_decay).items():
        groups += [{"params": [p for _, p in named if p.ndim > 1], "weight_decay": weight_decay, "lr": rate},
                   {"params": [p for _, p in named if p.ndim <= 1], "weight_decay": 0.0, "lr": rate}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)
    lengths = [len(f[0]) for f in feats]
    n_examples = len(feats)  # epoch_feats may draw a few windows more or fewer
    steps_per_epoch = math.ceil(len(feats) / batch_size)
    floor_epochs = max(math.ceil(min_steps / steps_per_epoch), math.ceil(min_tokens / max(1, sum(lengths))))
    min_steps = max(min_steps, floor_epochs * steps_per_epoch if min_tokens else 0)
    epochs = max(epochs, floor_epochs)
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    warmup = max(1, int(total * warmup_ratio))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / max(1, total - warmup)) if s >= warmup else (s + 1) / warmup
    )
    pad = wrapper.tokenizer.pad_token_id or 0
    # a loss marked ``wants_hidden`` (distillation's layer term) also gets the hidden states and the batch inputs
    wants_hidden = bool(getattr(loss_fn, "wants_hidden", False))
    history: list[dict] = []
    best_val, best_state, bad_epochs, step = math.inf, None, 0, 0
    started = time.perf_counter()
    bar = tqdm(total=total, desc=f"fine-tune {wrapper.kind}", unit="step", disable=not progress, leave=False)
    try:
        for epoch in range(epochs):
            model.train()
            losses = []
            if epoch_feats is not None:
                feats, weights = epoch_feats(epoch)
                lengths = [len(f[0]) for f in feats]
            for batch in shuffled_batches(len(feats), batch_size, lengths, rng):
                if step >= total:
                    break
                ids, mask = pad_batch([feats[i][0] for i in batch], pad)
                ids, mask = ids.to(device), mask.to(device)
                with autocast(device):
                    result = model(input_ids=ids, attention_mask=mask, output_hidden_states=wants_hidden)
                w = torch.tensor([weights[i] for i in batch], dtype=torch.float32, device=device)
                extra = {"hidden": getattr(result, "hidden_states", None), "ids": ids, "mask": mask} if wants_hidden else {}
                loss = loss_fn(result.logits.float(), [feats[i][1] for i in batch], w, **extra)  # the loss in fp32 on any device
                scaler.scale(loss).backward()
                scaler.unscale_(opt)  # clip the true gradients (a no-op without fp16)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                scaler.step(opt)
                scaler.update()
                sched.step()
                opt.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None}
            # the minimum schedule runs whole: no epoch that ends before min_steps is kept or counted
            if val_feats:
                record["val_loss"] = evaluate_loss(wrapper, model, val_feats, loss_fn, batch_size)
            if val_feats and early_stopping and step >= min_steps:
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
    finally:  # an interrupted fit still leaves the model with its own embedding and dropout
        if restore_rows is not None:
            restore_rows()
        if restore_dropout is not None:
            restore_dropout()
        if restore_hidden is not None:
            restore_hidden()
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
        "examples": n_examples,
        "device": str(device),
        "precision": precision_name(device),
    }


def layer_depth(name: str, n_layers: int) -> int:
    """How high a parameter sits in the encoder: 0 the embeddings, i + 1 layer i, n_layers + 1 anything above."""
    m = re.search(r"(?:^|\.)layers?\.(\d+)\.", name)
    if m:
        return int(m.group(1)) + 1
    if name.startswith("embeddings.") or ".embeddings." in name:
        return 0
    return n_layers + 1


def parameter_rates(model, lr: float, head_lr: float | None, layer_decay: float = 1.0) -> dict[float, list]:
    """The trainable (name, parameter) pairs grouped by learning rate: the head at ``head_lr`` (or ``lr``), the
    encoder at ``lr`` times ``layer_decay`` per layer below the top."""
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    out: dict[float, list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if is_head_param(name):
            rate = head_lr or lr
        else:
            rate = lr * layer_decay ** max(0, n_layers - layer_depth(name, n_layers))
        out.setdefault(rate, []).append((name, param))
    return out


def is_head_param(name: str) -> bool:
    """Whether a parameter belongs to the task head drawn at load time (not the pretrained encoder)."""
    return name.startswith("classifier.") or ".classifier." in name


def evaluate_loss(wrapper, model, feats, loss_fn, batch_size: int) -> float:
    """Mean loss over features, no gradients."""
    import torch

    model.eval()
    device = wrapper.device
    pad = wrapper.tokenizer.pad_token_id or 0
    losses, sizes = [], []
    with torch.inference_mode():
        for batch in length_batches([len(f[0]) for f in feats], batch_size, None):
            ids, mask = pad_batch([feats[i][0] for i in batch], pad)
            with autocast(device):
                out = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            losses.append(float(loss_fn(out.float(), [feats[i][1] for i in batch], torch.ones(len(batch), device=device))))
            sizes.append(len(batch))
    model.train()
    return float(np.average(losses, weights=sizes))


def split_val(examples: Examples, val: Examples | None, val_fraction: float, seed: int):
    """(train, val): a seeded ``val_fraction`` of the examples when no validation set is given (10+ examples)."""
    if val is not None or val_fraction <= 0 or len(examples.texts) < 10:
        return examples, val
    rng = random.Random(seed)
    idx = list(range(len(examples.texts)))
    rng.shuffle(idx)
    k = max(1, int(len(idx) * val_fraction))
    v, t = idx[:k], idx[k:]
    w, m = examples.weights, examples.masks
    pick = lambda ids: Examples([examples.texts[i] for i in ids], [examples.targets[i] for i in ids], None if w is None else [w[i] for i in ids],  # noqa: E731
                                None if m is None else [m[i] for i in ids])
    return pick(t), pick(v)


def fit_token_classifier(wrapper, examples: Examples, val: Examples | None = None, *, val_fraction: float = 0.1, class_weighting: bool = False,
                         o_weight: float = 1.0, mention_swap: float = 0.0, **options) -> dict:
    """Fine-tune a TokenClassifier on character spans (BIO on every sub-word; -100 on specials).

    Class weighting is off by default for tokens: measured on NCBI disease (200 abstracts, 2 epochs) it
    tripled false positives (entity F1 0.24 vs 0.30 without); turn it on for very rare labels.
    ``o_weight``: the loss weight of the outside tag relative to the entity tags (without class weighting).
    ``mention_swap`` > 0: each epoch every gold mention is swapped with this probability for another mention of its
    label from the training documents (``augment.MentionSwap``).
    """
    import torch

    train, val = split_val(examples, val, val_fraction, options.get("seed", 0))

    def featurize(ex: Examples) -> tuple[list, list[float]]:
        feats, weights = [], []
        for j, text in enumerate(ex.texts):
            f = wrapper.features([text], [ex.targets[j]], None if ex.masks is None else [ex.masks[j]])
            feats += f
            weights += [1.0 if ex.weights is None else ex.weights[j]] * len(f)
        return feats, weights

    feats, weights = featurize(train)
    swap = MentionSwap(train, mention_swap, options.get("seed", 0)) if mention_swap > 0 else None
    if swap is not None and swap.active:
        options["epoch_feats"] = lambda epoch: featurize(swap.draw(epoch))
    n_tags = len(wrapper.tags)
    counts = np.zeros(n_tags)
    for _, labels in feats:
        for y in labels:
            if y >= 0:
                counts[y] += 1
    cw = torch.tensor(class_weights(counts) if class_weighting else np.r_[o_weight, np.ones(n_tags - 1)], dtype=torch.float32)

    def loss_fn(logits, labels, w):
        y = pad_batch(labels, -100)[0].to(logits.device)
        per_tok = torch.nn.functional.cross_entropy(logits.reshape(-1, n_tags), y.reshape(-1), weight=cw.to(logits.device), ignore_index=-100,
                                                    reduction="none").reshape(y.shape)
        valid = (y != -100).float()
        per_seq = (per_tok * valid).sum(1) / valid.sum(1).clamp(min=1)
        return (per_seq * w).sum() / w.sum()

    val_feats = wrapper.features(val.texts, val.targets) if val is not None else None
    result = train_loop(wrapper, feats, weights, loss_fn, val_feats, **options)
    result["class_weights"] = dict(zip(wrapper.tags, map(float, cw)))
    result["mention_swap"] = mention_swap if swap is not None and swap.active else 0.0
    return result


def linear_probe(wrapper, feats: list[tuple[list[int], Any]], weights: Sequence[float], balanced: bool, C: float = 0.1) -> dict | None:
    """Set a mean-pooling classification head to a logistic regression fitted on the frozen encoder's vectors.

    Fine-tuning then starts from a head that already fits the data (linear probing, then fine-tuning), instead
    of a random one whose large early gradients disturb the pretrained encoder; with 100 labels that is what
    fine-tuning needs (see README, "Training recipe"). Heads that do not pool by mean are left as they are
    (returns None). Single-label: one multinomial LR; multi-label: one binary LR per label.
    """
    import torch
    from sklearn.linear_model import LogisticRegression

    model = wrapper.model
    if getattr(model, "goldloop_pooling", None) != "mean" or not feats:
        return None
    pad = wrapper.tokenizer.pad_token_id or 0
    was_training = model.training
    model.eval()
    rows = []
    device = wrapper.device
    with torch.inference_mode(), autocast(device):
        for a in range(0, len(feats), 32):
            ids, mask = pad_batch([f[0] for f in feats[a : a + 32]], pad)
            rows.append(pooled_output(model, ids.to(device), mask.to(device)).float().cpu().numpy())
    model.train(was_training)
    X, w = np.concatenate(rows), np.asarray(weights, dtype=float)
    k = len(wrapper.labels)
    W, b = np.zeros((k, X.shape[1])), np.zeros(k)
    if wrapper.multi:
        Y = np.asarray([f[1] for f in feats], dtype=float)
        for j in range(k):
            if 0 < Y[:, j].sum() < len(Y):
                lr = LogisticRegression(C=C, max_iter=1000, class_weight="balanced" if balanced else None).fit(X, Y[:, j], sample_weight=w)
                W[j], b[j] = lr.coef_[0], lr.intercept_[0]
            else:  # a label always (never) present: its logit says so, the encoder's vector cannot
                b[j] = 4.0 if Y[:, j].sum() else -4.0
        acc = float(((X @ W.T + b > 0) == (Y > 0.5)).mean())
    else:
        y = np.asarray([f[1] for f in feats])
        lr = LogisticRegression(C=C, max_iter=1000, class_weight="balanced" if balanced else None).fit(X, y, sample_weight=w)
        if len(lr.classes_) == 2:  # sklearn's binary form: one logit; split it so that softmax gives the same odds
            W[lr.classes_[1]], W[lr.classes_[0]] = lr.coef_[0] / 2, -lr.coef_[0] / 2
            b[lr.classes_[1]], b[lr.classes_[0]] = lr.intercept_[0] / 2, -lr.intercept_[0] / 2
        else:
            W[lr.classes_], b[lr.classes_] = lr.coef_, lr.intercept_
        absent = np.setdiff1d(np.arange(k), lr.classes_)
        b[absent] = b[lr.classes_].min() - 8.0  # a label with no example starts improbable
        acc = float(((X @ W.T + b).argmax(1) == y).mean())
    head = model.classifier
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(W, dtype=head.weight.dtype, device=head.weight.device))
        head.bias.copy_(torch.as_tensor(b, dtype=head.bias.dtype, device=head.bias.device))
    return {"C": C, "train_accuracy": round(acc, 4), "examples": len(feats)}


def fit_sequence_classifier(wrapper, examples: Examples, val: Examples | None = None, *, val_fraction: float = 0.1, class_weighting: bool = True,
                            init_linear_probe: bool = True, **options) -> dict:
    """Fine-tune a SequenceClassifier on document labels (single- or multi-label).

    ``init_linear_probe``: start from ``linear_probe``'s head (mean-pooling models only).
    """
    import torch

    train, val = split_val(examples, val, val_fraction, options.get("seed", 0))
    feats = wrapper.features(train.texts, train.targets)
    weights = [1.0] * len(feats) if train.weights is None else list(train.weights)
    k = len(wrapper.labels)
    if wrapper.multi:
        counts = np.sum([f[1] for f in feats], axis=0)
        pos_weight = torch.tensor(np.clip((len(feats) - counts) / np.maximum(counts, 1), 1, 20) if class_weighting else np.ones(k), dtype=torch.float32)

        def loss_fn(logits, labels, w):
            y = torch.tensor(labels, dtype=torch.float32, device=logits.device)
            per = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight.to(logits.device), reduction="none").mean(1)
            return (per * w).sum() / w.sum()
    else:
        counts = np.bincount([f[1] for f in feats], minlength=k).astype(float)
        if (counts > 0).sum() < 2:
            raise ValueError(f"need at least two classes to train, got only {[wrapper.labels[i] for i in np.nonzero(counts)[0]]}")
        cw = torch.tensor(class_weights(counts) if class_weighting else np.ones(k), dtype=torch.float32)

        def loss_fn(logits, labels, w):
            per = torch.nn.functional.cross_entropy(logits, torch.tensor(labels, device=logits.device), weight=cw.to(logits.device), reduction="none")
            return (per * w).sum() / w.sum()

    val_feats = wrapper.features(val.texts, val.targets) if val is not None else None
    probe = linear_probe(wrapper, feats, weights, class_weighting) if init_linear_probe else None
    result = train_loop(wrapper, feats, weights, loss_fn, val_feats, **options)
    result["linear_probe"] = probe
    return result
