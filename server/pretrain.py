"""`goldloop pretrain`: a version of a project trained on labeled data that did not come from its annotators.

The data is the simulation's JSONL (``{id, text, spans}`` or ``{id, text, label}``) or a goldloop export's
``data.jsonl``. Source label names are mapped onto the project's labels (identity where the names match; a source
label nothing maps is dropped and counted), every document gets the loop's stable split by its id, and the
round's own code trains, evaluates, gates and publishes (server/loop.py, with the records in place of the Label
Studio export). Later rounds train on the project's own labels and meet the pretrained version at the gate.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ml_backend.training import TrainOptions

from .loop import run_round
from .project import ProjectContext
from .records import build_records, parse_mapping

TRIGGER = "pretrain"


def pretrain(settings, project_ref: str | int, sources: Sequence[tuple[Path, str | None]], maps: Sequence[str] = (),
             options: TrainOptions | None = None, limit: int | None = None, progress: bool = True, client=None, registry=None,
             trigger: str = TRIGGER, ctx: ProjectContext | None = None) -> dict:
    """Train, evaluate, gate and publish a version of a project from outside labeled data; returns the version record
    (jobs.pretrain adds the auto-distill rule)."""
    ctx = ctx or ProjectContext.open(settings, project_ref, client=client, registry=registry)
    labeled = build_records(sources, ctx.spec, parse_mapping(maps, ctx.spec), limit)
    return run_round(settings, ctx.pid, ctx=ctx, options=options, trigger=trigger, progress=progress, labeled=labeled)


def summary(rec: dict) -> list[str]:
    """What `goldloop pretrain` prints about a version record."""
    lines = [f"{rec['version']}: {rec['status']} — {rec.get('decision')}"]
    report = json.loads(rec.get("pretrain") or "{}")
    for src in report.get("sources", []):
        lines.append(f"  {src['file']}: {src['documents']} document(s) for {', '.join(src['controls'])}")
    if report.get("dropped_labels"):
        lines.append("  dropped (no project label): " + ", ".join(f"{k} ×{v}" for k, v in sorted(report["dropped_labels"].items())))
    return lines
