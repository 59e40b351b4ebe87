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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
