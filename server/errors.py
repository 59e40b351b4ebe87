"""Server-side exceptions: one base class; the CLI turns each into a one-line message."""
from __future__ import annotations


class ServerError(Exception):
    """Base class of every goldloop server error (shown to the user as one line)."""


class ConfigError(ServerError):
    """A setting or a schema file is unusable."""


class StackError(ServerError):
    """Label Studio or the backend cannot be started, reached or stopped."""


class LabelStudioError(ServerError):
    """Label Studio refused or failed a request."""


class ProjectNotFound(ServerError):
    """No project matches the given id or schema name."""


class IngestError(ServerError):
    """A document file cannot be read or imported."""


class ExportError(ServerError):
    """A gold dataset cannot be exported."""


class LoopError(ServerError):
    """An active-learning round cannot run."""


class ScoreError(ServerError):
    """An export or a predictions file cannot be scored."""
