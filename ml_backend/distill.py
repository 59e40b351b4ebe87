"""Distillation: a smaller student from a fine-tuned teacher (token or document classifier).

The student is the teacher with some of its transformer layers dropped (structured pruning by layer dropping:
``kept_layers`` keeps evenly spaced layers, the top one always), or any encoder of the same width and vocabulary
given as a state dict (``init_state``). It learns from the teacher's temperature-scaled soft distributions on
the labeled documents and the unlabeled pool, plus cross-entropy on the gold labels where there are gold labels:

    loss = kd_weight · T² · KL(teacher_T ‖ student_T) + (1 − kd_weight) · CE(gold) + layer_weight · MSE(layers)

per token (spans) or per document (choices); pool documents have no gold term. The layer term (token
classifiers) pulls each student layer's output towards the output of the teacher layer it was copied from, over
the real tokens, with the teacher run beside the student on each batch. The fine-tuning loop is the
one the round uses (``models.finetune.train_loop``), with this loss. Serving then goes through the usual
precision modes (int8: ONNX Runtime), and the smaller graph is what makes it faster. No HTTP, no Label Studio.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .models import Examples, SequenceClassifier, TokenClassifier
from .models.finetune import train_loop
from .models.hf import serving_model
from .models.torch_utils import pad_batch

# the usual starting point (T = 2, an even split of soft and gold terms); bench/distill.py --kd-weights compares others
DEFAULT_TEMPERATURE = 2.0
DEFAULT_KD_WEIGHT = 0.5
DEFAULT_LAYER_WEIGHT = 1.0  # the hidden-state term: NCBI student −1.0 → −0.1 entity-F1 points against its teacher


@dataclass
class DistillOptions:
    """Knobs of one distillation; defaults suit a 2-core CPU."""

    # 4 of 6 layers at 2e-4 for ≥ 400 steps: the measured setting that keeps an NCBI student within 1 entity-F1 point
    # of its teacher (3 layers at 1e-4 for 200 steps lost 18); docs/distill.md
    layers: int = 4  # transformer layers the student keeps
    temperature: float = DEFAULT_TEMPERATURE
    kd_weight: float = DEFAULT_KD_WEIGHT  # share of the soft-target term; the rest is gold cross-entropy
    layer_weight: float = DEFAULT_LAYER_WEIGHT  # weight of the hidden-state term (token classifiers; 0: off)
    epochs: int = 3
    min_steps: int = 400  # small projects run more epochs, up to this many optimizer steps
    lr: float = 2e-4
    head_lr: float = 0.0  # 0: lr (the head is the teacher's, already trained)
    batch_size: int = 16
    max_pool: int = 2000  # unlabeled documents the teacher labels softly
    max_steps: int | None = None
    seed: int = 0
    progress: bool = True

    def record(self) -> dict:
        return asdict(self)


def kept_layers(n_teacher: int, n: int) -> list[int]:
    """Indices of ``n`` evenly spaced teacher layers, the top layer always among them (6 → 3: [1, 3, 5])."""
    if not 1 <= n <= n_teacher:
        raise ValueError(f"a student keeps between 1 and {n_teacher} layers (the teacher's), got {n}")
    return [round((i + 1) * n_teacher / n) - 1 for i in range(n)]


def encoder_layers(model):
    """The ModuleList of a BERT-like model's transformer layers (``base_model.encoder.layer``)."""
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__}: no encoder.layer list to drop layers from (BERT-like models only)")
    return layers


