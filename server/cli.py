"""goldloop command line: the group, its error handling and its help by area. The commands live in one module per
area (cli_stack, cli_data, cli_loop, cli_models): each parses its options, calls the library, prints the outcome."""
from __future__ import annotations

import faulthandler
import logging
import signal
import sys

import click

from ml_backend.errors import GoldloopError

from . import cli_data, cli_llm, cli_loop, cli_models, cli_stack
from .errors import ServerError

# `goldloop --help` lists the commands under these headings, in this order
SECTIONS = (
    ("Stack", cli_stack.COMMANDS),
    ("Documents and gold data", cli_data.COMMANDS),
    ("Active learning", cli_loop.COMMANDS),
    ("Models", cli_models.COMMANDS),
    ("LLM pre-annotation", cli_llm.COMMANDS),
)


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

    def format_commands(self, ctx, formatter):
        """The commands by area (SECTIONS) rather than one alphabetical list."""
        width = formatter.width - 6 - max(len(c.name) for _, cmds in SECTIONS for c in cmds)
        for title, commands in SECTIONS:
            rows = [(c.name, c.get_short_help_str(width)) for c in commands if not c.hidden]
            with formatter.section(title):
                formatter.write_dl(rows)


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


for _title, _commands in SECTIONS:
    for _command in _commands:
        main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
