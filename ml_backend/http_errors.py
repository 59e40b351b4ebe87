"""Exceptions → JSON responses: 4xx for bad input, never a traceback."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from .errors import GoldloopError

log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    """Map every exception to a JSON body; unexpected errors become a 500 with no traceback."""

    @app.errorhandler(GoldloopError)
    def _goldloop(exc: GoldloopError):
        body = {"error": type(exc).__name__, "message": str(exc)}
        resp = jsonify(body)
        resp.status_code = exc.status
        if exc.status == 401:
            resp.headers["WWW-Authenticate"] = 'Basic realm="goldloop"'
        return resp

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        resp = jsonify({"error": exc.name, "message": exc.description})
        resp.status_code = exc.code or 500
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # last resort: log the traceback, never send it
        log.exception("unhandled error")
        resp = jsonify({"error": "InternalError", "message": f"{type(exc).__name__}: see the backend log"})
        resp.status_code = 500
        return resp
