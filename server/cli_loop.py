"""goldloop active-learning commands: train, versions, report, simulate."""
from __future__ import annotations

from pathlib import Path

import click

from ml_backend.sampling import STRATEGIES

from .cli_base import data_dir_option, echo_json_or_empty, settings_for, step_floor


@click.command()
@data_dir_option
@click.argument("project")
@click.option("--strategy", type=click.Choice(list(STRATEGIES)), default="least_confidence", show_default=True, help="How the queue is ordered after a promotion.")
@click.option("--self-training/--no-self-training", default=False, help="Add confident pseudo-labels from the unlabeled pool.")
@click.option("--epochs", type=int, default=None, help="Fine-tuning epochs (early stopping on the dev split).")
@click.option("--min-steps", type=click.IntRange(min=0), default=None, help="At least this many optimizer steps (document and span models).")
@click.option("--freeze-layers", type=int, default=None, help="Freeze the lowest N encoder layers.")
@click.option("--span-layers", type=click.IntRange(min=0), default=None,
              help="Encoder layers a span model keeps, the lowest N (0: every layer) [default: the encoder's measured depth].")
@click.option("--mention-swap", type=click.FloatRange(0, 1), default=None,
              help="Each epoch, swap a span model's gold mentions with this probability for others of their label (0: off).")
@click.option("--lora", is_flag=True, default=None, help="Train LoRA adapters (peft) instead of all weights.")
@click.option("--tolerance", type=float, default=None, help="Promote unless the primary metric drops by more than this.")
@click.option("--warm-start", type=click.Choice(["serving", "base"]), default=None,
              help="Fine-tune from the serving version's weights, or from the base encoder [default: $GOLDLOOP_WARM_START or serving].")
@click.option("--rehearsal", type=click.FloatRange(0, 100), default=None,
              help="Starter examples rehearsed per project label, in a project its starter served (0: none) [default: $GOLDLOOP_REHEARSAL or 0.5].")
@click.option("--silver-weight", type=click.FloatRange(0, 1), default=None,
              help="Also train on the trusted LLM's cached answers for the pool (goldloop llm label), at this weight (0: off).")
@click.option("--mlm-steps", type=int, default=None, help="Domain-adaptive MLM steps on the unlabeled pool before fine-tuning.")
@click.option("--device", default=None, help="auto (CUDA when torch sees one, else the CPU), cpu, cuda or cuda:N (default $GOLDLOOP_DEVICE or auto).")
@click.option("--trigger", default="cli", hidden=True, help="What started the round (recorded with the version).")
def train(data_dir, project, strategy, self_training, epochs, min_steps, freeze_layers, span_layers, mention_swap, lora, tolerance, warm_start, rehearsal, silver_weight,
          mlm_steps, device, trigger):
    """Run one active-learning round now: export labels, train, evaluate, gate, pre-annotate, reorder."""
    from . import jobs
    from .locks import EXIT_ROUND_RUNNING, RoundRunning

    settings = settings_for(data_dir, device=device)
    opts = settings.train_options(self_training=self_training, epochs=epochs, freeze_layers=freeze_layers, span_encoder_layers=span_layers,
                                  span_mention_swap=mention_swap, lora=lora, tolerance=tolerance, warm_start=warm_start,
                                  rehearsal=rehearsal, silver_weight=silver_weight, mlm_steps=mlm_steps, **step_floor(min_steps))
    try:
        recs = jobs.train(settings, project, options=opts, strategy=strategy, trigger=trigger)  # GOLDLOOP_DISTILL_LAYERS: a student follows
    except RoundRunning as exc:
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_ROUND_RUNNING) from None
    for rec in recs:
        click.echo(f"{rec['version']}: {rec['status']} — {rec.get('decision')}")
    if recs[0]["status"] in ("failed", "not started"):
        raise click.exceptions.Exit(1)


