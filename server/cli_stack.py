"""goldloop stack commands: up, down, status, backend, migrate-db (the local Label Studio + ML backend)."""
from __future__ import annotations

import click

from .cli_base import data_dir_option, echo_after_progress, echo_json_or_empty, end_progress, open_db, progress_line, settings_for


@click.command()
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
    db = open_db(settings, create=True)
    try:
        result = bring_up(settings, db, samples=not no_samples, progress=progress_line, echo=echo_after_progress,
                          switch_database=switch_database)
    finally:
        end_progress()
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


@click.command()
@data_dir_option
def down(data_dir):
    """Stop every process `goldloop up` started for the data dir: Label Studio, the ML backend, the starter training."""
    from . import stack

    settings = settings_for(data_dir)
    db = open_db(settings, create=False)
    stopped = stack.stop_stack(settings, db) if db is not None else []
    if not stopped:
        click.echo(f"nothing running from {settings.home}")
    for row in stopped:
        state = "stopped" if row["was_alive"] else "was not running"
        click.echo(f"{row['name']:<13} pid {row['pid']:<8} {state}")


@click.command()
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(data_dir, as_json):
    """Show the processes, the Label Studio URL and the projects with their counts."""
    from .up import status_report

    settings = settings_for(data_dir)
    out = status_report(settings, open_db(settings, create=False))
    processes = out["processes"]
    if echo_json_or_empty(out, as_json, not processes, f"nothing running from {settings.home} (start it with: goldloop up)"):
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


@click.command()
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
    from .serving import serve

    settings = settings_for(data_dir, model_name=model_name, quantize=quantize, host=host, backend_port=port, device=device,
                            backend_workers=workers)
    serve(settings, host, port, threads, insecure, echo=click.echo)


@click.command("migrate-db")
@data_dir_option
@click.option("--to", "target", required=True, metavar="URL", help="The database to move to: postgresql://USER:PASSWORD@HOST:PORT/NAME (fresh, empty).")
def migrate_db(data_dir, target):
    """Move Label Studio's projects, tasks, annotations and predictions to another database (stack stopped)."""
    from .dbmove import migrate

    settings = settings_for(data_dir)
    db = open_db(settings, create=False)
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


COMMANDS = (up, down, status, backend, migrate_db)
