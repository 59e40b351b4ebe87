"""One active-learning round, end to end: export → train → evaluate → gate → promote → pre-annotate → reorder.

The same code runs from Label Studio's START_TRAINING webhook (inside `goldloop backend`, promoting into
the serving registry) and from `goldloop train PROJECT`. `goldloop simulate` replays the loop offline with
its own query models (server/simulate/), using this round's training code (ml_backend.training).
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ml_backend.control_group import shown_result
from ml_backend.encoders import choose_encoder
from ml_backend.registry import ProjectModel, Registry, new_version_name
from ml_backend.results import result_key
from ml_backend.schema import TaskSpec, parse_label_config
from ml_backend.training import TrainOptions, evaluate_models, examples_for, gate, has_labels, train_control

from . import ls_client, store
from .effort import annotation_rows
from .errors import ExportError, LoopError
from .locks import EXIT_ROUND_RUNNING, RoundLock
from .export import ExportOptions, ExportResult, ProjectInfo, export_dataset, read_jsonl

log = logging.getLogger(__name__)


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "project"


def _completed(task: dict) -> bool:
    return any(not a.get("was_cancelled") for a in task.get("annotations") or [])


def load_dataset(version_dir: Path) -> dict[str, list[dict]]:
    """The gold export's records (data.jsonl) by split."""
    by_split: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for rec in read_jsonl(Path(version_dir) / "data.jsonl"):
        by_split.setdefault(rec.get("split", "train"), []).append(rec)
    return by_split


@dataclass
class LabeledRecords:
    """Labeled records that did not come from the project's annotators (a starter set, another export): a round
    given them trains and evaluates on them instead of the Label Studio export. A record with a "controls" list
    labels only those controls (a sentiment set says nothing about entities)."""

    by_split: dict[str, list[dict]]
    name: str  # recorded as the version's dataset_version
    data_hash: str
    record: dict = field(default_factory=dict)  # further columns of the version record


def of_control(records: list[dict], control) -> list[dict]:
    """The records that label a control: those without a "controls" list, and those naming it."""
    return [r for r in records if control.name in r.get("controls", (control.name,))]


def evaluate_labeled(spec: TaskSpec, models: dict, records: list[dict], controls: set[str]) -> dict:
    """evaluate_models, each control scored only on the records that label it."""
    if not any("controls" in r for r in records):
        return evaluate_models(spec, models, records, controls)
    parts = [evaluate_models(spec, models, of_control(records, c), {c.name}) for c in spec.controls if c.name in controls]
    scores = [p["primary"] for p in parts if p["primary"] is not None]
    return {"controls": {k: v for p in parts for k, v in p["controls"].items()}, "n_docs": len(records),
            "primary": float(sum(scores) / len(scores)) if scores else None}


def latest_dataset(root: Path, slug: str) -> Path | None:
    versions = sorted(p for p in (Path(root) / slug).glob("*") if p.is_dir() and not p.name.startswith("."))
    return versions[-1] if versions else None


def pool_agreement(old: list[dict], new: list[dict]) -> float | None:
    """Share of pool documents whose predicted labels (spans + choices) are identical under two versions."""
    if not old or len(old) != len(new):
        return None

    return float(np.mean([result_key(a.get("result")) == result_key(b.get("result")) for a, b in zip(old, new)]))


def strategy_uncertainty(kind: str, pm: ProjectModel, texts: dict[str, list[str]]) -> np.ndarray:
    """Per document, the uncertainty (``margin``, ``entropy`` or ``total_margin``) of its most uncertain scored
    control, as the task score takes the least confident one: a single-label choice from its label probabilities, a
    span control from its token probabilities (the mean of the 10 most uncertain tokens, or with ``total_margin``
    their sum over all tokens: ``sampling.span_uncertainty``, as the simulation ranks), any other control
    (multi-label, cold-start matcher) from its confidence. A ``total_margin`` sum is not bounded by 1, so in a
    project with span and document-label controls the span control usually decides."""
    from ml_backend.sampling import span_uncertainty, uncertainty

    cold = set(pm.meta.get("cold_start", []))
    scored = [c for c in pm.spec.controls if c.name not in cold] or list(pm.spec.controls)
    preds: dict | None = None
    per_control = []
    for control in scored:
        model = pm.models[control.name]
        if control.kind == "spans" and model.scores_tokens:
            with pm.lock:
                pairs = model.token_probs(texts[control.value_field])
            per_control.append(span_uncertainty([p for _, p in pairs], kind))
            continue
        preds = preds or pm.predict_texts(texts)
        if control.kind == "choices" and not control.multi:
            per_control.append(uncertainty(np.array([[p.probs[lbl] for lbl in control.labels] for p in preds[control.name]]), kind))
        else:
            per_control.append(1.0 - np.array([p.confidence for p in preds[control.name]], dtype=float))
    return np.max(per_control, axis=0)


