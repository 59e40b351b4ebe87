"""Label Studio's database: the URL goldloop is given, the environment that points Label Studio at it, whether it
answers, and the choice the data dir remembers.

SQLite (a file in Label Studio's data dir) is the default; a PostgreSQL URL moves Label Studio's data to a server a
team can back up and share. The password of a URL is never part of what is printed or logged: `display` leaves it
out, and the remembered URL lives in a mode-0600 file of the data dir, like the admin token.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from .datadir import DataDir
from .errors import ConfigError, StackError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432
CONNECT_TIMEOUT_S = 5  # a blackholed host would otherwise hang for the kernel's TCP timeout (~2 min)
# Label Studio reads each of these names with an optional LABEL_STUDIO_ or HEARTEX_ prefix, the prefixed ones first
LS_VARIABLES = ("DJANGO_DB", "POSTGRE_NAME", "POSTGRE_USER", "POSTGRE_PASSWORD", "POSTGRE_HOST", "POSTGRE_PORT")
LS_PREFIXES = ("LABEL_STUDIO_", "HEARTEX_", "")
FLAG_HINT = "--database / $GOLDLOOP_DATABASE_URL"


@dataclass(frozen=True)
class Database:
    """Where Label Studio keeps its data: SQLite in its data dir, or a PostgreSQL database."""

    kind: str = SQLITE
    host: str = ""
    port: int = 0
    name: str = ""
    user: str = ""
    password: str = field(default="", repr=False)

    @property
    def is_postgresql(self) -> bool:
        return self.kind == POSTGRESQL

    def display(self) -> str:
        """What may be printed and logged: postgresql://user@host:port/name (never the password), or sqlite."""
        if not self.is_postgresql:
            return SQLITE
        return f"postgresql://{quote(self.user, safe='')}@{self._netloc_host()}:{self.port}/{quote(self.name, safe='')}"

    def url(self) -> str:
        """The full URL, password included: only for the data dir's mode-0600 file."""
        if not self.is_postgresql:
            return SQLITE
        secret = f":{quote(self.password, safe='')}" if self.password else ""
        return f"postgresql://{quote(self.user, safe='')}{secret}@{self._netloc_host()}:{self.port}/{quote(self.name, safe='')}"

    def _netloc_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def same_place(self, other: "Database") -> bool:
        """True when both name the same data: the kind, and for PostgreSQL the server and the database name
        (another user or password on the same database is the same place)."""
        return (self.kind, self.host.lower(), self.port, self.name) == (other.kind, other.host.lower(), other.port, other.name)

    def ls_env(self) -> dict[str, str]:
        """The variables that point Label Studio (core/settings) at this database."""
        if not self.is_postgresql:
            return {"DJANGO_DB": SQLITE}
        return {
            "DJANGO_DB": "default",
            "POSTGRE_NAME": self.name,
            "POSTGRE_USER": self.user,
            # "": Django then passes no password and libpq falls back to $PGPASSWORD or ~/.pgpass
            "POSTGRE_PASSWORD": self.password,
            "POSTGRE_HOST": self.host,
            "POSTGRE_PORT": str(self.port),
        }


SQLITE_DATABASE = Database()


def parse_url(url: str) -> Database:
    """A --database value: "sqlite", or postgresql://user[:password]@host[:port]/name; ConfigError says what is wrong
    (without repeating the URL, which may hold a password)."""
    text = (url or "").strip()
    if text.lower() in (SQLITE, "sqlite://"):
        return SQLITE_DATABASE
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        reason = "the port is not a number between 1 and 65535" if "port" in str(exc).lower() else "it is not a URL"
        raise ConfigError(f"{FLAG_HINT}: {reason}; expected postgresql://USER:PASSWORD@HOST:PORT/NAME") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ConfigError(f"{FLAG_HINT}: {got}; expected sqlite or postgresql://USER:PASSWORD@HOST:PORT/NAME")
    problems = []
    if not parts.hostname:
        problems.append("no host")
    if not parts.username:
        problems.append("no user")
    name = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not name:
        problems.append("no database name")
    elif "/" in name:
        problems.append("a database name with '/'")
    if parts.query or parts.fragment:
        problems.append("query parameters (not supported)")
    if port == 0:
        problems.append("port 0")
    if problems:
        raise ConfigError(f"{FLAG_HINT}: the URL has {', '.join(problems)}; expected postgresql://USER:PASSWORD@HOST:PORT/NAME")
    return Database(
        POSTGRESQL, host=parts.hostname or "", port=port or DEFAULT_PORT, name=name, user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )  # fmt: skip


