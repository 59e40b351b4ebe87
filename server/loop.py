"""One active-learning round, end to end: export → train → evaluate → gate → promote → pre-annotate → reorder.

The same code runs from Label Studio's START_TRAINING webhook (inside `goldloop backend`, promoting into
the serving registry) and from `goldloop train PROJECT`. `goldloop simulate` replays the loop offline with
its own query models (server/simulate/), using this round's training code (ml_backend.training).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from ml_backend.control_group import shown_result
from ml_backend.encoders import choose_encoder
from ml_backend.registry import ProjectModel, Registry
from ml_backend.results import result_key
from ml_backend.schema import TaskSpec
from ml_backend.training import TrainOptions, evaluate_models, examples_for, gate, has_labels, merge_examples, train_control, with_rehearsal

from . import ls_client, store
from .errors import LoopError
from .project import ProjectContext
from .records import LabeledRecords, of_control
from .runner import run_job
from .starters.sets import rehearsal_sets

log = logging.getLogger(__name__)


def evaluate_labeled(spec: TaskSpec, models: dict, records: list[dict], controls: set[str]) -> dict:
    """evaluate_models, each control scored only on the records that label it."""
    if not any("controls" in r for r in records):
        return evaluate_models(spec, models, records, controls)
    parts = [evaluate_models(spec, models, of_control(records, c), {c.name}) for c in spec.controls if c.name in controls]
    scores = [p["primary"] for p in parts if p["primary"] is not None]
    return {"controls": {k: v for p in parts for k, v in p["controls"].items()}, "n_docs": len(records),
            "primary": float(sum(scores) / len(scores)) if scores else None}


def pool_agreement(old: list[dict], new: list[dict]) -> float | None:
    """Share of pool documents whose predicted labels (spans + choices) are identical under two versions."""
    if not old or len(old) != len(new):
        return None

    return float(np.mean([result_key(a.get("result")) == result_key(b.get("result")) for a, b in zip(old, new)]))


def control_signals(pm: ProjectModel, texts: dict[str, list[str]]) -> list:
    """What each scored control says about every pool document, for ``sampling.rank_pool``: a single-label choice
    its label probabilities, a span control its token probabilities, any other control (multi-label, cold-start
    matcher) its confidence. Cold-start controls are left out while another control is trained."""
    cold = set(pm.meta.get("cold_start", []))
    scored = [c for c in pm.spec.controls if c.name not in cold] or list(pm.spec.controls)
    preds: dict | None = None
    signals: list = []
    for control in scored:
        model = pm.models[control.name]
        if control.kind == "spans" and model.scores_tokens:
            with pm.lock:
                pairs = model.token_probs(texts[control.value_field])
            signals.append([p for _, p in pairs])
            continue
        preds = preds or pm.predict_texts(texts)
        if control.kind == "choices" and not control.multi:
            signals.append(np.array([[p.probs[lbl] for lbl in control.labels] for p in preds[control.name]]))
        else:
            signals.append(np.array([p.confidence for p in preds[control.name]], dtype=float))
    return signals


def strategy_uncertainty(kind: str, pm: ProjectModel, texts: dict[str, list[str]]) -> np.ndarray:
    """Per document, the uncertainty (``margin``, ``entropy`` or ``total_margin``) of its most uncertain scored
    control, as the task score takes the least confident one (``sampling.pool_uncertainty`` over
    ``control_signals``: a span control's is the mean of its 10 most uncertain tokens, or with ``total_margin`` their
    sum over all tokens, as the simulation ranks). A ``total_margin`` sum is not bounded by 1, so in a project with
    span and document-label controls the span control usually decides."""
    from ml_backend.sampling import pool_uncertainty

    return pool_uncertainty(control_signals(pm, texts), kind)


def order_scores(strategy: str, items: list[dict], pm: ProjectModel, texts: dict[str, list[str]], seed: int = 0,
                 cost_model=None) -> list[float]:
    """Prediction scores that make Label Studio's lowest-score-first queue follow the strategy.

    least_confidence: the model's confidence itself. Every other strategy ranks the pool through
    ``sampling.rank_pool`` (the simulation's ranking too) and gives a rank-based score in [0, 1] (rank / n), since
    Label Studio only sorts by one number. cost_aware divides by the seconds ``cost_model`` predicts from each
    document's tokens and predicted spans (default ``ml_backend.cost.PRIOR``; ``cost.fit_cost_model`` on the
    project's effort rows gives its own).
    """
    conf = np.array([it["score"] for it in items], dtype=float)
    if strategy in ("least_confidence", "") or not len(items):
        return conf.tolist()
    from ml_backend.cost import PRIOR, count_tokens
    from ml_backend.results import spans_of
    from ml_backend.sampling import rank_pool

    def embeddings() -> np.ndarray:
        proto = next((m for m in pm.models.values() if m.embeds), None)
        if proto is None:
            from ml_backend.models import PrototypeClassifier

            proto = PrototypeClassifier(["x"], model_name=pm.meta.get("model_name", ""))
        return proto.embed(texts[pm.spec.value_fields[0]])

    def cost() -> np.ndarray:
        fields = list(texts)
        tokens = [sum(count_tokens(texts[f][i]) for f in fields) for i in range(len(items))]
        spans = [sum(1 for c in pm.spec.span_controls for _ in spans_of(it["result"], c.name)) for it in items]
        return (cost_model or PRIOR).predict(tokens, spans)

    order = rank_pool(strategy, len(items), rng=np.random.default_rng(seed), controls=lambda: control_signals(pm, texts),
                      confidence=conf, embeddings=embeddings, cost=cost)
    scores = np.empty(len(items))
    scores[np.asarray(order)] = np.arange(len(order)) / max(1, len(order))
    return scores.tolist()


def run_round(
    settings,
    project_ref: str | int,
    *,
    registry: Registry | None = None,
    client=None,
    options: TrainOptions | None = None,
    strategy: str = "least_confidence",
    trigger: str = "cli",
    progress: bool = True,
    labeled: LabeledRecords | None = None,
    ctx: ProjectContext | None = None,
) -> dict:
    """Run one round for a Label Studio project; returns (and stores) the version record.

    labeled: train on these records instead of the project's exported annotations (server/pretrain.py).
    ctx: the project already opened by the caller (else opened here from project_ref, client and registry)."""
    opts = options or settings.train_options()
    ctx = ctx or ProjectContext.open(settings, project_ref, client=client, registry=registry)
    pinned_encoder = bool(opts.model_name)  # chosen for this round: used as it is
    opts.device = opts.device or settings.device
    opts.work_dir = opts.work_dir or str(settings.data_dir.encoders)
    opts.progress = progress
    if not opts.model_name:  # the project's own encoder (`goldloop encoder`), else the configured default, chosen by its documents
        opts.model_name = store.get_project_setting(ctx.db, ctx.pid, "encoder") or ""
        pinned_encoder = bool(opts.model_name)
        opts.model_name = opts.model_name or settings.model
    hyperparameters = {k: v for k, v in asdict(opts).items() if k != "extra"}
    return run_job(ctx, lambda version: _round(ctx, version, opts, strategy, progress, pinned_encoder, labeled), kind="round",
                   trigger=trigger, strategy=strategy, hyperparameters=hyperparameters, record=labeled.record if labeled else None)


def _round(ctx: ProjectContext, version: str, opts: TrainOptions, strategy: str, progress: bool, pinned_encoder: bool = False,
           labeled_records: LabeledRecords | None = None) -> dict:
    spec, registry = ctx.spec, ctx.registry
    if labeled_records is None:  # one read of the tasks: the export, the pool and the effort rows together
        gold, tasks = ctx.read_gold(progress)
        data, dataset_version, data_hash = gold.by_split, gold.version, gold.data_hash
    else:
        tasks = ctx.read_pool()
        data, dataset_version, data_hash = labeled_records.by_split, labeled_records.name, labeled_records.data_hash
    pool_ids, pool_texts, done = tasks.pool_ids, tasks.pool_texts, tasks.done
    n_labeled = sum(len(v) for v in data.values())

    serving = registry.get(ctx.key, spec)
    warm = warm_source(ctx, serving) if opts.warm_start == "serving" else serving
    all_records = [r for split in data.values() for r in split]
    # the project's encoder, chosen from its own documents (labeled + pool): one that reads their script
    docs = [t for r in all_records for f in spec.value_fields if isinstance(t := r.get("text") or (r.get("data") or {}).get(f), str)]
    chosen, encoder_choice = choose_encoder(docs + [t for f in spec.value_fields for t in pool_texts[f]], opts.model_name, Path(opts.work_dir),
                                            pinned=pinned_encoder)
    opts = replace(opts, model_name=chosen)
    labeled = {c.name for c in spec.controls if has_labels(c, of_control(all_records, c))}
    if not labeled:
        raise LoopError("the exported annotations hold no label of any control in the labeling config")
    # the starter's data this project's rounds rehearse beside its labels (warm_start.rehearsal_sample)
    rehearse, rehearse_from = ({}, "") if opts.rehearsal <= 0 or labeled_records is not None else rehearsal_sets(ctx.db, ctx.pid, spec)
    silver, silver_info = {}, None
    if opts.silver_weight > 0 and labeled_records is None:  # the trusted LLM's cached answers on the pool
        from .llm.silver import silver_examples

        silver, silver_info = silver_examples(ctx, pool_texts, opts.silver_weight, limit=opts.max_pool)
    models, control_info, carried_cold = {}, [], []
    for control in spec.controls:
        if control.name not in labeled:  # nobody labels it yet: keep what serves it, neither train nor score it
            models[control.name] = serving.models[control.name]
            if control.name in serving.meta.get("cold_start", []):
                carried_cold.append(control.name)
            control_info.append({"control": control.name, "skipped": "no labels yet", "kind": serving.models[control.name].kind})
            continue
        train, dev = examples_for(control, of_control(data["train"], control)), examples_for(control, of_control(data["dev"], control))
        rehearsed = None
        if control.name in rehearse:
            train, rehearsed = with_rehearsal(control.kind, train, rehearse[control.name], opts)
        if control.name in silver and silver[control.name].texts:
            train = merge_examples(train, silver[control.name])
        teacher = serving.models.get(control.name) if control.name not in serving.meta.get("cold_start", []) else None
        # the serving model teaches self-training; a warm start continues from it (or from its teacher: warm_source)
        start = warm.models.get(control.name) if control.name not in warm.meta.get("cold_start", []) else None
        model, ci = train_control(control, train, dev, opts, pool_texts[control.value_field], teacher, start=start)
        if rehearsed is not None:
            ci["rehearsed"] = {**rehearsed, "from": rehearse_from} if rehearsed["documents"] else rehearsed
        models[control.name] = model
        control_info.append(ci)
    # per trained control: the version it continued from, or the base encoder and why (ml_backend/warm_start.py)
    started_from = {ci["control"]: warm.version if ci.get("started_from") == "serving" else
                    f"base encoder {opts.model_name}" + (f" ({ci['base_because']})" if ci.get("base_because") else "")
                    for ci in control_info if "started_from" in ci}
    project_labels = n_labeled if labeled_records is None else 0  # outside records (starters, pretrain) are no project label
    candidate = ProjectModel(spec, version, models, {"cold_start": carried_cold, "model_name": opts.model_name,
                                                        "encoder_choice": encoder_choice})
    new_metrics = evaluate_labeled(spec, candidate.models, data["test"], labeled)
    old_metrics = evaluate_labeled(spec, serving.models, data["test"], labeled) if serving.version != version else None
    if serving.meta.get("cold_start") and len(serving.meta["cold_start"]) == len(spec.controls):
        # cold-start models only bootstrap a project: the first trained version replaces them; from then on
        # the gate protects the serving trained version
        promote = new_metrics.get("primary") is not None
        cold = (old_metrics or {}).get("primary")
        reason = (f"first trained version (primary {new_metrics['primary']:.4f}; cold-start models scored "
                  f"{'n/a' if cold is None else format(cold, '.4f')})") if promote else "no test documents with labels: cannot evaluate, not promoted"
    else:
        promote, reason = gate(new_metrics, old_metrics, opts.tolerance, (project_labels, served_project_labels(ctx, serving.version)))
    out: dict[str, Any] = {
        "dataset_version": dataset_version, "data_hash": data_hash,
        "labeled_docs": n_labeled, "pool_docs": len(pool_ids), "metrics": json.dumps(new_metrics), "serving_metrics": json.dumps(old_metrics),
        "primary": new_metrics.get("primary"), "serving_primary": (old_metrics or {}).get("primary"), "serving_version": serving.version,
        "models": json.dumps(control_info, default=str), "decision": reason, "status": "promoted" if promote else "rejected",
        "encoder": encoder_choice["chosen"], "encoder_choice": json.dumps(encoder_choice),
        "started_from": json.dumps(started_from), "project_labels": project_labels,
    }
    if silver_info is not None:
        out["silver"] = json.dumps(silver_info)
    if not promote:
        return out
    # with outside records, a project whose every task is labeled gets its predictions on those tasks
    labeled_tasks = data if labeled_records is None else {"train": done}
    out.update(publish(ctx, candidate, serving, pool_ids, pool_texts, labeled_tasks, strategy, opts.seed, progress,
                       {"metrics": new_metrics, "dataset_version": dataset_version, "decision": reason,
                         "model_name": opts.model_name, "encoder_choice": encoder_choice, "started_from": started_from,
                         "project_labels": project_labels},
                       cost_model=project_cost_model(ctx, done) if strategy == "cost_aware" else None))
    return out


def warm_source(ctx: ProjectContext, serving: ProjectModel) -> ProjectModel:
    """What a warm start continues from: the serving version, or its teacher when it is a distilled student (a student's
    fewer layers fit no full-depth model, and the teacher is what it learnt from; ml_backend/warm_start.py)."""
    path = ctx.registry.path(ctx.key, serving.version, file="version.json")
    try:
        teacher = (json.loads(path.read_text()).get("distill") or {}).get("teacher_version") if path.is_file() else None
        return ctx.registry.saved(ctx.key, ctx.spec, teacher) if teacher else serving
    except (OSError, ValueError) as exc:  # the teacher's files are gone or unreadable: the student is all there is
        log.warning("project %s: the teacher of %s cannot be loaded (%s); a warm start tries the student", ctx.key, serving.version, exc)
        return serving


def served_project_labels(ctx: ProjectContext, version: str) -> int | None:
    """How many of the project's own labels its serving version was trained on (a distilled student: its teacher's);
    None for a version recorded before this was recorded, or the cold start."""
    for _ in range(2):  # the version, then the teacher it was distilled from
        path = ctx.registry.path(ctx.key, version, file="version.json")
        try:
            record = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            return None
        n = record.get("project_labels")
        if isinstance(n, (int, float)):
            return int(n)
        version = (record.get("distill") or {}).get("teacher_version")
        if not version:
            return None
    return None


def project_cost_model(ctx: ProjectContext, done: list[dict]):
    """The seconds model cost_aware ranks by: fit on the project's own timed annotations (their tasks' texts from this
    round's read), the literature prior until there are enough (ml_backend/cost.py)."""
    from ml_backend.cost import effort_samples, fit_cost_model

    field = ctx.spec.value_fields[0]
    texts = {d["id"]: d["data"][field] for d in done if isinstance((d.get("data") or {}).get(field), str)}
    return fit_cost_model(effort_samples(store.list_effort(ctx.db, ctx.pid), texts))


