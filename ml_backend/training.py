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

from .alignment import SERVE_OVERLAP
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
    min_steps: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """The shared fine-tuning loop; keeps the weights of the best validation epoch.

    ``min_steps``: a small set runs more epochs, so that it gets at least this many optimizer steps (4 epochs of
    100 documents are 28 steps, too few to move the encoder). Early stopping and the choice of the best
    validation epoch start once they have run: a dev split of 15 documents is too noisy to cut them short.
    """
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
    epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
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
        # the minimum schedule runs whole: no epoch that ends before min_steps is kept or counted
        if val_feats:
            record["val_loss"] = evaluate_loss(wrapper, model, val_feats, loss_fn, batch_size)
        if val_feats and step >= min_steps:
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


def fit_token_classifier(wrapper, examples: Examples, val: Examples | None = None, *, val_fraction: float = 0.1, class_weighting: bool = False, **options) -> dict:
    """Fine-tune a TokenClassifier on character spans (BIO on every sub-word; -100 on specials).

    Class weighting is off by default for tokens: measured on NCBI disease (200 abstracts, 2 epochs) it
    tripled false positives (entity F1 0.24 vs 0.30 without); turn it on for very rare labels.
    """
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


def linear_probe(wrapper, feats: list[tuple[list[int], Any]], weights: Sequence[float], balanced: bool, C: float = 0.1) -> dict | None:
    """Set a mean-pooling classification head to a logistic regression fitted on the frozen encoder's vectors.

    Fine-tuning then starts from a head that already fits the data (linear probing, then fine-tuning), instead
    of a random one whose large early gradients disturb the pretrained encoder; with 100 labels that is what
    fine-tuning needs (see README, "Training recipe"). Heads that do not pool by mean are left as they are
    (returns None). Single-label: one multinomial LR; multi-label: one binary LR per label.
    """
    import torch
    from sklearn.linear_model import LogisticRegression

    from .models.hf import pooled_output

    model = wrapper.model
    if getattr(model, "goldloop_pooling", None) != "mean" or not feats:
        return None
    pad = wrapper.tokenizer.pad_token_id or 0
    was_training = model.training
    model.eval()
    rows = []
    with torch.inference_mode():
        for a in range(0, len(feats), 32):
            seqs = [f[0] for f in feats[a : a + 32]]
            ids = _pad(seqs, pad)
            mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor([len(q) for q in seqs])[:, None]).long()
            rows.append(pooled_output(model, ids, mask).float().numpy())
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
        head.weight.copy_(torch.as_tensor(W, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(b, dtype=head.bias.dtype))
    return {"C": C, "train_accuracy": round(acc, 4), "examples": len(feats)}


def fit_sequence_classifier(wrapper, examples: Examples, val: Examples | None = None, *, val_fraction: float = 0.1, class_weighting: bool = True,
                            init_linear_probe: bool = True, **options) -> dict:
    """Fine-tune a SequenceClassifier on document labels (single- or multi-label).

    ``init_linear_probe``: start from ``linear_probe``'s head (mean-pooling models only).
    """
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
    probe = linear_probe(wrapper, feats, weights, class_weighting) if init_linear_probe else None
    result = train_loop(wrapper, feats, weights, loss_fn, val_feats, **options)
    result["linear_probe"] = probe
    return result


# --- one training round over a labeled dataset (used by the active-learning loop) ------------------------
from dataclasses import dataclass, field  # noqa: E402


@dataclass
class TrainOptions:
    """Knobs of one training round; defaults suit a 2-core CPU."""

    cold_start_labels: int = 50  # below this many labeled docs a control trains its cheap model instead
    epochs: int = 4
    min_steps: int = 100  # small sets run more epochs (see train_loop)
    lr: float = 8e-5  # token classifiers
    doc_lr: float = 3e-5  # document classifiers: they start from a linear probe, which a high rate washes out
    pooling: str = "mean"  # document classifiers: "mean" of the token vectors, or "model" (the architecture's [CLS] head)
    linear_probe: bool = True  # document classifiers: start the head from a logistic regression on frozen vectors
    batch_size: int = 16
    train_length: int = 128  # training window (tokens); serving uses the same window (HFModel.default_serve_length)
    stride: int = SERVE_OVERLAP  # serving-window overlap saved with the model
    patience: int = 1
    freeze_layers: int = 0
    lora: bool = False
    self_training: bool = False
    pseudo_threshold: float = 0.9
    pseudo_weight: float = 0.3
    doc_pseudo_weight: float = 1.0  # document classifiers' fresh student: 1.0 gained more than 0.3 (README, "Training recipe")
    max_pool: int = 2000  # unlabeled docs the teacher labels for self-training
    mlm_steps: int = 0  # > 0: domain-adaptive MLM on the unlabeled pool before fine-tuning
    work_dir: str = ""  # where an adapted encoder is written (the loop sets it inside the data dir)
    seed: int = 0
    progress: bool = True
    tolerance: float = 0.005  # the gate: promote unless the primary metric drops by more than this
    model_name: str = ""
    extra: dict = field(default_factory=dict)

    def fit_kwargs(self, kind: str = "spans") -> dict:
        """Keyword arguments of a model's ``fit`` for a control of this kind ("spans" or "choices")."""
        kw = {"epochs": self.epochs, "min_steps": self.min_steps, "lr": self.lr if kind == "spans" else self.doc_lr,
              "batch_size": self.batch_size, "patience": self.patience, "freeze_layers": self.freeze_layers,
              "lora": self.lora, "seed": self.seed, "progress": self.progress}
        if kind != "spans":
            kw["init_linear_probe"] = self.linear_probe
        return kw


def examples_for(control, records: list[dict]) -> Examples:
    """Examples of one control from gold-export records (data.jsonl lines: text, spans, choices)."""
    texts, targets = [], []
    for r in records:
        text = r.get("text") or (r.get("data") or {}).get(control.value_field)
        if not isinstance(text, str) or not text.strip():
            continue
        if control.kind == "spans":
            spans = [(s["start"], s["end"], s["label"]) for s in r.get("spans", []) if s.get("from_name", control.name) == control.name and s["label"] in control.labels]
            texts.append(text)
            targets.append(spans)
        else:
            labels = [c for c in (r.get("choices") or {}).get(control.name, []) if c in control.labels]
            if labels:
                texts.append(text)
                targets.append(labels)
    return Examples(texts, targets)


def has_labels(control, records: list[dict]) -> bool:
    """Whether annotators labeled this control at all in records (any span of it, or any choice).

    A config can hold controls nobody labels yet (financial news: sentiment first, entities later). An
    empty span list then means "not done", not "no entities": such a control is neither trained nor scored.
    """
    if control.kind == "spans":
        return any(s.get("from_name", control.name) == control.name and s.get("label") in control.labels
                   for r in records for s in r.get("spans", []))
    return any(c in control.labels for r in records for c in (r.get("choices") or {}).get(control.name, []))


def _pseudo_examples(control, teacher, pool: list[str], opts: TrainOptions) -> Examples:
    """Confident teacher predictions on unlabeled texts, as weighted training examples.

    The weight is ``pseudo_weight`` (0.3 by default), or ``doc_pseudo_weight`` when a fine-tuned document
    classifier teaches a fresh student.
    """
    pool = pool[: opts.max_pool]
    if not pool:
        return Examples([], [])
    texts, targets = [], []
    for text, pred in zip(pool, teacher.predict(pool)):
        if pred.confidence < opts.pseudo_threshold:
            continue
        if control.kind == "spans":
            targets.append([(s.start, s.end, s.label) for s in pred.spans])
        else:
            best = [lbl for lbl, p in (pred.probs or {}).items() if p >= 0.5] if control.multi else [max(pred.probs, key=pred.probs.get)]
            if not best:
                continue
            targets.append(best)
        texts.append(text)
    weight = opts.doc_pseudo_weight if getattr(teacher, "kind", "") == "sequence_classifier" else opts.pseudo_weight
    return Examples(texts, targets, [weight] * len(texts))


def _merge(a: Examples, b: Examples) -> Examples:
    wa = a.weights or [1.0] * len(a.texts)
    wb = b.weights or [1.0] * len(b.texts)
    return Examples(a.texts + b.texts, a.targets + b.targets, wa + wb)


MLM_REUSE_COVERAGE = 0.9  # reuse an adapted encoder while it was trained on this share of the pool's texts


def adapted_encoder(opts: TrainOptions, pool: Sequence[str]) -> tuple[str, dict]:
    """The encoder after domain-adaptive MLM on the pool: an earlier one from ``opts.work_dir`` when it was
    adapted from the same model, for as many steps, on texts covering at least ``MLM_REUSE_COVERAGE`` of
    this pool (the pool shrinks as documents get labeled, so rounds reuse it); else a new one.

    Returns (path, record): the record is ``domain_adapt``'s, or ``{"reused": path, "coverage": c}``.
    """
    import hashlib
    import json
    from pathlib import Path

    digests = sorted({hashlib.sha256(t.encode("utf-8")).hexdigest()[:16] for t in pool})
    work = Path(opts.work_dir)
    best, best_cov = None, 0.0
    for meta_path in sorted(work.glob(f"mlm-*-{opts.mlm_steps}/adapted_on.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable: adapt again rather than trust it
        if meta.get("base_model") != opts.model_name or meta.get("steps") != opts.mlm_steps:
            continue
        seen = set(meta.get("texts", ()))
        cov = sum(d in seen for d in digests) / len(digests)
        if cov > best_cov and (meta_path.parent / "config.json").exists():
            best, best_cov = meta_path.parent, cov
    if best is not None and best_cov >= MLM_REUSE_COVERAGE:
        return str(best), {"reused": str(best), "coverage": round(best_cov, 4)}
    key = hashlib.sha256("\n".join(digests).encode("utf-8")).hexdigest()[:12]
    adapted = work / f"mlm-{key}-{opts.mlm_steps}"
    record = domain_adapt(opts.model_name, list(pool), adapted, steps=opts.mlm_steps, seed=opts.seed, progress=opts.progress)
    meta = {"base_model": opts.model_name, "steps": opts.mlm_steps, "texts": digests}
    tmp = adapted / "adapted_on.json.tmp"
    tmp.write_text(json.dumps(meta), encoding="utf-8")
    tmp.replace(adapted / "adapted_on.json")  # written last: a killed run leaves no reusable record
    return str(adapted), record


def train_control(control, train: Examples, dev: Examples, opts: TrainOptions, pool: list[str] = (), teacher=None):
    """Train the right model kind for one control; returns (model, info)."""
    from .models import PrototypeClassifier, SequenceClassifier, SpanMatcher, TfidfClassifier, TokenClassifier

    n = len(train.texts)
    info: dict = {"control": control.name, "train_docs": n, "dev_docs": len(dev.texts)}
    if opts.mlm_steps > 0 and pool and n >= opts.cold_start_labels and opts.work_dir:
        adapted, info["domain_adaptation"] = adapted_encoder(opts, pool)
        opts = TrainOptions(**{**opts.__dict__, "model_name": adapted, "mlm_steps": 0})
    if n >= opts.cold_start_labels:
        import torch

        # a new classification head is drawn when its model loads, before ``fit`` seeds its run: seed here, or
        # one seed gives another model after other work in the process (entity-F1 0.339 vs 0.311 on one seed)
        torch.manual_seed(opts.seed)
    if control.kind == "spans":
        if n < opts.cold_start_labels:
            model = SpanMatcher(control.labels)
            info["fit"] = model.fit(train)
        else:
            model = TokenClassifier(control.labels, model_name=opts.model_name, train_length=opts.train_length, stride=opts.stride)
            info["fit"] = model.fit(train, val=dev if dev.texts else None, **opts.fit_kwargs())
    else:
        classes = {lbl for t in train.targets for lbl in t}
        if n >= opts.cold_start_labels and len(classes) >= 2:
            model = SequenceClassifier(control.labels, control.multi, model_name=opts.model_name, train_length=opts.train_length, stride=opts.stride,
                                       pooling=opts.pooling)
            info["fit"] = model.fit(train, val=dev if dev.texts else None, **opts.fit_kwargs("choices"))
        elif len(classes) >= 2 and n >= 4:
            model = TfidfClassifier(control.labels, control.multi)
            info["fit"] = model.fit(train)
        else:
            model = PrototypeClassifier(control.labels, control.multi, model_name=opts.model_name)
            info["fit"] = model.fit(train)
    info["kind"] = model.kind
    if opts.self_training and pool:
        pseudo = _pseudo_examples(control, teacher or model, list(pool), opts)
        info["pseudo_labels"] = len(pseudo.texts)
        if pseudo.texts:
            combined = _merge(train, pseudo)
            if model.kind == "sequence_classifier":
                # a fresh student from the base encoder, not the teacher trained on: continuing the teacher on its
                # own predictions changed macro-F1 by -0.7/-0.3 points, a fresh student gained (README, "Training recipe")
                model = SequenceClassifier(control.labels, control.multi, model_name=opts.model_name, train_length=opts.train_length,
                                           stride=opts.stride, pooling=opts.pooling)
                info["self_training_fit"] = model.fit(combined, val=dev if dev.texts else None, **opts.fit_kwargs(control.kind))
            elif model.kind == "token_classifier":
                kw = dict(opts.fit_kwargs(control.kind), epochs=max(1, opts.epochs // 2), min_steps=0)
                info["self_training_fit"] = model.fit(combined, val=dev if dev.texts else None, **kw)
            elif model.kind == "tfidf_lr":
                info["self_training_fit"] = model.fit(combined)
            # matcher / prototypes learn only from human labels: pseudo-labels would only echo them
    return model, info


def evaluate_models(spec, models: dict, records: list[dict], controls: set[str] | None = None) -> dict:
    """Per-control metrics on records (the fixed test split) and the primary metric (mean over controls).

    `controls` limits the evaluation to those control names (the ones annotators label, see has_labels).
    """
    from .evaluation import evaluate_choices, evaluate_spans, primary_metric

    out: dict = {"controls": {}, "n_docs": len(records)}
    scores = []
    for control in spec.controls:
        if controls is not None and control.name not in controls:
            continue
        ex = examples_for(control, records)
        if not ex.texts:
            continue
        preds = models[control.name].predict(ex.texts)
        if control.kind == "spans":
            m = evaluate_spans(ex.targets, [[s.key() for s in p.spans] for p in preds], ex.texts)
        else:
            import numpy as np

            probs = np.array([[p.probs[lbl] for lbl in control.labels] for p in preds])
            if control.multi:
                # micro view of multi-label: one (doc, label) decision per pair
                y_true = [lbl if lbl in t else "-" for t in ex.targets for lbl in control.labels]
                y_pred = [lbl if p.probs[lbl] >= 0.5 else "-" for p in preds for lbl in control.labels]
                m = evaluate_choices(y_true, y_pred, list(control.labels) + ["-"])
            else:
                m = evaluate_choices([t[0] for t in ex.targets], [control.labels[i] for i in probs.argmax(1)], list(control.labels), probs)
        out["controls"][control.name] = m
        scores.append(primary_metric(m))
    out["primary"] = float(sum(scores) / len(scores)) if scores else None
    return out


def gate(new: dict, old: dict | None, tolerance: float) -> tuple[bool, str]:
    """Promote unless the candidate's primary metric is worse than the serving one by more than tolerance."""
    if new.get("primary") is None:
        return False, "no test documents with labels: cannot evaluate, not promoted"
    if not old or old.get("primary") is None:
        return True, f"first evaluated version (primary {new['primary']:.4f})"
    delta = new["primary"] - old["primary"]
    if delta >= -tolerance:
        return True, f"primary {new['primary']:.4f} vs serving {old['primary']:.4f} (Δ {delta:+.4f}, tolerance {tolerance})"
    return False, f"worse than serving: primary {new['primary']:.4f} vs {old['primary']:.4f} (Δ {delta:+.4f} < -{tolerance})"


def domain_adapt(model_name: str, texts: Sequence[str], out_dir, *, steps: int = 200, batch_size: int = 16, max_length: int = 128,
                 lr: float = 5e-5, mask_prob: float = 0.15, seed: int = 0, progress: bool = True,
                 head_warmup: int | None = None, head_lr: float = 1e-3) -> dict:
    """Domain-adaptive masked-language-model training of the encoder on unlabeled texts; saves it to out_dir.

    Fine-tuning then starts from `out_dir` instead of the generic encoder. A model without pretrained MLM
    head weights (a sentence encoder such as all-MiniLM-L6-v2) gets a new head. Its random weights would
    send noise into the encoder, so the new head first trains alone, encoder frozen, for ``head_warmup``
    steps (default: ``steps`` when the head is new, else 0) at ``head_lr``; then ``steps`` steps train
    everything at ``lr``.
    """
    import torch
    from tqdm.auto import tqdm

    from .models.hf import _LOAD_LOCK, _transformers

    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError("domain adaptation needs unlabeled texts; the pool is empty")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    with _LOAD_LOCK:
        transformers = _transformers()
        tok = transformers.AutoTokenizer.from_pretrained(model_name)
        model, loading = transformers.AutoModelForMaskedLM.from_pretrained(model_name, output_loading_info=True)
        collator = transformers.DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=mask_prob)
    enc = tok(list(texts), truncation=True, max_length=max_length, return_overflowing_tokens=True, stride=0)
    seqs = [{"input_ids": ids} for ids in enc["input_ids"] if len(ids) > 4]
    new_head = [p for n, p in model.named_parameters() if n in set(loading.get("missing_keys", ()))]
    if head_warmup is None:
        head_warmup = steps if new_head else 0
    if head_warmup and not new_head:
        head_warmup = 0  # a pretrained head needs no warm-up
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    started = time.perf_counter()

    def run(params, n_steps, rate, desc):
        opt = torch.optim.AdamW(params, lr=rate, weight_decay=0.01)
        out = []
        for _ in tqdm(range(n_steps), desc=desc, disable=not progress, leave=False):
            batch = collator([seqs[rng.randrange(len(seqs))] for _ in range(batch_size)])
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            out.append(float(loss.detach()))
        return out

    warm: list[float] = []
    if head_warmup:
        head_ids = {id(p) for p in new_head}
        for p in trainable:  # the encoder is frozen: no backward pass through it
            p.requires_grad_(id(p) in head_ids)
        warm = run(new_head, head_warmup, head_lr, "MLM head warm-up")
        for p in trainable:
            p.requires_grad_(True)
    losses = run(trainable, steps, lr, "domain-adaptive MLM")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    k = max(1, len(losses) // 10)
    info = {"steps": steps, "sequences": len(seqs), "loss_first": float(np.mean(losses[:k])) if losses else None,
            "loss_last": float(np.mean(losses[-k:])) if losses else None, "head_warmup": head_warmup, "seconds": round(time.perf_counter() - started, 2), "path": str(out_dir)}
    if warm:
        kw = max(1, len(warm) // 10)
        info["head_loss_first"], info["head_loss_last"] = float(np.mean(warm[:kw])), float(np.mean(warm[-kw:]))
    return info
