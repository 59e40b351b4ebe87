"""goldloop command line: click commands only — parse, call, map errors to one-line messages."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from .config import Settings
from .errors import ServerError


class _Group(click.Group):
    """Turns every goldloop error into a one-line message and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ServerError as exc:
            raise click.ClickException(str(exc)) from None
        except (ValueError, OSError) as exc:
            if ctx.obj is not None and ctx.obj.get("debug"):
                raise
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="goldloop data dir (default: $GOLDLOOP_HOME or ~/.goldloop).",
)


def settings_for(data_dir: Path | None, **overrides) -> Settings:
    """Settings from the environment, with the command's options on top."""
    if data_dir is not None:
        overrides["home"] = Path(data_dir).expanduser().resolve()
    return Settings.from_env(**overrides)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show tracebacks (for reporting bugs).")
@click.pass_context
def main(ctx, debug):
    """goldloop: documents → gold training data → better domain models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=9090, show_default=True, type=int, help="Port to listen on.")
@click.option("--model", "model_name", default=None, help="Hugging Face model id or local path of the encoder.")
@click.option("--quantize", type=click.Choice(["none", "int8"]), default=None, help="Serve an int8 dynamic-quantized model.")
@click.option("--threads", type=int, default=None, help="WSGI worker threads (default 8).")
def backend(data_dir, host, port, model_name, quantize, threads):
    """Serve the ML backend (Label Studio's ML backend protocol) with waitress."""
    from ml_backend import create_app  # heavy imports only when serving

    import waitress

    settings = settings_for(data_dir, model_name=model_name, quantize=quantize, host=host, backend_port=port)
    app = create_app(settings)
    click.echo(f"goldloop backend on http://{host}:{port} (model {settings.model}, quantize {settings.quantize})")
    waitress.serve(app, host=host, port=port, threads=threads or 8, ident="goldloop")


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
    from . import stack, store

    if not create and not settings.db_path.exists():
        return None
    if create:
        stack.ensure_data_dir(settings.home)
    return store.open_db(settings.db_path)


@main.command()
@data_dir_option
@click.option("--ls-port", type=int, default=None, help="Label Studio port (default 8080 or $GOLDLOOP_LS_PORT).")
@click.option("--backend-port", type=int, default=None, help="ML backend port (default 9090 or $GOLDLOOP_BACKEND_PORT).")
@click.option("--no-samples", is_flag=True, help="Do not import the sample documents.")
@click.option("--detach", is_flag=True, help="Return once the stack is ready and leave it running.")
def up(data_dir, ls_port, backend_port, no_samples, detach):
    """Start Label Studio + the ML backend, create one project per schema, import the samples."""
    from . import stack

    settings = settings_for(data_dir, ls_port=ls_port, backend_port=backend_port)
    db = _open_db(settings, create=True)
    try:
        result = stack.bring_up(settings, db, samples=not no_samples, progress=_progress_line, echo=_echo_after_progress)
    finally:
        _end_progress()
    info = result.info
    default_pw = settings.admin_password == type(settings)().admin_password
    password = f"password {settings.admin_password} (default; set GOLDLOOP_ADMIN_PASSWORD to change)" if default_pw else "password from $GOLDLOOP_ADMIN_PASSWORD"
    for line in (
        f"Label Studio  {info.ls_url}   (pid {info.ls_pid})",
        f"  login       {settings.admin_email}, {password}",
        f"ML backend    {info.backend_url}   (pid {info.backend_pid})",
        f"data dir      {info.data_dir}",
        f"  API token   {info.token_path}",
        f"  logs        {info.ls_log.parent}",
        f"  state       {settings.db_path}",
    ):
        click.echo(line)
    if not info.started:
        click.echo("the stack was already running: projects synced; stop it with: goldloop down" + (f" --data-dir {data_dir}" if data_dir else ""))
        return
    if detach:
        click.echo("running in the background; stop it with: goldloop down" + (f" --data-dir {data_dir}" if data_dir else ""))
        return
    click.echo("press Ctrl-C to stop")
    reason = stack.supervise(settings, db, info)
    click.echo(f"stopped ({reason})")
    if reason != "interrupted":
        raise click.ClickException(reason)


@main.command()
@data_dir_option
def down(data_dir):
    """Stop Label Studio and the ML backend started by `goldloop up --detach`."""
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
    import json

    from . import ls_client, stack
    from .errors import ServerError

    settings = settings_for(data_dir)
    db = _open_db(settings, create=False)
    processes = stack.process_status(db) if db is not None else []
    ls_row = next((p for p in processes if p["name"] == stack.LABEL_STUDIO), None)
    out = {"data_dir": str(settings.home), "label_studio_url": ls_row["url"] if ls_row else None, "processes": processes, "projects": [], "error": None}
    if ls_row and ls_row["healthy"]:
        try:
            client = ls_client.connect(settings.with_overrides(ls_url=ls_row["url"]), db)
            out["projects"] = ls_client.project_summaries(client, db)
        except ServerError as exc:
            out["error"] = str(exc)
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    if not processes:
        click.echo(f"nothing running from {settings.home} (start it with: goldloop up)")
        return
    click.echo(f"data dir {settings.home}")
    for p in processes:
        state = "healthy" if p["healthy"] else ("alive, not answering" if p["alive"] else "dead")
        click.echo(f"  {p['name']:<13} pid {p['pid']:<8} port {p['port']:<6} {state:<21} {p['url']}")
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


@main.command("import")
@data_dir_option
@click.argument("project")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--min-chars", type=int, default=None, help="Drop documents shorter than this (after cleaning).")
@click.option("--mask-pii/--no-mask-pii", default=None, help="Mask e-mails, phones, record numbers… (default: per schema).")
@click.option("--text-column", default=None, help="CSV/JSONL field holding the text (default: the project's text field).")
@click.option("--no-predict", is_flag=True, help="Do not pre-annotate the new tasks.")
def import_(data_dir, project, paths, min_chars, mask_pii, text_column, no_predict):
    """Import documents (.jsonl, .json, .csv, .txt files or folders) into a project: clean, deduplicate, pre-annotate.

    PROJECT is a Label Studio project id or a schema name (e.g. medical_records).
    """
    from . import ls_client

    settings = settings_for(data_dir)
    db = _open_db(settings, create=True)
    client = ls_client.connect(settings, db)
    outcome = ls_client.import_files(
        client, settings, db, project, list(paths), min_chars=min_chars, mask_pii=mask_pii, text_column=text_column,
        pre_annotate=not no_predict,
    )  # fmt: skip
    for line in outcome.summary_lines():
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