def drop_layers(model, keep: Sequence[int]):
    """A copy of ``model`` that keeps only the transformer layers ``keep`` (in that order)."""
    import torch

    student = copy.deepcopy(model)
    layers = encoder_layers(student)
    student.base_model.encoder.layer = torch.nn.ModuleList([layers[i] for i in keep])
    student.config.num_hidden_layers = len(keep)
    for i, layer in enumerate(student.base_model.encoder.layer):  # attention modules that know their index
        attn = getattr(getattr(layer, "attention", None), "self", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = i
    return student


def load_encoder_state(model, state: dict) -> list[str]:
    """Copy an encoder's weights (BertModel names: ``embeddings.*``, ``encoder.layer.N.*``) into ``model``'s encoder;
    returns the names of the encoder's tensors that ``state`` did not hold. Shapes must match."""
    base = model.base_model
    own = base.state_dict()
    bad = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if bad:
        raise ValueError(f"encoder weights do not fit the student: {bad[:3]} ...")
    base.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return sorted(k for k in own if k not in state)


def build_student(teacher, layers: int, init_state: dict | None = None, init_layers: int | None = None):
    """A student wrapper of the teacher's kind: its tokenizer, labels, head and windows; ``layers`` of its
    transformer layers (``kept_layers``), or, with ``init_state``, an encoder of ``init_layers`` layers set to
    those weights (the teacher's embeddings and head stay where ``init_state`` says nothing)."""
    if not isinstance(teacher, (TokenClassifier, SequenceClassifier)):
        raise ValueError(f"only fine-tuned transformer models can be distilled, not {getattr(teacher, 'kind', type(teacher).__name__)}")
    n_teacher = len(encoder_layers(teacher.model))
    if init_state is None:
        student_model = drop_layers(teacher.model, kept_layers(n_teacher, layers))
    else:
        n = init_layers or layers
        student_model = drop_layers(teacher.model, list(range(min(n, n_teacher))))
        load_encoder_state(student_model, init_state)
    student_model.cpu()
    kw: dict[str, Any] = dict(model_name=teacher.model_name, train_length=teacher.train_length, max_length=teacher.max_length,
                              stride=teacher.stride, max_windows=teacher.max_windows, threads=teacher.threads,
                              device=str(teacher.device), _model=student_model, _tokenizer=teacher.tokenizer)
    if isinstance(teacher, SequenceClassifier):
        return SequenceClassifier(teacher.labels, teacher.multi, pooling=teacher.pooling, **kw)
    return TokenClassifier(teacher.labels, teacher.multi, **kw)


def soft_features(teacher, student, labeled: Examples, pool: Sequence[str], progress: bool = False):
    """Training inputs with targets (gold or None, teacher logits): labeled windows first, then pool windows."""
    feats = student.features(labeled.texts, labeled.targets) if labeled.texts else []
    n_gold = len(feats)
    if pool:
        empty: list = [[] for _ in pool] if student.task == "spans" else None
        if empty is not None:
            feats += student.features(list(pool), empty)
        else:  # documents: only the input window matters; the label slot is unused
            feats += [(f[0], None) for f in student.features(list(pool), [[student.labels[0]] for _ in pool])]
    logits = teacher.forward([f[0] for f in feats], model=teacher.model, progress=progress, desc="teacher soft targets")
    out = []
    for i, ((ids, gold), lg) in enumerate(zip(feats, logits)):
        out.append((ids, (gold if i < n_gold else None, np.asarray(lg, dtype=np.float32))))
    return out


def layer_loss(student_hidden, teacher_hidden, layer_map: Sequence[int], mask) -> Any:
    """Mean squared distance between each student layer's output and its teacher layer's (``layer_map[i]`` is the
    teacher layer student layer i stands for), over the tokens ``mask`` marks, averaged over layers."""
    m = mask.unsqueeze(-1).to(student_hidden[0].dtype)
    n = m.sum().clamp(min=1) * student_hidden[0].shape[-1]
    parts = [(((student_hidden[i + 1].float() - teacher_hidden[k + 1].float()) ** 2) * m).sum() / n for i, k in enumerate(layer_map)]
    return sum(parts) / len(parts)


def kd_loss_fn(task: str, multi: bool, temperature: float, kd_weight: float, layer_weight: float = 0.0, teacher_model=None,
               layer_map: Sequence[int] | None = None) -> Any:
    """The distillation loss over a batch, as ``train_loop`` calls it: (student logits, targets, weights) → scalar.

    With ``layer_weight`` > 0 (spans only), ``train_loop`` also passes the student's hidden states and the batch,
    and ``teacher_model`` runs on it for the layer term (``layer_loss`` with ``layer_map``)."""
    import torch
    import torch.nn.functional as F

    T = float(temperature)
    use_layers = layer_weight > 0 and task == "spans"
    if use_layers and (teacher_model is None or not layer_map):
        raise ValueError("the layer term needs the teacher model and the student-to-teacher layer map")

    def spans(logits, targets, w, hidden=None, ids=None, mask=None):
        B, L, C = logits.shape
        teacher = torch.zeros_like(logits)
        valid = torch.zeros((B, L), dtype=torch.bool, device=logits.device)
        golds = []
        for b, (gold, t) in enumerate(targets):
            teacher[b, : len(t)] = torch.as_tensor(t, device=logits.device)
            valid[b, 1 : len(t) - 1] = True  # not the special tokens
            golds.append(gold if gold is not None else [-100] * len(t))
        log_s = F.log_softmax(logits / T, dim=-1)
        p_t = F.softmax(teacher / T, dim=-1)
        kl = (p_t * (torch.log(p_t.clamp_min(1e-12)) - log_s)).sum(-1) * T * T
        kl_seq = (kl * valid).sum(1) / valid.sum(1).clamp(min=1)
        y = pad_batch(golds, -100)[0].to(logits.device)[:, :L]
        ce = F.cross_entropy(logits.reshape(-1, C), y.reshape(-1), ignore_index=-100, reduction="none").reshape(B, L)
        has = (y != -100).float()
        ce_seq = (ce * has).sum(1) / has.sum(1).clamp(min=1)
        per = kd_weight * kl_seq + (1 - kd_weight) * ce_seq
        loss = (per * w).sum() / w.sum()
        if use_layers and hidden is not None:
            with torch.no_grad():
                t_hidden = teacher_model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            loss = loss + layer_weight * layer_loss(hidden, t_hidden, layer_map, mask)
        return loss

    spans.wants_hidden = use_layers

    def docs(logits, targets, w):
        teacher = torch.as_tensor(np.stack([t for _, t in targets]), device=logits.device)
        gold_mask = torch.tensor([g is not None for g, _ in targets], dtype=torch.float32, device=logits.device)
        if multi:
            p_t = torch.sigmoid(teacher / T)
            kl = F.binary_cross_entropy_with_logits(logits / T, p_t, reduction="none").mean(1) * T * T
            y = torch.tensor([g if g is not None else [0.0] * logits.shape[1] for g, _ in targets], dtype=torch.float32, device=logits.device)
            ce = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1)
        else:
            p_t = F.softmax(teacher / T, dim=-1)
            kl = (p_t * (torch.log(p_t.clamp_min(1e-12)) - F.log_softmax(logits / T, dim=-1))).sum(-1) * T * T
            y = torch.tensor([g if g is not None else 0 for g, _ in targets], device=logits.device)
            ce = F.cross_entropy(logits, y, reduction="none")
        per = kd_weight * kl + (1 - kd_weight) * ce * gold_mask
        return (per * w).sum() / w.sum()

    return spans if task == "spans" else docs


