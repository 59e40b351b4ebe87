"""Backend exceptions: one base class, a status code each. Flask-free; ``http_errors`` maps them to responses."""
from __future__ import annotations


class GoldloopError(Exception):
    """Base class of every goldloop backend error."""

    status = 400


class BadRequest(GoldloopError):
    """The request body is not what the protocol expects."""


class SchemaError(BadRequest):
    """The labeling config cannot be used (not XML, no supported control)."""


class TextError(BadRequest):
    """A task's text is missing, empty, not a string or too long."""


class DisallowedHost(BadRequest):
    """The request's Host header names no host this backend answers for (a DNS-rebinding guard)."""


class BackendConfigError(GoldloopError):
    """The backend's settings cannot serve safely (basic auth without a strong enough password)."""

    status = 500


class Unauthorized(GoldloopError):
    """Missing or wrong HTTP basic auth credentials."""

    status = 401


class NotFound(GoldloopError):
    """A model version or project does not exist."""

    status = 404


class TrainingError(GoldloopError):
    """A training run cannot start or failed (no labels, one class, ...)."""

    status = 422


class UnsupportedMediaType(BadRequest):
    """The request body is not sent as application/json."""

    status = 415


class LimitExceeded(BadRequest):
    """A request asks for more than a stated bound allows (controls, labels, project ids)."""


class UnsafePath(BadRequest):
    """A name would place a file outside its root directory."""


class EncoderError(TrainingError):
    """An encoder cannot be built or chosen (package missing, unreadable model file)."""
