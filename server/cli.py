"""goldloop command line: click commands only — parse, call, map errors to one-line messages."""
from __future__ import annotations

import faulthandler
import logging
import signal
import sys
from pathlib import Path

import click

from ml_backend.errors import GoldloopError
from ml_backend.sampling import STRATEGIES

from . import cli_models
from .cli_base import data_dir_option, settings_for, train_options
from .config import Settings
from .errors import ServerError


class _Group(click.Group):
    """Turns every goldloop error into a one-line message and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ServerError as exc:
            raise click.ClickException(str(exc)) from None
        except GoldloopError as exc:  # the model core's errors (a labeling config, a text) reach commands too
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
        except (ValueError, OSError) as exc:
            if ctx.obj is not None and ctx.obj.get("debug"):
                raise
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show tracebacks (for reporting bugs).")
@click.pass_context
def main(ctx, debug):
    """goldloop: documents → gold training data → better domain models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if hasattr(signal, "SIGUSR1") and sys.__stderr__ is not None:
        # `kill -USR1 PID` prints every thread's stack to the process's stderr: for diagnosing a hang
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=9090, show_default=True, type=int, help="Port to listen on.")
@click.option("--model", "model_name", default=None, help="Hugging Face model id or local path of the encoder.")
@click.option("--quantize", type=click.Choice(["none", "int8", "int8-torch", "bf16"]), default=None,
              help="int8: ONNX Runtime int8 (fastest on CPU); int8-torch: PyTorch dynamic int8; bf16: bfloat16.")
@click.option("--threads", type=int, default=None, help="WSGI threads per worker process (default 8).")
@click.option("--device", default=None, help="auto (CUDA when torch sees one, else the CPU), cpu, cuda or cuda:N (default $GOLDLOOP_DEVICE or auto).")
@click.option("--insecure", is_flag=True, help="Serve on a non-loopback --host without basic auth (warns: anyone who reaches it may use it).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes (default 1 or $GOLDLOOP_BACKEND_WORKERS); above 1 gunicorn serves, one training job per project for all.")
def backend(data_dir, host, port, model_name, quantize, threads, device, insecure, workers):
    """Serve the ML backend (Label Studio's ML backend protocol): waitress, or gunicorn with --workers N > 1."""
    import os

    settings = settings_for(data_dir, model_name=model_name, quantize=quantize, host=host, backend_port=port, device=device,
                            backend_workers=workers)
    _check_backend_access(settings, host, port, insecure)
    if settings.backend_workers < 1:
        raise click.ClickException(f"GOLDLOOP_BACKEND_WORKERS must be 1 or more, got {settings.backend_workers}")
    if settings.backend_workers > 1:
        _exec_gunicorn(settings, host, port, threads or 8)  # does not return
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # one process: its own metrics, as they always were
    from ml_backend import create_app  # heavy imports only when serving

    import waitress

    app = create_app(settings.backend_settings())
    if settings.ls_url and settings.ls_api_key:
        # START_TRAINING runs a full round server-side, promoting into this process's registry
        from .loop import backend_trainer

        app.extensions["goldloop"].trainer = backend_trainer(settings)
    click.echo(f"goldloop backend on http://{host}:{port} (model {settings.model}, quantize {settings.quantize}, "
               f"device {app.extensions['goldloop'].device})")
    waitress.serve(app, host=host, port=port, threads=threads or 8, ident="goldloop")


