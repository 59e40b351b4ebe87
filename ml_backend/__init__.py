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
    """Build the Flask app. `trainer(project, event)` runs in a background thread on START_TRAINING.

    BackendConfigError when basic auth is configured without a strong enough password (``auth.check_basic_auth``).
    """
    from flask import Flask, request

    from . import auth, http_errors, ids
    from .errors import DisallowedHost
    from .routes import MAX_BODY_BYTES, bp
    from .state import BackendState

    if not isinstance(settings, BackendSettings):
        raise TypeError(f"create_app needs BackendSettings (server.config.Settings.backend_settings()), got {type(settings).__name__}")
    if test_config:
        settings = settings.with_overrides(**test_config)
    auth.check_basic_auth(settings.basic_auth_user, settings.basic_auth_pass)  # never serve behind an empty password
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["goldloop"] = BackendState(settings, trainer)
    http_errors.register(app)

    @app.before_request  # registered before the Blueprint's hooks: a refused Host reaches no auth and no route
    def _check_host():
        header = request.headers.get("Host")
        if not auth.host_allowed(header, settings.allowed_hosts):
            raise DisallowedHost(f"Host header {ids.shown(header)} names no allowed host of this backend: expected a "
                                 "loopback name or one of its allowed hosts (the allowed_hosts setting)")

    app.register_blueprint(bp)
    return app