def apply_ls_env(env: dict[str, str], database: Database) -> dict[str, str]:
    """env with Label Studio pointed at database: every inherited spelling of its database variables removed first,
    so a stray LABEL_STUDIO_POSTGRE_HOST in the shell cannot win over the chosen database."""
    for name in LS_VARIABLES:
        for prefix in LS_PREFIXES:
            env.pop(prefix + name, None)
    env.update(database.ls_env())
    if database.is_postgresql:
        env.setdefault("PGCONNECT_TIMEOUT", str(CONNECT_TIMEOUT_S))  # libpq inside Label Studio gives up too
    return env


def check_reachable(database: Database, timeout: int = CONNECT_TIMEOUT_S) -> str:
    """Connect once and return the server's version; StackError with the reason (one line, no password) when the
    database does not answer or refuses the login. SQLite needs no check."""
    if not database.is_postgresql:
        return ""
    import psycopg  # label-studio depends on psycopg 3

    try:
        with psycopg.connect(
            host=database.host, port=database.port, dbname=database.name, user=database.user,
            password=database.password or None, connect_timeout=max(1, int(timeout)),
        ) as conn:  # fmt: skip
            return str(conn.execute("SHOW server_version").fetchone()[0])
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if database.password:
            reason = reason.replace(database.password, "***")
        raise StackError(f"PostgreSQL at {database.display()} is not reachable: {reason}; check {FLAG_HINT} and that the server runs") from None


# --- the data dir's choice -----------------------------------------------------------------------


def remembered(data_dir: DataDir) -> Database | None:
    """The database the data dir was last started on; SQLite for a data dir whose Label Studio already holds a SQLite
    file from before the choice was remembered; None for a fresh data dir."""
    path = data_dir.database_path
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return SQLITE_DATABASE if data_dir.ls_sqlite_path.exists() else None
    try:
        return parse_url(text)
    except ConfigError:
        raise ConfigError(f"{path} does not hold a database URL; delete it and pass --database again") from None


def current(data_dir: DataDir) -> Database:
    """The database Label Studio of this data dir runs on (SQLite unless told otherwise)."""
    return remembered(data_dir) or SQLITE_DATABASE


def remember(data_dir: DataDir, database: Database) -> None:
    """Keep the choice (with its password) in the data dir, mode 0600, replaced atomically."""
    path = data_dir.database_path
    tmp = path.with_name(f".{path.name}-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(database.url() + "\n")
    os.replace(tmp, path)


def choose(data_dir: DataDir, requested: str | None, switch: bool = False, running: bool = False) -> tuple[Database, bool]:
    """The database to start on and whether that is a switch away from the data dir's current one (the caller checks
    it answers, then remembers it).

    Without requested the data dir keeps its database. A different database for a data dir that already has one is
    refused unless switch: Label Studio would start empty there while the projects stay behind (`goldloop migrate-db`
    moves them); and refused while the stack runs (running) on the old one.
    """
    before = remembered(data_dir)
    if not requested:
        return before or SQLITE_DATABASE, False
    chosen = parse_url(requested)
    switched = before is not None and not before.same_place(chosen)
    if switched and not switch:
        raise ConfigError(
            f"data dir {data_dir.home} keeps Label Studio's data in {before.display()}; starting it on {chosen.display()} "
            f"would show an empty Label Studio. Move the projects with: goldloop migrate-db --to URL, or pass "
            f"--switch-database to start on {chosen.kind} anyway"
        )
    if switched and running:
        raise ConfigError(f"the stack runs on {before.display()}; stop it first (goldloop down), then start on {chosen.display()}")
    return chosen, switched
