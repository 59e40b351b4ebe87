"""The one validator of identifiers that come from requests and become names: projects, versions, labels.

A project is a Label Studio project id (a positive integer; Label Studio sends ``"<id>.<timestamp>"``) or a
name matching ``NAME_PATTERN``. Anything else is a ``BadRequest`` naming the field, before the value reaches
a path, a metric label or a log line. Flask-free.
"""
from __future__ import annotations

import re

from .errors import BadRequest

DEFAULT_PROJECT = "default"  # the key of a request that names no project
NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_-]{0,63}"
MAX_ID = 10**15  # far above any Label Studio id, far below anything that stops being an exact integer
_NAME = re.compile(NAME_PATTERN)
_LS_ID = re.compile(r"([1-9][0-9]{0,14})(?:\.[0-9]{1,20})?")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_. -]{0,127}")


def shown(value: object, limit: int = 60) -> str:
    """A value as it may appear in a message or a log line: ASCII only (no lone surrogate, no NUL), short."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def project_key(raw: object, field: str = "project") -> str:
    """The project key of a request value: ``"3"`` for ``3``, ``"3"``, ``"3.1795327106"``; a valid name as is;
    ``DEFAULT_PROJECT`` when absent; BadRequest naming `field` otherwise."""
    if raw is None or raw == "":
        return DEFAULT_PROJECT
    if isinstance(raw, int) and not isinstance(raw, bool):
        if 0 < raw < MAX_ID:
            return str(raw)
    elif isinstance(raw, str):
        m = _LS_ID.fullmatch(raw)
        if m:
            return m.group(1)
        if _NAME.fullmatch(raw):
            return raw
    raise BadRequest(
        f"{field!r} must be a Label Studio project id (a positive integer or '<id>.<timestamp>') or a name "
        f"matching {NAME_PATTERN}, got {shown(raw)}"
    )


def is_project_key(key: object) -> bool:
    """True for a key ``project_key`` returns (digits without a timestamp, or a valid name)."""
    return isinstance(key, str) and (_NAME.fullmatch(key) is not None or (_LS_ID.fullmatch(key) is not None and "." not in key))


def is_version(name: object) -> bool:
    """True for a model version name that is safe as a directory name (``v20250101-120000-abc123``)."""
    return isinstance(name, str) and _VERSION.fullmatch(name) is not None and ".." not in name


def is_safe_component(name: object) -> bool:
    """True for a control name that can be a directory name as it is (no separator, no NUL, not . or ..)."""
    return isinstance(name, str) and _COMPONENT.fullmatch(name) is not None and ".." not in name and not name.endswith((" ", "."))


def valid_unicode(text: str) -> bool:
    """False for a string that cannot be encoded as UTF-8 (a lone surrogate from a JSON escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