@click.command()
@data_dir_option
@click.argument("project")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def versions(data_dir, project, as_json):
    """List a project's model versions: metrics, data, decision."""
    from . import store
    from .loop import stopping_report
    from .project import ProjectContext

    ctx = ProjectContext.open(settings_for(data_dir), project)
    pid = ctx.pid
    rows = store.list_versions(ctx.db, pid)
    stop = stopping_report(rows)
    if echo_json_or_empty({"versions": rows, "stopping": stop}, as_json, not rows, f"project {pid}: no versions yet (goldloop train {project})"):
        return
    click.echo(f"{'version':<28}{'status':<12}{'labeled':>8}{'primary':>9}  {'encoder':<30}decision")
    for r in rows:
        primary = "" if r.get("primary") is None else f"{r['primary']:.4f}"
        encoder = Path(r.get("encoder") or "").name[:28]
        click.echo(f"{r['version']:<28}{r.get('status', ''):<12}{r.get('labeled_docs') or '':>8}{primary:>9}  {encoder:<30}{r.get('decision') or ''}")
    click.echo(f"stopping criterion: {'stop labeling' if stop['stop'] else 'keep labeling'} ({stop['reason']})")


@click.command()
@data_dir_option
@click.argument("project")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Folder for report.md and the PNGs.")
def report(data_dir, project, out):
    """Write a Markdown report of a project's versions and annotator time with PNG plots."""
    from . import effort, store
    from .loop import stopping_report
    from .project import ProjectContext
    from .report import write_report

    settings = settings_for(data_dir)
    ctx = ProjectContext.open(settings, project)
    rows = store.list_versions(ctx.db, ctx.pid)
    spent = effort.collect(ctx.client, ctx.db, ctx.pid, ctx.spec, settings.control_share)
    path = write_report(rows, out or settings.data_dir.report_dir(ctx.pid), ctx.project.title, stopping_report(rows), spent, ctx=ctx)
    click.echo(f"wrote {path}")


@click.command()
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help="JSONL with gold labels: {id, text, spans} or {id, text, label}.")
@click.option("--schema", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help="Labeling config XML.")
@click.option("--strategy", "strategies", multiple=True, default=("least_confidence", "margin", "entropy", "random"), show_default=True, help="Repeat for several.")
@click.option("--self-training", is_flag=True, help="Add confident pseudo-labels each round.")
@click.option("--self-training-only", is_flag=True,
              help="Run only the self-training variants (implies --self-training), when the plain curves are on record.")
@click.option("--seed-size", type=int, default=20, show_default=True)
@click.option("--batch-size", type=int, default=20, show_default=True)
@click.option("--rounds", type=int, default=10, show_default=True)
@click.option("--random-rounds", type=click.IntRange(min=0), default=None,
              help="Rounds for random's curve (default: --rounds): more, so the ratio to random resolves when random is slow to reach 95%.")
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--query-model", type=click.Choice(["auto", "tfidf_lr", "encoder_lr", "finetune"]), default="auto", show_default=True,
              help="finetune: the loop's own fine-tuned model every round (minutes per round); the others refit in well under a second.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Result JSON (a PNG curve is written beside it).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--mlm-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Domain-adaptive MLM steps on the pool's texts before the encoder's features (encoder_lr only).")
@click.option("--self-training-threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=None,
              help="Pseudo-label confidence threshold [default: tfidf_lr 0.7, encoder_lr 0.8, finetune the loop's 0.9].")
@click.option("--self-training-weight", type=click.FloatRange(0.0, min_open=True), default=None,
              help="Pseudo-labels' sample weight [default: 0.3; finetune the loop's 1.0].")
@click.option("--device", default=None, help="auto (CUDA when torch sees one, else the CPU), cpu, cuda or cuda:N (default $GOLDLOOP_DEVICE or auto).")
def simulate(data, schema, strategies, self_training, self_training_only, seed_size, batch_size, rounds, random_rounds, repeats, query_model, out, seed, mlm_steps,
             self_training_threshold, self_training_weight, device):
    """Simulate active learning offline against gold labels: learning curves and labels-to-95%."""
    from ml_backend.models.torch_utils import set_process_precision

    from .simulate import run_simulation, summary_table

    settings = settings_for(None, device=device)
    set_process_precision(settings.precision)
    result = run_simulation(data, schema, list(strategies), self_training=self_training,
                            self_training_only=self_training_only, seed_size=seed_size, batch_size=batch_size,
                            rounds=rounds, random_rounds=random_rounds, repeats=repeats, query_model=query_model, out=out, seed=seed, mlm_steps=mlm_steps,
                            self_training_threshold=self_training_threshold, self_training_weight=self_training_weight,
                            device=settings.device, encoder_cache=settings.data_dir.encoders)
    click.echo(summary_table(result))
    click.echo(f"wrote {out}")


COMMANDS = (train, versions, report, simulate)