def order_scores(strategy: str, items: list[dict], pm: ProjectModel, texts: dict[str, list[str]], seed: int = 0) -> list[float]:
    """Prediction scores that make Label Studio's lowest-score-first queue follow the strategy.

    least_confidence: the model's confidence itself. margin / entropy / total_margin: a document's uncertainty
    under that measure (``strategy_uncertainty``); those and diversity / random give a rank-based score in [0, 1]
    (rank / n), since Label Studio only sorts by one number.
    """
    conf = np.array([it["score"] for it in items], dtype=float)
    if strategy in ("least_confidence", "") or not len(items):
        return conf.tolist()
    from ml_backend.sampling import KINDS, get_strategy

    rng = np.random.default_rng(seed)
    unc = strategy_uncertainty(strategy, pm, texts) if strategy in KINDS else 1.0 - conf
    kw: dict[str, Any] = {"uncertainty": unc, "rng": rng}
    if strategy == "diversity":
        proto = next((m for m in pm.models.values() if m.embeds), None)
        if proto is None:
            from ml_backend.models import PrototypeClassifier

            proto = PrototypeClassifier(["x"], model_name=pm.meta.get("model_name", ""))
        kw["embeddings"] = proto.embed(texts[pm.spec.value_fields[0]])
    order = get_strategy(strategy).select(len(items), **kw)
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
) -> dict:
    """Run one round for a Label Studio project; returns (and stores) the version record.

    labeled: train on these records instead of the project's exported annotations (server/pretrain.py)."""
    opts = options or TrainOptions(cold_start_labels=settings.cold_start_labels)
    pinned_encoder = bool(opts.model_name)  # chosen for this round: used as it is
    opts.device = opts.device or settings.device
    opts.work_dir = opts.work_dir or str(settings.data_dir.encoders)
    opts.progress = progress
    db = store.open_db(settings.data_dir.db_path)
    client = client or ls_client.connect(settings, db)
    project = ls_client.resolve_project(client, project_ref, db)
    pid = int(project.id)
    if not opts.model_name:  # the project's own encoder (`goldloop encoder`), else the configured default, chosen by its documents
        opts.model_name = store.get_project_setting(db, pid, "encoder") or ""
        pinned_encoder = bool(opts.model_name)
        opts.model_name = opts.model_name or settings.model
    spec = parse_label_config(project.label_config)
    registry = registry or Registry(settings.backend_settings())
    version = new_version_name()
    lock = RoundLock(settings.data_dir.round_lock_path(pid), pid)
    lock.acquire(trigger, version)  # RoundRunning while another process runs a round of this project
    try:
        recover_interrupted(db, client, registry, pid)
        started = time.time()
        row: dict[str, Any] = {"project_id": pid, "version": version, "trigger": trigger, "started_at": started, "status": "running",
                               "hyperparameters": json.dumps({k: v for k, v in asdict(opts).items() if k != "extra"}), "strategy": strategy, **(labeled.record if labeled else {})}
        store.record_version(db, **row)
        try:
            result = _round(settings, client, db, project, spec, registry, version, opts, strategy, progress, pinned_encoder, labeled)
            row.update(result)
        except (ExportError, LoopError, ValueError) as exc:
            row.update(status="not started" if isinstance(exc, ExportError) else "failed", decision=str(exc))
            log.warning("project %s: round %s did not run: %s", pid, version, exc)
        except Exception as exc:  # a crashed job must leave the serving version untouched and say why
            row.update(status="failed", decision=f"{type(exc).__name__}: {exc}")
            log.error("project %s: round %s failed\n%s", pid, version, traceback.format_exc())
        row["duration_s"] = round(time.time() - started, 2)
        store.record_version(db, **row)
        return store.get_version(db, pid, version)
    finally:
        lock.release()


