"""`goldloop distill PROJECT`: a smaller, faster student of the serving version, through the round's gate.

Like a round (server/loop.py), under the project's round lock: export the labels, take the teacher (the
serving version, or ``--from VERSION``), distil a student per trained transformer control on the train and
dev splits plus the unlabeled pool (ml_backend/distill.py), evaluate teacher and student on the same fixed
test split in the serving precision, and promote the student only when its primary metric is within
``tolerance`` of the teacher's. Controls served by a cheap model (matcher, TF-IDF, prototypes) keep it. The
version record says where the student comes from (teacher version, layers, loss weights) and how fast it is.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

from ml_backend.distill import DistillOptions, distill_model, docs_per_second
from ml_backend.models import load_model
from ml_backend.models.hf import serving_model
from ml_backend.registry import ProjectModel, Registry, cold_start_model, new_version_name
from ml_backend.schema import TaskSpec, parse_label_config
from ml_backend.training import examples_for, gate, has_labels

from . import ls_client, store
from .errors import LoopError
from .export import ExportOptions, ProjectInfo, export_dataset
from .locks import RoundLock
from .loop import evaluate_labeled, latest_dataset, load_dataset, of_control, publish, recover_interrupted, slugify

log = logging.getLogger(__name__)

TRIGGER = "distill"
DEFAULT_TOLERANCE = 0.01  # one point of the primary metric (entity F1 / macro-F1)


def teacher_version(registry: Registry, key: str, spec: TaskSpec, version: str | None) -> ProjectModel:
    """The serving ProjectModel, or a saved version loaded in the serving precision."""
    if not version:
        return registry.get(key, spec)
    vdir = registry.path(key, version)
    if not vdir.is_dir():
        raise LoopError(f"project {key} has no saved version {version!r} (goldloop versions {key})")
    meta = json.loads((vdir / "version.json").read_text()) if (vdir / "version.json").is_file() else {}
    models, cold = {}, []
    for control in spec.controls:
        cdir = registry.path(key, version, control.name)
        if (cdir / "goldloop_model.json").is_file():
            models[control.name] = load_model(cdir, quantize=registry.settings.quantize, threads=registry.settings.threads)
        else:
            models[control.name] = cold_start_model(control, registry.settings, meta.get("model_name"))
            cold.append(control.name)
    return ProjectModel(spec, version, models, {"cold_start": cold, "model_name": meta.get("model_name")})


def gold_records(settings, client, db, project, spec: TaskSpec, progress: bool) -> tuple[dict[str, list[dict]], str]:
    """The project's annotations exported now (a new dataset version only when they changed): records by split."""
    pid = int(project.id)
    slug = slugify((store.get_project(db, pid) or {}).get("schema_name") or project.title)
    root = settings.data_dir.datasets
    info = ProjectInfo(id=pid, slug=slug, title=project.title, label_config=project.label_config)
    exported = export_dataset(ls_client.iter_tasks(client, pid), spec, info, ExportOptions(root, formats=("jsonl",), progress=progress))
    vdir = exported.version_dir or latest_dataset(root, slug)
    if vdir is None:
        raise LoopError(f"export wrote no dataset: {exported.message}")
    return load_dataset(vdir), vdir.name


def unlabeled_pool(client, pid: int, spec: TaskSpec) -> tuple[list, dict[str, list[str]]]:
    """Task ids and texts (per value field) of the project's tasks nobody has annotated."""
    ids, texts = [], {f: [] for f in spec.value_fields}
    for task in ls_client.iter_tasks(client, pid):
        d = task.get("data") or {}
        if any(not a.get("was_cancelled") for a in task.get("annotations") or []):
            continue
        if all(isinstance(d.get(f), str) and d[f].strip() for f in spec.value_fields):
            ids.append(task["id"])
            for f in spec.value_fields:
                texts[f].append(d[f])
    return ids, texts


