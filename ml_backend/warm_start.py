"""Where a round's fine-tuned model starts: the serving version's weights (continued fine-tuning) or the base encoder.

A round that starts from the serving version builds on what the project already has (its starter, or the previous
round, itself warm-started): measured on learning curves in docs/benchmarks.md ("Warm start"). The new model is
built as a fresh one would be (the project's labels, the encoder's id as its base), then takes the serving model's
weights: every encoder tensor, and the head's rows by tag name, so a label the serving model never knew (a schema
that grew a label, a starter that never saw Procedure) keeps its freshly drawn row and is learnt, not reset.

A serving model of another kind, another encoder or another shape (a distilled student with fewer layers) gives no
start: the round starts from the base encoder and says why.
"""
from __future__ import annotations

from pathlib import Path

WARM_STARTS = ("serving", "base")  # TrainOptions.warm_start / GOLDLOOP_WARM_START


def base_encoder(model) -> str:
    """The encoder id a fine-tuned model was built on (a loaded version's folder records it as base_model)."""
    name = str(getattr(model, "model_name", "") or "")
    path = Path(name)
    if name and (path / "goldloop_model.json").is_file():
        return str(model.read_meta(path).get("base_model") or name)
    return name


def source_for(model_kind: str, encoder: str, serving) -> tuple[object | None, str]:
    """The serving model a new ``model_kind`` model on ``encoder`` can start from, or None with the reason it cannot."""
    if serving is None:
        return None, "no trained model serves this control"
    if getattr(serving, "kind", "") != model_kind:
        return None, f"the serving model is a {getattr(serving, 'kind', 'model')}, not a {model_kind}"
    if base_encoder(serving) != encoder:
        return None, f"the serving model was built on {base_encoder(serving)}, this round uses {encoder}"
    return serving, ""


def layers_of(model) -> int:
    return int(getattr(model.model.config, "num_hidden_layers", 0) or 0)


def _head_rows(config) -> dict[str, int]:
    return {str(tag): int(i) for i, tag in config.id2label.items()}


def transfer(target, source) -> dict:
    """Copy ``source``'s weights into ``target`` (two HF task models on one encoder): every tensor of equal name and
    shape, the head's rows by tag name. Returns what was copied; raises ValueError when the encoders differ in
    shape (nothing is copied then)."""
    import torch

    from .models.finetune import is_head_param

    src, dst = source.model.state_dict(), target.model.state_dict()
    body = [k for k in dst if not is_head_param(k)]
    wrong = [k for k in body if k not in src or src[k].shape != dst[k].shape]
    if wrong:
        raise ValueError(f"the encoders differ ({len(wrong)} tensors, e.g. {wrong[0]})")
    rows_dst, rows_src = _head_rows(target.model.config), _head_rows(source.model.config)
    shared = [(i, rows_src[tag]) for tag, i in rows_dst.items() if tag in rows_src]
    new = {k: v.clone() for k, v in dst.items()}
    with torch.no_grad():
        for k in body:
            new[k] = src[k].detach().to(dst[k].device, dst[k].dtype).clone()
        for k in dst:
            if k in body or k not in src:
                continue
            if dst[k].dim() >= 1 and dst[k].shape[0] == len(rows_dst) and src[k].shape[0] == len(rows_src) \
                    and dst[k].shape[1:] == src[k].shape[1:]:
                for i, j in shared:  # a head row per tag: the serving model's where it knew the tag
                    new[k][i] = src[k][j].to(dst[k].device, dst[k].dtype)
            elif src[k].shape == dst[k].shape:
                new[k] = src[k].detach().to(dst[k].device, dst[k].dtype).clone()
    target.model.load_state_dict(new)
    return {"tensors": len(body), "head_rows": len(shared), "new_head_rows": len(rows_dst) - len(shared)}


def warm_started(build, source) -> tuple[object, dict]:
    """``build(encoder_layers)`` a new model as deep as ``source`` and give it ``source``'s weights; (model, info)."""
    model = build(layers_of(source))
    return model, transfer(model, source)


def unrehearsable(kind: str, starter, train) -> str:
    """Why a span control's starter documents cannot be rehearsed beside ``train`` ("" when they can): the project marks
    labels the starter's documents never mark. Those documents are unmarked for them, so replaying them would teach
    that every Procedure or Obligation in them is no entity. A document label has no such trap (each rehearsed
    document holds one of the starter's labels, and those are right)."""
    if kind != "spans":
        return ""
    known = {t[2] for spans in starter.targets for t in spans}
    unknown = sorted({t[2] for spans in train.targets for t in spans} - known)
    return f"the project marks {', '.join(unknown)}, which the starter's documents never mark" if unknown else ""


def rehearsal_sample(starter, n_project: int, ratio: float, floor: int, seed: int = 0):
    """The starter examples a round rehearses beside ``n_project`` labels of the project: ``ratio`` per project label,
    at least ``floor``, at most all of them (``ratio`` 0: none), drawn by ``seed``; an ``Examples`` at weight 1.

    Continued fine-tuning on a few labels alone forgets: a doc classifier's 100-step floor runs 25 labels 64 times
    and pulls a 1,500-example starter onto them (docs/benchmarks.md, "Warm start"). Replaying the starter's own data
    keeps what it knew while the project's labels move it; the floor keeps a small round from replaying a dozen. Too
    much replay holds back a project whose documents differ from the starter's: one per label and at least 256 cost
    1.6 points on news sentences at 200 labels, half as many and at least 128 (the default) none (docs/benchmarks.md,
    "Rehearsal")."""
    import random

    from .models import Examples

    if ratio <= 0 or not starter.texts:
        return Examples([], [])
    k = min(len(starter.texts), max(int(floor), int(round(ratio * n_project))))
    picked = sorted(random.Random(seed).sample(range(len(starter.texts)), k))
    masks = [starter.masks[i] for i in picked] if starter.masks is not None else None
    return Examples([starter.texts[i] for i in picked], [starter.targets[i] for i in picked], [1.0] * k, masks)