def _exec_gunicorn(settings: Settings, host: str, port: int, threads: int) -> None:
    """Become a gunicorn master (the same pid: `goldloop down` and `goldloop status` find it) serving
    settings.backend_workers processes of ml_backend.wsgi; each rebuilds the settings from the environment."""
    import importlib.util
    import os

    from ml_backend import wsgi

    from .config import ENV_DEVICE, ENV_HOME, ENV_MODEL, ENV_QUANTIZE

    if importlib.util.find_spec("gunicorn") is None:
        raise click.ClickException("--workers above 1 needs gunicorn: pip install gunicorn")
    n = settings.backend_workers
    backend = settings.backend_settings()
    if not backend.threads:  # torch threads: the cores shared among the workers, not every core for each
        backend = backend.with_overrides(threads=max(1, len(os.sched_getaffinity(0)) // n))
    env = {**os.environ, **wsgi.settings_to_env(backend), ENV_HOME: str(settings.home), ENV_MODEL: settings.model_name,
           ENV_QUANTIZE: settings.quantize, ENV_DEVICE: settings.device}
    if settings.ls_url and settings.ls_api_key:
        env.setdefault(wsgi.ENV_TRAINER, "server.cli:worker_trainer")
    click.echo(f"goldloop backend on http://{host}:{port}: {n} gunicorn workers x {threads} threads (model {settings.model}, "
               f"quantize {settings.quantize}, {backend.threads} torch threads each)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "gunicorn", *wsgi.gunicorn_args(host, port, n, threads)], env)


def worker_trainer():
    """The START_TRAINING trainer of one gunicorn worker (``GOLDLOOP_BACKEND_TRAINER=server.cli:worker_trainer``,
    read by ml_backend.wsgi): the `goldloop train` round the one-process backend runs, or None without Label Studio."""
    settings = Settings.from_env()
    if not (settings.ls_url and settings.ls_api_key):
        return None
    from .loop import backend_trainer

    return backend_trainer(settings)


def _check_backend_access(settings: Settings, host: str, port: int, insecure: bool) -> None:
    """Refuse basic auth without a strong password and a public --host without auth (unless --insecure, then warn
    loudly); say which Host names a public backend answers."""
    from ml_backend.auth import ANY_HOST, check_basic_auth, is_loopback
    from ml_backend.errors import BackendConfigError

    from .config import ENV_ALLOWED_HOSTS, ENV_BASIC_AUTH_PASS, ENV_BASIC_AUTH_USER

    try:
        check_basic_auth(settings.basic_auth_user, settings.basic_auth_pass, ENV_BASIC_AUTH_USER, ENV_BASIC_AUTH_PASS)
    except BackendConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if is_loopback(host):
        return
    if not settings.basic_auth_user:
        if not insecure:
            raise click.ClickException(f"--host {host} is reachable from other machines: set {ENV_BASIC_AUTH_USER} and "
                                       f"{ENV_BASIC_AUTH_PASS}, or pass --insecure")
        warning = (f"--insecure: the backend on {host}:{port} has no authentication and is reachable from other machines: "
                   "anyone who reaches it can predict, train and read model versions")
        logging.getLogger(__name__).warning(warning)
        click.echo(f"WARNING: {warning}", err=True)
    allowed = settings.backend_settings().allowed_hosts
    if ANY_HOST not in allowed:
        names = ", ".join(("loopback names", *allowed))
        click.echo(f"the backend answers requests addressed to {names} only; set {ENV_ALLOWED_HOSTS} to the names "
                   f"other machines use (comma-separated, or {ANY_HOST})", err=True)


_progress_state = {"open": False}


def _progress_line(message: str) -> None:
    """Rewrite one status line on stderr (health waits)."""
    click.echo(f"\r{message:<78}", nl=False, err=True)
    _progress_state["open"] = True


def _end_progress() -> None:
    """Finish the status line so that what follows starts on a fresh line."""
    if _progress_state["open"]:
        click.echo("", err=True)
        _progress_state["open"] = False


def _echo_after_progress(message: str) -> None:
    """click.echo, after closing an open status line."""
    _end_progress()
    click.echo(message)


def _open_db(settings, create: bool):
    """The data dir's database; None when it does not exist and create is False."""
    from . import store

    data_dir = settings.data_dir
    if not create and not data_dir.db_path.exists():
        return None
    if create:
        data_dir.ensure()
    return store.open_db(data_dir.db_path)


def _echo_json_or_empty(payload, as_json: bool, empty: bool, empty_message: str) -> bool:
    """Print payload as JSON (--json) or empty_message when there is nothing to list; True when that was all."""
    import json

    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
        return True
    if empty:
        click.echo(empty_message)
        return True
    return False


@main.command()
@data_dir_option
@click.option("--ls-port", type=int, default=None, help="Label Studio port (default 8080 or $GOLDLOOP_LS_PORT).")
@click.option("--backend-port", type=int, default=None, help="ML backend port (default 9090 or $GOLDLOOP_BACKEND_PORT).")
@click.option("--no-samples", is_flag=True, help="Do not import the sample documents.")
@click.option("--detach", is_flag=True, help="Return once the stack is ready and leave it running.")
@click.option("--database", "database_url", default=None, metavar="URL",
              help="Label Studio's database: sqlite (default) or postgresql://USER:PASSWORD@HOST:PORT/NAME "
                   "(default $GOLDLOOP_DATABASE_URL, else the data dir's last one).")
@click.option("--switch-database", is_flag=True, help="Start an existing data dir on another database (its projects stay behind).")
@click.option("--backend-workers", type=click.IntRange(1, 64), default=None,
              help="ML backend worker processes (default 1 or $GOLDLOOP_BACKEND_WORKERS; about 0.5 GB each).")
@click.option("--no-starters", is_flag=True, help="Do not train the starter sets in the background (or GOLDLOOP_STARTERS=0).")
def up(data_dir, ls_port, backend_port, no_samples, detach, database_url, switch_database, backend_workers, no_starters):
    """Start Label Studio + the ML backend, create one project per schema, import the samples."""
    from . import stack
    from .up import bring_up

    settings = settings_for(data_dir, ls_port=ls_port, backend_port=backend_port, database_url=database_url,
                            backend_workers=backend_workers, starters=False if no_starters else None)
    db = _open_db(settings, create=True)
    try:
        result = bring_up(settings, db, samples=not no_samples, progress=_progress_line, echo=_echo_after_progress,
                          switch_database=switch_database)
    finally:
        _end_progress()
    info = result.info
    for line in (
        f"Label Studio  {info.ls_url}   (pid {info.ls_pid})",
        f"  login       {result.login}",
        f"ML backend    {info.backend_url}   (pid {info.backend_pid})",
        f"data dir      {info.data_dir}",
        f"  database    {result.database}",
        f"  API token   {info.token_path}",
        f"  logs        {info.ls_log.parent}",
        f"  state       {settings.data_dir.db_path}",
        f"starter sets  {result.starters}",
    ):
        click.echo(line)
    if not info.started:
        asked = [(ls_port, info.ls_url), (backend_port, info.backend_url)]
        if any(port and not url.endswith(f":{port}") for port, url in asked):
            click.echo("note: the ports given were ignored: the stack already runs on the ports above")
        click.echo("the stack was already running: projects synced; stop it with: goldloop down" + (f" --data-dir {data_dir}" if data_dir else ""))
        return
    if detach:
        click.echo("running in the background; stop it with: goldloop down" + (f" --data-dir {data_dir}" if data_dir else ""))
        return
    click.echo("press Ctrl-C to stop")
    reason = stack.supervise(settings, db, info)
    if reason not in ("interrupted", stack.STOPPED_BY_DOWN):
        raise click.ClickException(f"stopped: {reason}")
    click.echo(f"stopped ({reason})")


@main.command()
@data_dir_option
def down(data_dir):
    """Stop every process `goldloop up` started for the data dir: Label Studio, the ML backend, the starter training."""
    from . import stack

    settings = settings_for(data_dir)
    db = _open_db(settings, create=False)
    stopped = stack.stop_stack(settings, db) if db is not None else []
    if not stopped:
        click.echo(f"nothing running from {settings.home}")
    for row in stopped:
        state = "stopped" if row["was_alive"] else "was not running"
        click.echo(f"{row['name']:<13} pid {row['pid']:<8} {state}")


@main.command()
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(data_dir, as_json):
    """Show the processes, the Label Studio URL and the projects with their counts."""
    from .up import status_report

    settings = settings_for(data_dir)
    out = status_report(settings, _open_db(settings, create=False))
    processes = out["processes"]
    if _echo_json_or_empty(out, as_json, not processes, f"nothing running from {settings.home} (start it with: goldloop up)"):
        return
    click.echo(f"data dir {settings.home}")
    click.echo(f"  database      {out['database']}")
    for p in processes:
        state = "healthy" if p["healthy"] else ("alive, not answering" if p["alive"] else "dead")
        device = f"  device {p['device']}" if p.get("device") else ""
        click.echo(f"  {p['name']:<13} pid {p['pid']:<8} port {p['port']:<6} {state:<21} {p['url']}{device}")
    if out["error"]:
        click.echo(f"  projects unavailable: {out['error']}")
    if out["projects"]:
        click.echo(f"projects ({out['label_studio_url']})")
        click.echo(f"  {'id':>4}  {'schema':<18} {'tasks':>6} {'annot.':>6} {'pred.':>6}  {'model version':<20} title")
        for p in out["projects"]:
            click.echo(
                f"  {p['id']:>4}  {str(p['schema'] or '-'):<18} {p['tasks']:>6} {p['annotations']:>6} {p['predictions']:>6}  "
                f"{p['model_version'] or '-':<20} {p['title']}"
            )
        for p in out["projects"]:
            if p.get("starter"):
                click.echo(f"  project {p['id']}: {p['starter']}")
            stop = p.get("stopping") or {}
            if stop.get("pool_agreement") is not None:
                click.echo(f"  project {p['id']}: {'labels stopped paying' if stop['stop'] else 'labels still pay'} — {stop['reason']} "
                           f"(pool agreement {stop['pool_agreement']:.3f}, gain per 100 labels {stop.get('metric_gain_per_100_labels')})")


@main.command("migrate-db")
@data_dir_option
@click.option("--to", "target", required=True, metavar="URL", help="The database to move to: postgresql://USER:PASSWORD@HOST:PORT/NAME (fresh, empty).")
def migrate_db(data_dir, target):
    """Move Label Studio's projects, tasks, annotations and predictions to another database (stack stopped)."""
    from .dbmove import migrate

    settings = settings_for(data_dir)
    db = _open_db(settings, create=False)
    if db is None:
        raise click.ClickException(f"no goldloop data dir at {settings.home}; nothing to move")
    result = migrate(settings, db, target, echo=click.echo)
    click.echo(f"moved {len(result.projects)} project(s), {sum(m.tasks for m in result.projects)} task(s), "
               f"{sum(m.annotations for m in result.projects)} annotation(s), {sum(m.predictions for m in result.projects)} "
               f"prediction(s) from {result.source} to {result.target}, {result.users_created} user(s) created; verified")
    click.echo(f"  start {result.seconds_start:.0f} s, copy {result.seconds_copy:.0f} s, verify {result.seconds_verify:.0f} s")
    for m in result.projects:
        for url in m.ml_backends_down:
            click.echo(f"  project {m.id}: ML backend {url} did not answer; goldloop up connects its own backend again, "
                       "connect any other one in Label Studio's project settings")
    click.echo("the data dir now starts on it: goldloop up" + (f" --data-dir {data_dir}" if data_dir else ""))


@main.command("import")
@data_dir_option
@click.argument("project")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--min-chars", type=int, default=None, help="Drop documents shorter than this (after cleaning).")
@click.option("--mask-pii/--no-mask-pii", default=None,
              help="De-identify: names, IDs, phones, e-mails, dates, record numbers… → [NAME], [ID] … (default: per schema).")
@click.option("--pseudonymize", is_flag=True, help="With masking: consistent fake names per document instead of [NAME].")
@click.option("--shift-dates", is_flag=True, help="With masking: move every date of a document by one offset (±1-365 days, per document).")
@click.option("--text-column", default=None, help="CSV/JSONL field holding the text (default: the project's text field).")
@click.option("--no-predict", is_flag=True, help="Do not pre-annotate the new tasks.")
@click.option("--review-pii", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="With masking: write the spans it could not decide on (left unmasked) to this JSON Lines file for a "
                   "person to check. The file holds personal data by design (the original text around each span): "
                   "written with mode 0600, never logged; keep it private and delete it once reviewed.")
def import_(data_dir, project, paths, min_chars, mask_pii, pseudonymize, shift_dates, text_column, no_predict,
            review_pii):
    """Import documents (.jsonl, .json, .csv, .txt files or folders) into a project: clean, deduplicate, pre-annotate.

    PROJECT is a Label Studio project id or a schema name (e.g. medical_records).
    """
    from . import ls_client
    from .importer import import_files
    from .starters import after_import

    settings = settings_for(data_dir)
    db = _open_db(settings, create=True)
    client = ls_client.connect(settings, db)
    outcome = import_files(
        client, settings, db, project, list(paths), min_chars=min_chars, mask_pii=mask_pii, pseudonymize=pseudonymize,
        shift_dates=shift_dates, text_column=text_column,
        pre_annotate=not no_predict, review_pii=review_pii,
    )  # fmt: skip
    for line in outcome.summary_lines():
        click.echo(line)
    starter = after_import(settings, db, outcome.project_id)  # a missing or failed starter set trains now
    if starter:
        click.echo(f"starter set: {starter}")


@main.command()
@data_dir_option
@click.argument("project")
@click.option("--strategy", type=click.Choice(list(STRATEGIES)), default="least_confidence", show_default=True, help="How the queue is ordered after a promotion.")
@click.option("--self-training/--no-self-training", default=False, help="Add confident pseudo-labels from the unlabeled pool.")
@click.option("--epochs", type=int, default=None, help="Fine-tuning epochs (early stopping on the dev split).")
@click.option("--freeze-layers", type=int, default=None, help="Freeze the lowest N encoder layers.")
@click.option("--span-layers", type=click.IntRange(min=0), default=None,
              help="Encoder layers a span model keeps, the lowest N (0: every layer) [default: the encoder's measured depth].")
@click.option("--mention-swap", type=click.FloatRange(0, 1), default=None,
              help="Each epoch, swap a span model's gold mentions with this probability for others of their label (0: off).")
@click.option("--lora", is_flag=True, default=None, help="Train LoRA adapters (peft) instead of all weights.")
@click.option("--tolerance", type=float, default=None, help="Promote unless the primary metric drops by more than this.")
@click.option("--mlm-steps", type=int, default=None, help="Domain-adaptive MLM steps on the unlabeled pool before fine-tuning.")
@click.option("--device", default=None, help="auto (CUDA when torch sees one, else the CPU), cpu, cuda or cuda:N (default $GOLDLOOP_DEVICE or auto).")
@click.option("--trigger", default="cli", hidden=True, help="What started the round (recorded with the version).")
def train(data_dir, project, strategy, self_training, epochs, freeze_layers, span_layers, mention_swap, lora, tolerance, mlm_steps, device, trigger):
    """Run one active-learning round now: export labels, train, evaluate, gate, pre-annotate, reorder."""
    from .locks import EXIT_ROUND_RUNNING, RoundRunning
    from ml_backend.models.torch_utils import set_process_device

    from .loop import run_round

    settings = settings_for(data_dir, device=device)
    set_process_device(settings.device, settings.precision)  # the serving version this round compares with loads there too
    opts = train_options(cold_start_labels=settings.cold_start_labels, self_training=self_training, epochs=epochs, freeze_layers=freeze_layers,
                         span_encoder_layers=span_layers, span_mention_swap=mention_swap, lora=lora, tolerance=tolerance, mlm_steps=mlm_steps)
    try:
        rec = run_round(settings, project, options=opts, strategy=strategy, trigger=trigger)
    except RoundRunning as exc:
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_ROUND_RUNNING) from None
    click.echo(f"{rec['version']}: {rec['status']} — {rec.get('decision')}")
    if rec["status"] in ("failed", "not started"):
        raise click.exceptions.Exit(1)
    if rec["status"] == "promoted" and settings.distill_layers > 0:  # GOLDLOOP_DISTILL_LAYERS: a student follows each promotion
        from .distill import run_distill

        rec = run_distill(settings, project, layers=settings.distill_layers, trigger="auto-distill", strategy=strategy)
        click.echo(f"{rec['version']}: {rec['status']} — {rec.get('decision')}")


@main.command()
@data_dir_option
@click.argument("project")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def versions(data_dir, project, as_json):
    """List a project's model versions: metrics, data, decision."""
    from . import ls_client, store
    from .loop import stopping_report

    settings = settings_for(data_dir)
    db = store.open_db(settings.data_dir.db_path)
    pid = int(ls_client.resolve_project(ls_client.connect(settings, db), project, db).id)
    rows = store.list_versions(db, pid)
    stop = stopping_report(rows)
    if _echo_json_or_empty({"versions": rows, "stopping": stop}, as_json, not rows, f"project {pid}: no versions yet (goldloop train {project})"):
        return
    click.echo(f"{'version':<28}{'status':<12}{'labeled':>8}{'primary':>9}  {'encoder':<30}decision")
    for r in rows:
        primary = "" if r.get("primary") is None else f"{r['primary']:.4f}"
        encoder = Path(r.get("encoder") or "").name[:28]
        click.echo(f"{r['version']:<28}{r.get('status', ''):<12}{r.get('labeled_docs') or '':>8}{primary:>9}  {encoder:<30}{r.get('decision') or ''}")
    click.echo(f"stopping criterion: {'stop labeling' if stop['stop'] else 'keep labeling'} ({stop['reason']})")


@main.command()
@data_dir_option
@click.argument("project")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Folder for report.md and the PNGs.")
def report(data_dir, project, out):
    """Write a Markdown report of a project's versions and annotator time with PNG plots."""
    from ml_backend.schema import parse_label_config

    from . import effort, ls_client, store
    from .loop import stopping_report
    from .report import write_report

    settings = settings_for(data_dir)
    db = store.open_db(settings.data_dir.db_path)
    client = ls_client.connect(settings, db)
    proj = ls_client.resolve_project(client, project, db)
    rows = store.list_versions(db, int(proj.id))
    spent = effort.collect(client, db, int(proj.id), parse_label_config(proj.label_config), settings.control_share)
    path = write_report(rows, out or settings.data_dir.report_dir(proj.id), proj.title, stopping_report(rows), spent)
    click.echo(f"wrote {path}")


@main.command()
@data_dir_option
@click.argument("project")
@click.option("--format", "formats", default="jsonl,conll,hf,csv", show_default=True, help="Comma-separated: jsonl, conll, hf, csv, chat, instruction, preference.")
@click.option("--resolve", type=click.Choice(["majority", "latest", "ground-truth"]), default="majority", show_default=True, help="How conflicting annotations are resolved.")
@click.option("--only-reviewed", is_flag=True, help="Only tasks with an accepted review or a ground-truth annotation.")
@click.option("--check-labels", is_flag=True, help="Flag likely mislabeled documents (confident learning).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("exports"), show_default=True, help="Root folder of the versioned exports.")
@click.option("--template", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="jinja2 instruction template of the LLM formats [default: schemas/<schema>.prompt.md, else the built-in one].")
@click.option("--max-tokens", type=click.IntRange(min=16), default=2048, show_default=True, help="LLM formats: longer documents are cut at sentence boundaries.")
@click.option("--tokenizer", default=None, help="LLM formats: Hugging Face tokenizer (id or path, loaded offline) counting tokens [default: the encoder].")
def export(data_dir, project, formats, resolve, only_reviewed, check_labels, out, template, max_tokens, tokenizer):
    """Export a project's labels as a versioned gold dataset."""
    from ml_backend.schema import parse_label_config

    from . import __version__, ls_client, store
    from .export import ExportOptions, ProjectInfo, export_dataset, find_template
    from .loop import slugify
    from .schema_files import schemas_dir

    settings = settings_for(data_dir)
    db = store.open_db(settings.db_path)
    client = ls_client.connect(settings, db)
    proj = ls_client.resolve_project(client, project, db)
    row = store.get_project(db, int(proj.id)) or {}
    info = ProjectInfo(id=int(proj.id), slug=slugify(row.get("schema_name") or proj.title), title=proj.title, label_config=proj.label_config)
    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    options = ExportOptions(out, formats=fmts, resolve=resolve, only_reviewed=only_reviewed, check_labels=check_labels,
                            goldloop_version=__version__, total=proj.task_number, max_tokens=max_tokens, tokenizer=tokenizer,
                            template=find_template(row.get("schema_name"), schemas_dir(), template))
    res = export_dataset(ls_client.iter_tasks(client, int(proj.id)), parse_label_config(proj.label_config), info, options)
    click.echo(res.message)
    if res.version_dir:
        click.echo(f"version: {res.version_dir}")


@main.command()
@data_dir_option
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("predictions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["train", "dev", "test"]), default="test", show_default=True, help="Split of the export to score on.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON instead of Markdown.")
def score(data_dir, export_dir, predictions, split, as_json):
    """Score an LLM's answers ({"id", "output"} per line) against an export's gold split (reads no data dir)."""
    import json

    from .score import markdown, score_predictions

    result = score_predictions(export_dir, predictions, split)
    click.echo(json.dumps(result, indent=2, ensure_ascii=False) if as_json else markdown(result))


@main.command()
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


for _command in cli_models.COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
