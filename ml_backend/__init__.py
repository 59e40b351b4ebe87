"""goldloop ML backend: Label Studio's ML backend protocol over goldloop's models.

Use the app factory: ``create_app(settings, trainer=None)``. Nothing heavy happens at import time.
`settings` is a ``BackendSettings`` (``server.config.Settings.backend_settings()`` fills it: the backend
never imports ``server``, the dependency goes one way).
Several worker processes: ``ml_backend.wsgi`` builds one app per gunicorn worker from the environment; the
workers share promotions, online learning and the training queue through the models dir, and /metrics.
"""
from __future__ import annotations

from typing import Any, Callable

from .settings import BackendSettings

__all__ = ["create_app", "BackendSettings"]

Trainer = Callable[[str, dict], Any]


def create_app(settings: BackendSettings, trainer: "Trainer | None" = None, test_config: dict | None = None):
    """Build the Flask app. `trainer(project, event)` runs in a background thread on START_TRAINING."""
    from flask import Flask

    from . import http_errors
    from .routes import MAX_BODY_BYTES, bp
    from .state import BackendState

    if not isinstance(settings, BackendSettings):
        raise TypeError(f"create_app needs BackendSettings (server.config.Settings.backend_settings()), got {type(settings).__name__}")
    if test_config:
        settings = settings.with_overrides(**test_config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["goldloop"] = BackendState(settings, trainer)
    http_errors.register(app)
    app.register_blueprint(bp)
    return app
