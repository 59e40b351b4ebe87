"""Shared pieces of the goldloop commands (server.cli and its command modules): the --data-dir option, the settings
a command runs with, the training options it passes on, the data dir's database, status lines and --json output."""
from __future__ import annotations

from pathlib import Path

import click

from .config import Settings


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


def step_floor(min_steps: int | None) -> dict:
    """The TrainOptions of `--min-steps N`: the step floor of document and span models alike ({} when not given)."""
    return {} if min_steps is None else {"min_steps": min_steps, "span_min_steps": min_steps}


_progress_state = {"open": False}


def progress_line(message: str) -> None:
    """Rewrite one status line on stderr (health waits)."""
    click.echo(f"\r{message:<78}", nl=False, err=True)
    _progress_state["open"] = True


def end_progress() -> None:
    """Finish the status line so that what follows starts on a fresh line."""
    if _progress_state["open"]:
        click.echo("", err=True)
        _progress_state["open"] = False


def echo_after_progress(message: str) -> None:
    """click.echo, after closing an open status line."""
    end_progress()
    click.echo(message)


def open_db(settings, create: bool):
    """The data dir's database; None when it does not exist and create is False."""
    from . import store

    data_dir = settings.data_dir
    if not create and not data_dir.db_path.exists():
        return None
    if create:
        data_dir.ensure()
    return store.open_db(data_dir.db_path)


def echo_json_or_empty(payload, as_json: bool, empty: bool, empty_message: str) -> bool:
    """Print payload as JSON (--json) or empty_message when there is nothing to list; True when that was all."""
    import json

    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
        return True
    if empty:
        click.echo(empty_message)
        return True
    return False
