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
from dataclasses import replace
from typing import Any

from ml_backend.distill import DistillOptions, distill_model, docs_per_second
from ml_backend.models.hf import serving_model
from ml_backend.registry import ProjectModel, Registry
from ml_backend.schema import TaskSpec
from ml_backend.training import examples_for, gate, has_labels

from .errors import LoopError
from .loop import evaluate_labeled, of_control, publish
from .project import ProjectContext
from .runner import run_job

log = logging.getLogger(__name__)

TRIGGER = "distill"
DEFAULT_TOLERANCE = 0.01  # one point of the primary metric (entity F1 / macro-F1)


def teacher_version(registry: Registry, key: str, spec: TaskSpec, version: str | None) -> ProjectModel:
    """The serving ProjectModel, or a saved version loaded in the serving precision."""
    if not version:
        return registry.get(key, spec)
    try:
        return registry.saved(key, spec, version)
    except FileNotFoundError:
        raise LoopError(f"project {key} has no saved version {version!r} (goldloop versions {key})") from None


def run_distill(settings, project_ref: str | int, *, options: DistillOptions | None = None, from_version: str | None = None,
                tolerance: float = DEFAULT_TOLERANCE, registry: Registry | None = None, client=None, trigger: str = TRIGGER,
                strategy: str = "least_confidence", progress: bool = True, ctx: ProjectContext | None = None,
                **option_fields: Any) -> dict:
    """Distil the project's teacher version into a student; returns (and stores) the student's version record.

    ``option_fields``: DistillOptions fields (layers, temperature, kd_weight, max_steps, ...) over ``options``."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    opts = replace(options or DistillOptions(), progress=progress, **option_fields)
    ctx = ctx or ProjectContext.open(settings, project_ref, client=client, registry=registry)
    return run_job(ctx, lambda version: _distil(ctx, version, opts, from_version, tolerance, strategy, progress), kind="distillation",
                   trigger=trigger, strategy=strategy, hyperparameters={**opts.record(), "tolerance": tolerance})


def _distil(ctx: ProjectContext, version: str, opts: DistillOptions, from_version: str | None, tolerance: float, strategy: str,
            progress: bool) -> dict:
    spec, registry, key = ctx.spec, ctx.registry, ctx.key
    teacher = teacher_version(registry, key, spec, from_version)
    targets = [c for c in spec.controls if c.name not in teacher.meta.get("cold_start", [])
               and getattr(teacher.models[c.name], "distillable", False)]
    if not targets:
        raise LoopError(f"version {teacher.version} has no fine-tuned transformer model to distil (train one first: goldloop train)")
    gold, tasks = ctx.read_gold(progress)  # one read of the tasks: the labels and the unlabeled pool
    data, dataset_version, records = gold.by_split, gold.version, gold.records
    labeled = {c.name for c in spec.controls if has_labels(c, of_control(records, c))}
    pool_ids, pool_texts = tasks.pool_ids, tasks.pool_texts
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
        out.update(publish(ctx, candidate, teacher, pool_ids, pool_texts, data, strategy, 0, progress, {"metrics": new, "dataset_version": dataset_version, "decision": why,
                                                    "model_name": teacher.meta.get("model_name"), "distill": record}))
    return out
