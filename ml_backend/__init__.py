"""goldloop ML backend: Label Studio's ML backend protocol over goldloop's models.

Use the app factory: ``create_app(settings, trainer=None)``. Nothing heavy happens at import time.
`settings` is any object with the fields of ``server.config.Settings`` (the backend never imports
``server``: the dependency goes one way).
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["create_app"]

Trainer = Callable[[str, dict], Any]


def create_app(settings, trainer: "Trainer | None" = None, test_config: dict | None = None):
    """Build the Flask app. `trainer(project, event)` runs in a background thread on START_TRAINING."""
    from flask import Flask

    from . import errors, routes
    from .state import BackendState

    if settings is None:
        raise TypeError("create_app needs settings (server.config.Settings.from_env() gives the defaults)")
    if test_config:
        settings = settings.with_overrides(**test_config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024
    app.extensions["goldloop"] = BackendState(settings, trainer)
    errors.register(app)
    routes.register(app)
    return app