def distill_model(teacher, labeled: Examples, pool: Sequence[str], opts: DistillOptions, init_state: dict | None = None,
                  init_layers: int | None = None):
    """Build a student from ``teacher`` and train it on its soft targets (+ gold); returns (student, info)."""
    import torch

    started = time.perf_counter()
    torch.manual_seed(opts.seed)
    student = build_student(teacher, opts.layers, init_state, init_layers)
    pool = list(pool)[: opts.max_pool]
    feats = soft_features(teacher, student, labeled, pool, opts.progress)
    if not feats:
        raise ValueError("nothing to distil on: no labeled or unlabeled document with text")
    soft_s = round(time.perf_counter() - started, 2)
    n_teacher, n_student = len(encoder_layers(teacher.model)), len(encoder_layers(student.model))
    layer_map = kept_layers(n_teacher, n_student)
    teacher.model.eval()
    loss_fn = kd_loss_fn(student.task, student.multi, opts.temperature, opts.kd_weight, opts.layer_weight, teacher.model, layer_map)
    fit = train_loop(student, feats, [1.0] * len(feats), loss_fn, None, epochs=opts.epochs, lr=opts.lr, head_lr=opts.head_lr or None, batch_size=opts.batch_size,
                     min_steps=opts.min_steps, max_steps=opts.max_steps, early_stopping=False, seed=opts.seed, progress=opts.progress)
    student.model.eval()
    student.serving = serving_model(student.model, student.quantize, student.threads)  # the new weights serve
    student.revision += 1
    info = {"teacher_layers": n_teacher, "layers": n_student,
            "kept_layers": None if init_state is not None else layer_map,
            "layer_term": {"weight": opts.layer_weight, "teacher_layers": layer_map} if opts.layer_weight > 0 and student.task == "spans" else None,
            "init": "teacher layers" if init_state is None else "given encoder", "labeled_docs": len(labeled.texts),
            "pool_docs": len(pool), "windows": len(feats), "teacher_targets_s": soft_s, "steps": fit["steps"],
            "train_loss": fit["history"][-1]["train_loss"] if fit["history"] else None,
            "params": sum(p.numel() for p in student.model.parameters()),
            "teacher_params": sum(p.numel() for p in teacher.model.parameters()),
            "seconds": round(time.perf_counter() - started, 2), "options": opts.record()}
    return student, info


def docs_per_second(model, texts: Sequence[str], repeats: int = 2) -> float:
    """Batched prediction speed of a model on texts (best of ``repeats`` passes)."""
    if not texts:
        return 0.0
    model.predict(list(texts[:2]))  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict(list(texts))
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best