def recover_interrupted(db, client, registry: Registry, pid: int) -> list[dict]:
    """Settle the rounds of a project that a killed process left "running"; call it holding the round lock.

    A round killed after serving.json named its version did promote (Label Studio adopted it first); any other is
    "interrupted": its files were never named by serving.json, so nothing serves or lists them, and Label Studio's
    project version goes back to the one that serves when the killed round had already switched it.
    """
    serving = registry.current_version(str(pid))
    settled = []
    for row in store.running_versions(db, pid):
        if row["version"] == serving:
            change = {"status": "promoted", "decision": "promoted; the round's process ended before it recorded the result"}
        else:
            change = {"status": "interrupted", "decision": "the round's process ended before the round finished (killed?)"}
        store.record_version(db, project_id=pid, version=row["version"], **change)
        settled.append({**row, **change})
        log.warning("project %s: round %s %s", pid, row["version"], change["decision"])
    interrupted = {r["version"] for r in settled if r["status"] == "interrupted"}
    for v in interrupted:  # a half-saved version folder: serving.json never named it, nothing lists or serves it
        vdir = registry.path(str(pid), v)
        if vdir.is_dir():
            shutil.rmtree(vdir, ignore_errors=True)
    if interrupted:
        current = getattr(ls_client.get_project(client, pid), "model_version", None)
        if current in interrupted and not serving.startswith("coldstart"):
            ls_client.adopt_model_version(client, pid, serving)
    return settled


def _round(settings, client, db, project, spec: TaskSpec, registry: Registry, version: str, opts: TrainOptions, strategy: str, progress: bool,
           pinned_encoder: bool = False, labeled_records: LabeledRecords | None = None) -> dict:
    pid = int(project.id)
    key = str(pid)
    if labeled_records is None:
        data, dataset_version, data_hash = _exported(settings, client, db, project, spec, progress)
    else:
        data, dataset_version, data_hash = labeled_records.by_split, labeled_records.name, labeled_records.data_hash
    n_labeled = sum(len(v) for v in data.values())
    pool_ids, pool_texts, done, spent = [], {f: [] for f in spec.value_fields}, [], []
    for task in ls_client.iter_tasks(client, pid):
        if task.get("annotations"):  # the same pass reads what each annotation took (server/effort.py)
            spent += annotation_rows(pid, [task], spec, settings.control_share)
        d = task.get("data") or {}
        if all(isinstance(d.get(f), str) and d.get(f).strip() for f in spec.value_fields):
            if _completed(task):
                done.append({"id": task["id"], "data": d})
                continue
            pool_ids.append(task["id"])
            for f in spec.value_fields:
                pool_texts[f].append(d[f])
    store.record_effort(db, spent)

    serving = registry.get(key, spec)
    all_records = [r for split in data.values() for r in split]
    # the project's encoder, chosen from its own documents (labeled + pool): one that reads their script
    docs = [t for r in all_records for f in spec.value_fields if isinstance(t := r.get("text") or (r.get("data") or {}).get(f), str)]
    chosen, encoder_choice = choose_encoder(docs + [t for f in spec.value_fields for t in pool_texts[f]], opts.model_name, Path(opts.work_dir),
                                            pinned=pinned_encoder)
    opts = replace(opts, model_name=chosen)
    labeled = {c.name for c in spec.controls if has_labels(c, of_control(all_records, c))}
    if not labeled:
        raise LoopError("the exported annotations hold no label of any control in the labeling config")
    models, control_info, carried_cold = {}, [], []
    for control in spec.controls:
        if control.name not in labeled:  # nobody labels it yet: keep what serves it, neither train nor score it
            models[control.name] = serving.models[control.name]
            if control.name in serving.meta.get("cold_start", []):
                carried_cold.append(control.name)
            control_info.append({"control": control.name, "skipped": "no labels yet", "kind": serving.models[control.name].kind})
            continue
        train, dev = examples_for(control, of_control(data["train"], control)), examples_for(control, of_control(data["dev"], control))
        teacher = serving.models.get(control.name) if control.name not in serving.meta.get("cold_start", []) else None
        model, ci = train_control(control, train, dev, opts, pool_texts[control.value_field], teacher)
        models[control.name] = model
        control_info.append(ci)
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
        promote, reason = gate(new_metrics, old_metrics, opts.tolerance)
    out: dict[str, Any] = {
        "dataset_version": dataset_version, "data_hash": data_hash,
        "labeled_docs": n_labeled, "pool_docs": len(pool_ids), "metrics": json.dumps(new_metrics), "serving_metrics": json.dumps(old_metrics),
        "primary": new_metrics.get("primary"), "serving_primary": (old_metrics or {}).get("primary"), "serving_version": serving.version,
        "models": json.dumps(control_info, default=str), "decision": reason, "status": "promoted" if promote else "rejected",
        "encoder": encoder_choice["chosen"], "encoder_choice": json.dumps(encoder_choice),
    }
    if not promote:
        return out
    # with outside records, a project whose every task is labeled gets its predictions on those tasks
    tasks = data if labeled_records is None else {"train": done}
    out.update(publish(client, registry, key, pid, candidate, serving, pool_ids, pool_texts, tasks, strategy, opts.seed, progress,
                       settings.control_share, {"metrics": new_metrics, "dataset_version": dataset_version, "decision": reason,
                         "model_name": opts.model_name, "encoder_choice": encoder_choice}))
    return out