def publish(ctx: ProjectContext, candidate: ProjectModel, serving: ProjectModel, pool_ids: list, pool_texts: dict[str, list[str]],
            data: dict, strategy: str, seed: int, progress: bool, meta: dict, cost_model=None) -> dict:
    """Make a promoted candidate the project's version in Label Studio and in the registry, both or neither: the one
    publish of rounds, pretrain, starters and distillation (``data``: the labeled records by split).

    Label Studio accepts a project ``model_version`` only once predictions carry it, so the version's predictions
    are stored first: on the pool, or, when every task is labeled, on the labeled tasks (which also lets Label
    Studio compare the model with its annotators). The registry swap comes last, so a refusal leaves the old
    version serving; a failed swap puts Label Studio's project version back. A project without tasks (outside
    records only) has nothing to store: the registry serves the version, and an import's pre-annotation through
    the backend carries it (and sets it as the project's version).
    """
    from tqdm.auto import tqdm

    client, registry, key, pid, control_share = ctx.client, ctx.registry, ctx.key, ctx.pid, ctx.settings.control_share
    targets, texts = pool_ids, pool_texts
    if not pool_ids:
        records = [r for split in data.values() for r in split
                   if all(isinstance((r.get("data") or {}).get(f), str) for f in pool_texts)]
        targets = [r["id"] for r in records]
        texts = {f: [r["data"][f] for r in records] for f in pool_texts}
    if not pool_ids and not any(data.values()):  # no task yet (a starter trained first): the backend pre-annotates imports
        registry.promote(key, candidate, meta)
        return {"predicted_labeled_docs": 0, "decision": f"{meta['decision']}; published before the project had tasks: imports get its predictions"}
    items, previous, batch = [], [], 64
    for i in tqdm(range(0, len(targets), batch), desc="pre-annotate pool" if pool_ids else "predict labeled tasks",
                  disable=not progress, leave=False):
        items += candidate.to_results({f: v[i : i + batch] for f, v in texts.items()})
    if pool_ids and serving.version != candidate.version:
        previous = serving.to_results(pool_texts)
    scores = order_scores(strategy, items, candidate, texts, seed, cost_model) if pool_ids else [it["score"] for it in items]
    stored = ls_client.create_predictions(
        client, [{"task": tid, "model_version": candidate.version, "score": float(s), "result": shown_result(tid, it["result"], control_share)}
                 for tid, it, s in zip(targets, items, scores)]
    )
    old_version = getattr(ls_client.get_project(client, pid), "model_version", None)
    if not ls_client.adopt_model_version(client, pid, candidate.version):
        ls_client.delete_predictions(client, stored)
        raise LoopError(f"Label Studio refused model_version {candidate.version!r} after its predictions were stored; "
                        f"not promoted, {serving.version!r} keeps serving")
    try:
        registry.promote(key, candidate, meta)
    except Exception:
        if old_version:
            ls_client.adopt_model_version(client, pid, old_version)
        ls_client.delete_predictions(client, stored)
        raise
    out: dict[str, Any] = {"predicted_labeled_docs": 0 if pool_ids else len(targets)}
    if pool_ids:
        ctx.queue_scores = [float(x) for x in scores]
        ls_client.use_uncertainty_sampling(client, pid)
        ls_client.ensure_view_ordered_by_score(client, pid)
        out["pool_agreement"] = pool_agreement(previous, items)
    return out


def stopping_report(versions: list[dict], agreement_threshold: float = 0.97, slope_threshold: float = 0.005) -> dict:
    """Whether more labels still pay: consecutive versions agree on the pool and the test metric has flattened."""
    promoted = [v for v in versions if v.get("status") == "promoted" and v.get("primary") is not None]
    promoted.sort(key=lambda v: v["started_at"])
    if len(promoted) < 2:
        return {"stop": False, "reason": "fewer than two promoted versions"}
    a, b = promoted[-2], promoted[-1]
    dl = (b.get("labeled_docs") or 0) - (a.get("labeled_docs") or 0)
    slope = (b["primary"] - a["primary"]) / dl * 100 if dl > 0 else None
    agree = b.get("pool_agreement")
    stop = agree is not None and agree >= agreement_threshold and slope is not None and slope < slope_threshold
    return {"stop": stop, "pool_agreement": agree, "metric_gain_per_100_labels": slope,
            "reason": "predictions on the pool stopped changing and the test metric flattened" if stop else "labels still change the model"}
