"""Shared pieces of the goldloop commands (server.cli, server.cli_models): the --data-dir option, the settings
a command runs with, the training options it passes on."""
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


def train_options(**kw):
    """TrainOptions from the options given; those left unset (None) keep their defaults."""
    from ml_backend.training import TrainOptions

    return TrainOptions(**{k: v for k, v in kw.items() if v is not None})