def _exported(settings, client, db, project, spec: TaskSpec, progress: bool) -> tuple[dict[str, list[dict]], str, str | None]:
    """The project's annotations exported as a gold dataset: its records by split, its version name, its content hash."""
    pid = int(project.id)
    row = store.get_project(db, pid) or {}
    slug = slugify(row.get("schema_name") or project.title)
    datasets_root = settings.data_dir.datasets
    info = ProjectInfo(id=pid, slug=slug, title=project.title, label_config=project.label_config)
    exported: ExportResult = export_dataset(ls_client.iter_tasks(client, pid), spec, info, ExportOptions(datasets_root, formats=("jsonl",), progress=progress))
    vdir = exported.version_dir or latest_dataset(datasets_root, slug)
    if vdir is None:
        raise LoopError(f"export wrote no dataset: {exported.message}")
    manifest = vdir / "manifest.json"
    return load_dataset(vdir), vdir.name, json.loads(manifest.read_text()).get("content_hash") if manifest.exists() else None


def publish(client, registry: Registry, key: str, pid: int, candidate: ProjectModel, serving: ProjectModel, pool_ids: list,
            pool_texts: dict[str, list[str]], data: dict, strategy: str, seed: int, progress: bool, control_share: float,
            meta: dict) -> dict:
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
    scores = order_scores(strategy, items, candidate, texts, seed) if pool_ids else [it["score"] for it in items]
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


def backend_trainer(settings, registry: Registry | None = None):
    """The training callback `goldloop backend` injects into the app: START_TRAINING runs a round.

    The round runs as a `goldloop train` child process at lower CPU priority: /predict keeps answering
    from the serving version, a crashed or killed job cannot touch the server, and the backend picks the
    promoted version up from serving.json on its next request. When another process (`goldloop train`,
    another worker) holds the project's round lock, the child exits EXIT_ROUND_RUNNING and the trigger is
    dropped: the running round already trains on the labels that fired it.
    """
    import os
    import subprocess
    import sys

    from .config import ENV_DEVICE, ENV_QUANTIZE

    def trainer(project: str, event: dict) -> None:
        cmd = [sys.executable, "-m", "server.cli", "train", str(project), "--data-dir", str(settings.home),
               "--trigger", str(event.get("action", "webhook"))]
        log_path = settings.data_dir.log(f"train-{project}")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # the round serves what the backend serves: with int8 it prebuilds the graph before promoting
        env = {**os.environ, ENV_QUANTIZE: settings.quantize, ENV_DEVICE: settings.device}
        with open(log_path, "ab") as log_file:
            proc = subprocess.run(cmd, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(10),
                                  check=False, env=env)
        if proc.returncode == EXIT_ROUND_RUNNING:  # another process runs this project's round: this trigger is served by it
            log.info("project %s: %s skipped, a round of this project already runs in another process (see %s)",
                     project, event.get("action", "webhook"), log_path)
            return
        if proc.returncode != 0:
            raise LoopError(f"training round for project {project} exited {proc.returncode}; see {log_path}")

    return trainer