def run_distill(settings, project_ref: str | int, *, options: DistillOptions | None = None, from_version: str | None = None,
                tolerance: float = DEFAULT_TOLERANCE, registry: Registry | None = None, client=None, trigger: str = TRIGGER,
                strategy: str = "least_confidence", progress: bool = True, **option_fields: Any) -> dict:
    """Distil the project's teacher version into a student; returns (and stores) the student's version record.

    ``option_fields``: DistillOptions fields (layers, temperature, kd_weight, max_steps, ...) over ``options``."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    opts = replace(options or DistillOptions(), progress=progress, **option_fields)
    db = store.open_db(settings.data_dir.db_path)
    client = client or ls_client.connect(settings, db)
    project = ls_client.resolve_project(client, project_ref, db)
    pid = int(project.id)
    spec = parse_label_config(project.label_config)
    registry = registry or Registry(settings.backend_settings())
    version = new_version_name()
    lock = RoundLock(settings.data_dir.round_lock_path(pid), pid)
    lock.acquire(trigger, version)
    try:
        recover_interrupted(db, client, registry, pid)
        started = time.time()
        row: dict[str, Any] = {"project_id": pid, "version": version, "trigger": trigger, "started_at": started, "status": "running",
                               "strategy": strategy, "hyperparameters": json.dumps({**opts.record(), "tolerance": tolerance})}
        store.record_version(db, **row)
        try:
            row.update(_distil(settings, client, db, project, spec, registry, version, opts, from_version, tolerance, strategy, progress))
        except (LoopError, ValueError) as exc:
            row.update(status="failed", decision=str(exc))
            log.warning("project %s: distillation %s did not run: %s", pid, version, exc)
        except Exception as exc:  # a crashed distillation leaves the serving version untouched and says why
            row.update(status="failed", decision=f"{type(exc).__name__}: {exc}")
            log.exception("project %s: distillation %s failed", pid, version)
        row["duration_s"] = round(time.time() - started, 2)
        store.record_version(db, **row)
        return store.get_version(db, pid, version)
    finally:
        lock.release()


def _distil(settings, client, db, project, spec: TaskSpec, registry: Registry, version: str, opts: DistillOptions,
            from_version: str | None, tolerance: float, strategy: str, progress: bool) -> dict:
    pid, key = int(project.id), str(int(project.id))
    teacher = teacher_version(registry, key, spec, from_version)
    targets = [c for c in spec.controls if c.name not in teacher.meta.get("cold_start", [])
               and getattr(teacher.models[c.name], "distillable", False)]
    if not targets:
        raise LoopError(f"version {teacher.version} has no fine-tuned transformer model to distil (train one first: goldloop train)")
    data, dataset_version = gold_records(settings, client, db, project, spec, progress)
    records = [r for split in data.values() for r in split]
    labeled = {c.name for c in spec.controls if has_labels(c, of_control(records, c))}
    pool_ids, pool_texts = unlabeled_pool(client, pid, spec)
    models, info, quantize = dict(teacher.models), [], registry.settings.quantize
    for control in targets:
        if control.name not in labeled:
            continue
        rows = of_control(data["train"], control) + of_control(data["dev"], control)
        student, ci = distill_model(teacher.models[control.name], examples_for(control, rows), pool_texts[control.value_field], opts)
        student.quantize = quantize  # judged and timed as it will serve
        student.serving = serving_model(student.model, quantize, student.threads)
        test = [r.get("text") or (r.get("data") or {}).get(control.value_field) for r in of_control(data["test"], control)]
        test = [t for t in test if isinstance(t, str)]
        ci["speed"] = {"precision": quantize, "docs": len(test), "teacher_docs_s": round(docs_per_second(teacher.models[control.name], test), 2),
                       "student_docs_s": round(docs_per_second(student, test), 2)}
        models[control.name] = student
        info.append({"control": control.name, **ci})
    if not info:
        raise LoopError("no distillable control has labels in the export")
    new = evaluate_labeled(spec, models, data["test"], labeled)
    old = evaluate_labeled(spec, teacher.models, data["test"], labeled)
    promote, why = gate(new, old, tolerance)
    layers = ",".join(str(c["layers"]) for c in info)
    why = (f"distilled from {teacher.version} ({layers} of {info[0]['teacher_layers']} layers): "
           + (why.replace("serving", "teacher") if promote else f"not within {tolerance} of the teacher: " + why.replace("serving", "teacher")))
    record = {"teacher_version": teacher.version, "layers": opts.layers, "temperature": opts.temperature, "kd_weight": opts.kd_weight,
              "layer_weight": opts.layer_weight, "tolerance": tolerance, "controls": info}
    out: dict[str, Any] = {
        "dataset_version": dataset_version, "labeled_docs": len(records), "pool_docs": len(pool_ids), "metrics": json.dumps(new),
        "serving_metrics": json.dumps(old), "primary": new.get("primary"), "serving_primary": old.get("primary"),
        "serving_version": registry.current_version(key, spec), "models": json.dumps(info, default=str), "decision": why,
        "status": "promoted" if promote else "rejected", "distilled_from": teacher.version, "student_layers": opts.layers,
        "distill": json.dumps(record, default=str), "encoder": teacher.meta.get("model_name") or "",
    }
    if promote:
        candidate = ProjectModel(spec, version, models, {"cold_start": list(teacher.meta.get("cold_start", [])),
                                                         "model_name": teacher.meta.get("model_name")})
        # the rounds' own publish: the pool's predictions (or, with every task labeled, the labeled tasks'), Label
        # Studio's model version, then the registry
        out.update(publish(client, registry, key, pid, candidate, teacher, pool_ids, pool_texts, data, strategy, 0, progress,
                           settings.control_share, {"metrics": new, "dataset_version": dataset_version, "decision": why,
                                                    "model_name": teacher.meta.get("model_name"), "distill": record}))
    return out
