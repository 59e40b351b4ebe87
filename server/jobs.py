"""Jobs as library functions: what `goldloop train`, `goldloop pretrain`, `goldloop distill`, the backend's
START_TRAINING child process and the starters' background process all run, so a rule about jobs is written once.

The rule held here: with GOLDLOOP_DISTILL_LAYERS > 0 a smaller student is distilled after every promotion, whichever
job promoted (a round from the CLI or a webhook, pretrain, a starter). Each job opens its project once
(ProjectContext) and runs through the versioned runner (server/runner.py); the webhook's child is
``python -m server.jobs round PROJECT --data-dir DIR``, so the library never calls back through the CLI.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from .locks import EXIT_ROUND_RUNNING, RoundRunning
from .project import ProjectContext

log = logging.getLogger(__name__)

AUTO_DISTILL = "auto-distill"  # the trigger recorded on a student distilled after a promotion


def _on_device(settings) -> None:
    """Models of this process (the candidate and the serving version it is compared with) load where settings say."""
    from ml_backend.models.torch_utils import set_process_device

    set_process_device(settings.device, settings.precision)


def after_promotion(settings, ctx: ProjectContext, rec: dict, strategy: str = "least_confidence", progress: bool = True) -> list[dict]:
    """The auto-distill rule: a promoted version is followed by its distilled student when GOLDLOOP_DISTILL_LAYERS
    is above 0 (never a student of a student)."""
    if rec.get("status") != "promoted" or settings.distill_layers <= 0 or rec.get("trigger") == AUTO_DISTILL:
        return []
    from .distill import run_distill

    return [run_distill(settings, ctx.pid, ctx=ctx, layers=settings.distill_layers, trigger=AUTO_DISTILL, strategy=strategy,
                        progress=progress)]


def _show(ctx: ProjectContext, recs: list[dict]) -> list[dict]:
    """Refresh the project's dashboard snapshot after its jobs (never fails a job: a warning at worst)."""
    from . import store
    from .dashboard_data import write_snapshot_quietly
    from .loop import stopping_report

    write_snapshot_quietly(ctx, stopping_report(store.list_versions(ctx.db, ctx.pid)), read_queue=False,
                           queue_scores=ctx.queue_scores)
    return recs


def train(settings, project_ref: str | int, *, options=None, strategy: str = "least_confidence", trigger: str = "cli",
          progress: bool = True, client=None, registry=None) -> list[dict]:
    """One active-learning round, then the auto-distill rule; the version records, the round's first."""
    from .loop import run_round

    _on_device(settings)
    ctx = ProjectContext.open(settings, project_ref, client=client, registry=registry)
    rec = run_round(settings, ctx.pid, ctx=ctx, options=options, strategy=strategy, trigger=trigger, progress=progress)
    return _show(ctx, [rec, *after_promotion(settings, ctx, rec, strategy, progress)])


def pretrain(settings, project_ref: str | int, sources: Sequence[tuple[Path, str | None]], maps: Sequence[str] = (), *,
             options=None, limit: int | None = None, progress: bool = True, client=None, registry=None,
             trigger: str | None = None) -> list[dict]:
    """A version from outside labeled data (a starter set, another export), then the auto-distill rule."""
    from . import pretrain as pretraining

    _on_device(settings)
    ctx = ProjectContext.open(settings, project_ref, client=client, registry=registry)
    rec = pretraining.pretrain(settings, ctx.pid, sources, maps, options=options, limit=limit, progress=progress, ctx=ctx,
                               trigger=trigger or pretraining.TRIGGER)
    return _show(ctx, [rec, *after_promotion(settings, ctx, rec, progress=progress)])


def distill(settings, project_ref: str | int, *, progress: bool = True, client=None, registry=None, **kw) -> dict:
    """`goldloop distill`: a student of the serving version (or of ``from_version``), through the gate."""
    from .distill import run_distill

    _on_device(settings)
    ctx = ProjectContext.open(settings, project_ref, client=client, registry=registry)
    return _show(ctx, [run_distill(settings, ctx.pid, ctx=ctx, progress=progress, **kw)])[0]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m server.jobs round PROJECT --data-dir DIR [--trigger T]``: the backend's training child. Exit 0 when
    the round ran (whatever it decided), EXIT_ROUND_RUNNING when another process runs this project's round, 1 when
    it failed; the log says why."""
    from .config import Settings

    parser = argparse.ArgumentParser(prog="python -m server.jobs")
    sub = parser.add_subparsers(dest="job", required=True)
    rnd = sub.add_parser("round", help="one active-learning round (then the auto-distill rule)")
    rnd.add_argument("project")
    rnd.add_argument("--data-dir", required=True)
    rnd.add_argument("--trigger", default="webhook")
    rnd.add_argument("--strategy", default="least_confidence")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(home=Path(args.data_dir).expanduser().resolve())
    try:
        recs = train(settings, args.project, strategy=args.strategy, trigger=args.trigger, progress=False)
    except RoundRunning as exc:
        log.info("%s", exc)
        return EXIT_ROUND_RUNNING
    for rec in recs:
        log.info("%s: %s — %s", rec["version"], rec["status"], rec.get("decision"))
    return 1 if recs[0]["status"] in ("failed", "not started") else 0


if __name__ == "__main__":
    sys.exit(main())
