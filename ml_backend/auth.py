"""Who may talk to the backend: HTTP basic auth and the allowed Host names. Flask-free rules; the app factory and
the routes apply them.

- Basic auth: a configured user needs a password of at least ``MIN_PASSWORD_CHARS`` characters (an empty or short
  one is refused when the app is built); credentials are compared in constant time.
- Allowed hosts: a request whose Host header names neither a loopback name (``localhost``, 127.0.0.0/8, ``::1``)
  nor one of the configured names is refused, so a web page whose name resolves to this machine (DNS rebinding)
  cannot reach the backend; ``*`` allows every name.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from .errors import BackendConfigError

MIN_PASSWORD_CHARS = 12
ANY_HOST = "*"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})  # listen on every interface: no one name to allow


def check_basic_auth(user: str | None, password: str | None, user_name: str = "basic_auth_user",
                     password_name: str = "basic_auth_pass") -> None:
    """BackendConfigError when a user is set without a password of ``MIN_PASSWORD_CHARS`` or more, or a password
    without a user (which would turn no auth on); the message names the settings as ``user_name`` / ``password_name``."""
    if not user:
        if password:
            raise BackendConfigError(f"{password_name} is set but {user_name} is not: set both to turn basic auth on, "
                                     "or neither")
        return
    got = len(password or "")
    if got < MIN_PASSWORD_CHARS:
        what = "unset or empty" if not got else f"{got} characters"
        raise BackendConfigError(f"{user_name} is set, so {password_name} must hold at least {MIN_PASSWORD_CHARS} "
                                 f"characters, got {what}")


def basic_auth_failure(header: str, user: str, password: str | None) -> str | None:
    """Why an Authorization header does not carry ``user``/``password`` (None when it does). An empty expected
    password never matches."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return "this backend requires HTTP basic auth"
    try:
        got_user, sep, got_pw = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):  # not base64, or not UTF-8 (UnicodeDecodeError is a ValueError)
        return "malformed basic auth header: expected base64 of 'user:password'"
    if not sep:
        return "malformed basic auth header: expected base64 of 'user:password', got no ':'"
    ok_user = hmac.compare_digest(got_user.encode(), user.encode())
    ok_pw = hmac.compare_digest(got_pw.encode(), (password or "").encode())
    if not (password and ok_user and ok_pw):
        return "wrong basic auth credentials"
    return None


def host_name(value: str) -> str | None:
    """The host of a Host header or an allowed-host entry, lower-case, without port, IPv6 brackets or a final
    dot; None when it is no host (empty, a scheme or path, unbalanced brackets)."""
    text = (value or "").strip().lower()
    if not text or any(c in text for c in "/@?# \t\\"):
        return None
    if text.startswith("["):  # [v6] or [v6]:port
        end = text.find("]")
        rest = text[end + 1:] if end > 0 else ""
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # name:port or v4:port
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    text = text.rstrip(".")
    return text or None


def is_loopback(host: str) -> bool:
    """True for a name only this machine reaches: localhost, 127.0.0.0/8, ::1 (brackets and port allowed)."""
    name = host_name(host)
    if name is None:
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def normalize_hosts(entries) -> tuple[str, ...]:
    """Allowed-host entries (or one comma-separated string) as host names (sorted, no repeats; ``*`` kept); ValueError
    naming a bad entry."""
    if isinstance(entries, str):
        entries = [p for p in entries.split(",") if p.strip()]
    out = set()
    for entry in entries or ():
        if str(entry).strip() == ANY_HOST:
            out.add(ANY_HOST)
            continue
        name = host_name(str(entry))
        if name is None:
            raise ValueError(f"an allowed host must be a host name or address (no scheme or path) or '*', got {entry!r}")
        out.add(name)
    return tuple(sorted(out))


def parse_hosts(spec: str) -> tuple[str, ...]:
    """A comma-separated list of allowed hosts (``"a.example, 10.0.0.5"``) normalized; "" is none."""
    return normalize_hosts(spec or "")


def bind_host(host: str) -> tuple[str, ...]:
    """The name a backend listening on ``host`` is reached by, when that is no loopback or wildcard address."""
    name = host_name(host)
    if name is None or host.strip() in WILDCARD_BINDS or name in WILDCARD_BINDS or is_loopback(name):
        return ()
    return (name,)


def host_allowed(header: str | None, allowed: tuple[str, ...] | frozenset[str]) -> bool:
    """True when a request's Host header names a loopback host or one in ``allowed`` (``*``: any). A request
    without a Host header (no browser sends one) passes."""
    if header is None:
        return True
    if ANY_HOST in allowed:
        return True
    name = host_name(header)
    return name is not None and (is_loopback(name) or name in allowed)
