"""Fixtures for a real PostgreSQL 15 server: one throwaway cluster per test session.

The cluster lives in a temp dir, runs as the `postgres` user when the tests run as root (initdb and pg_ctl refuse
root), listens on 127.0.0.1 and a free port with fsync off, and is stopped and deleted at the end. A login role with a
password owns the databases, so goldloop's URLs carry a real password over TCP. When PostgreSQL cannot be started the
tests that need it FAIL with the reason: `make setup` installs it.

Label Studio's first start on PostgreSQL migrates its schema (~50 s with fsync off): `pg_ls_template` does that once
into a template database, and `pg_database` clones it (CREATE DATABASE ... TEMPLATE ...) in well under a second.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server import database, stack
from tests.plugins.label_studio import copy_home, stack_settings, start_label_studio

PG_USER = "goldloop"
PG_PASSWORD = "s3cret-Pa55word"  # the tests check it never shows up in output or logs
ENV_PG_BIN = "GOLDLOOP_PG_BIN"  # a PostgreSQL bin dir other than Debian's /usr/lib/postgresql/<version>/bin


def pg_bin() -> Path:
    """The bin dir of the newest PostgreSQL installed; pytest.fail when there is none."""
    if os.environ.get(ENV_PG_BIN):
        return Path(os.environ[ENV_PG_BIN])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        pytest.fail("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run make setup, or "
                    f"apt-get install postgresql, or set {ENV_PG_BIN}")
    return Path(found[-1]).parent


@dataclass
class PostgresServer:
    """A running throwaway cluster: where it listens and the login role goldloop uses."""

    bin: Path
    root: Path
    port: int
    host: str = "127.0.0.1"
    user: str = PG_USER
    password: str = field(default=PG_PASSWORD, repr=False)

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def as_owner(self, *cmd: str) -> list[str]:
        """cmd run as the cluster's owner (the postgres user when we are root)."""
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def sql(self, statement: str) -> str:
        """Run one statement as the superuser over the Unix socket; pytest.fail with psql's message on error."""
        cmd = self.as_owner(str(self.bin / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-d", "postgres",
                            "-v", "ON_ERROR_STOP=1", "-tAc", statement)  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            pytest.fail(f"psql {statement!r} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database owned by the login role (a copy of template when given); returns its URL."""
        self.sql(f'CREATE DATABASE "{name}" OWNER {self.user}' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def url(self, name: str, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{self.user}:{secret}@{self.host}:{self.port}/{name}"


def _run(cmd: list[str], what: str, timeout: float = 120) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"PostgreSQL cannot be started: {what}: {exc}")
    if proc.returncode != 0:
        pytest.fail(f"PostgreSQL cannot be started: {what} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-800:]}")


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL cluster for the session: initdb, start (fsync off), a login role with a password; stopped and
    deleted at the end."""
    bin_dir = pg_bin()
    root = Path(tempfile.mkdtemp(prefix="goldloop-pg-"))
    server = PostgresServer(bin_dir, root, stack.free_port())
    server.socket_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(server.socket_dir, "postgres")
    owner = server.as_owner
    _run(owner(str(bin_dir / "initdb"), "-D", str(server.data), "-U", "postgres", "-E", "UTF8", "--auth-local=trust",
               "--auth-host=scram-sha-256"), "initdb")  # fmt: skip
    opts = f"-c fsync=off -c listen_addresses={server.host} -p {server.port} -k {server.socket_dir}"
    _run(owner(str(bin_dir / "pg_ctl"), "-D", str(server.data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o", opts, "start"), "pg_ctl start")
    try:
        server.sql(f"CREATE ROLE {server.user} LOGIN CREATEDB PASSWORD '{server.password}'")
        yield server
    finally:
        subprocess.run(owner(str(bin_dir / "pg_ctl"), "-D", str(server.data), "-m", "fast", "-w", "stop"), capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def home_without_sqlite(ls_template: Path, dest: Path) -> Path:
    """A copy of the migrated SQLite template data dir (same token, admin password, secret key) without its SQLite
    database: a data dir whose Label Studio has never run anywhere, matching every pg_ls_template clone."""
    home = copy_home(ls_template, dest)
    from server.datadir import DataDir

    data_dir = DataDir(home)
    data_dir.ls_sqlite_path.unlink()
    data_dir.database_path.unlink(missing_ok=True)
    return home


@pytest.fixture(scope="session")
def pg_ls_template(postgres_server, ls_template, tmp_path_factory) -> str:
    """The name of a database Label Studio has migrated, with the admin and token of ls_template (made once)."""
    name = "ls_template"
    url = postgres_server.create_database(name)
    home = home_without_sqlite(ls_template, tmp_path_factory.mktemp("pg-template") / "home")
    settings = stack_settings(home)
    database.remember(settings.data_dir, database.parse_url(url))
    proc = start_label_studio(settings)
    stack.stop_pid(proc.pid)
    postgres_server.sql(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true')
    return name


@pytest.fixture
def pg_database(postgres_server, pg_ls_template, request) -> str:
    """The URL of a fresh database cloned from the migrated template, for one test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    return postgres_server.create_database(name, template=pg_ls_template)
