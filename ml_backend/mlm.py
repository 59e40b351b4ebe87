"""Domain-adaptive masked-language modelling: the encoder keeps training on the project's unlabeled texts
before fine-tuning starts from it, and an adapted encoder is reused across rounds while the pool it was
adapted on still covers the current one. It trains on ``device`` (``torch_utils.resolve_device``; on CUDA under
bf16/fp16 autocast) and saves CPU tensors, so the adapted encoder loads on any device.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .models.torch_utils import LOAD_LOCK, autocast, cpu_state_dict, grad_scaler, resolve_device, transformers_module

MLM_REUSE_COVERAGE = 0.9  # reuse an adapted encoder while it was trained on this share of the pool's texts


def adapted_encoder(pool: Sequence[str], *, model_name: str, steps: int, work_dir: str | Path, seed: int = 0,
                    progress: bool = True, device: str | None = None) -> tuple[str, dict]:
    """The encoder after ``steps`` of domain-adaptive MLM of ``model_name`` on the pool.

    An earlier one from ``work_dir`` serves when it was adapted from the same model, for as many steps, on
    texts covering at least ``MLM_REUSE_COVERAGE`` of this pool (the pool shrinks as documents get labeled,
    so rounds reuse it); else a new one is trained there.

    Returns (path, record): the record is ``domain_adapt``'s, or ``{"reused": path, "coverage": c}``.
    """
    digests = sorted({hashlib.sha256(t.encode("utf-8")).hexdigest()[:16] for t in pool})
    work = Path(work_dir)
    best, best_cov = None, 0.0
    for meta_path in sorted(work.glob(f"mlm-*-{steps}/adapted_on.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable: adapt again rather than trust it
        if meta.get("base_model") != model_name or meta.get("steps") != steps:
            continue
        seen = set(meta.get("texts", ()))
        cov = sum(d in seen for d in digests) / len(digests)
        if cov > best_cov and (meta_path.parent / "config.json").exists():
            best, best_cov = meta_path.parent, cov
    if best is not None and best_cov >= MLM_REUSE_COVERAGE:
        return str(best), {"reused": str(best), "coverage": round(best_cov, 4)}
    key = hashlib.sha256("\n".join(digests).encode("utf-8")).hexdigest()[:12]
    adapted = work / f"mlm-{key}-{steps}"
    record = domain_adapt(model_name, list(pool), adapted, steps=steps, seed=seed, progress=progress, device=device)
    meta = {"base_model": model_name, "steps": steps, "texts": digests}
    tmp = adapted / "adapted_on.json.tmp"
    tmp.write_text(json.dumps(meta), encoding="utf-8")
    tmp.replace(adapted / "adapted_on.json")  # written last: a killed run leaves no reusable record
    return str(adapted), record


def domain_adapt(model_name: str, texts: Sequence[str], out_dir, *, steps: int = 200, batch_size: int = 16, max_length: int = 128,
                 lr: float = 5e-5, mask_prob: float = 0.15, seed: int = 0, progress: bool = True,
                 head_warmup: int | None = None, head_lr: float = 1e-3, device: str | None = None) -> dict:
    """Domain-adaptive masked-language-model training of the encoder on unlabeled texts; saves it to out_dir.

    Fine-tuning then starts from `out_dir` instead of the generic encoder. A model without pretrained MLM
    head weights (a sentence encoder such as all-MiniLM-L6-v2) gets a new head. Its random weights would
    send noise into the encoder, so the new head first trains alone, encoder frozen, for ``head_warmup``
    steps (default: ``steps`` when the head is new, else 0) at ``head_lr``; then ``steps`` steps train
    everything at ``lr``. ``device``: where it trains (``None``: the process's device).
    """
    import torch
    from tqdm.auto import tqdm

    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError("domain adaptation needs unlabeled texts; the pool is empty")
    dev = resolve_device(device)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    with LOAD_LOCK:
        transformers = transformers_module()
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
    model.to(dev)
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    started = time.perf_counter()

    def run(params, n_steps, rate, desc):
        opt = torch.optim.AdamW(params, lr=rate, weight_decay=0.01)
        scaler = grad_scaler(dev)
        out = []
        for _ in tqdm(range(n_steps), desc=desc, disable=not progress, leave=False):
            batch = collator([seqs[rng.randrange(len(seqs))] for _ in range(batch_size)])
            with autocast(dev):
                loss = model(**{k: v.to(dev) for k, v in batch.items()}).loss
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(opt)
            scaler.update()
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
    model.save_pretrained(out_dir, state_dict=cpu_state_dict(model))  # CPU tensors: loads on any device
    tok.save_pretrained(out_dir)
    k = max(1, len(losses) // 10)
    info = {"steps": steps, "sequences": len(seqs), "loss_first": float(np.mean(losses[:k])) if losses else None,
            "loss_last": float(np.mean(losses[-k:])) if losses else None, "head_warmup": head_warmup, "seconds": round(time.perf_counter() - started, 2), "path": str(out_dir),
            "device": str(dev)}
    if warm:
        kw = max(1, len(warm) // 10)
        info["head_loss_first"], info["head_loss_last"] = float(np.mean(warm[:kw])), float(np.mean(warm[-kw:]))
    return info
