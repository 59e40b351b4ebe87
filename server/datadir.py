"""The data dir's layout: every path under goldloop's home, the admin token and password files, the state database,
the round locks."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .errors import StackError

LS_TOKEN_FILENAME = "label_studio_token"  # API token of the admin, mode 0600
LS_PASSWORD_FILENAME = "label_studio_admin_password"  # generated admin password, mode 0600
LS_DATA_DIRNAME = "label-studio"  # LABEL_STUDIO_BASE_DATA_DIR
LS_SQLITE_FILENAME = "label_studio.sqlite3"  # Label Studio's SQLite database inside its data dir
DATABASE_FILENAME = "database_url"  # Label Studio's database (server/database.py), mode 0600: may hold a password
LOGS_DIRNAME = "logs"
DB_FILENAME = "goldloop.db"
MODELS_DIRNAME = "models"
DATASETS_DIRNAME = "datasets"
ENCODERS_DIRNAME = "encoders"
REPORTS_DIRNAME = "reports"
LOCKS_DIRNAME = "locks"
LLM_CACHE_FILENAME = "llm_cache.db"  # the LLM's answers by (text hash, prompt hash, model): server/llm/cache.py
TOKEN_LENGTH = 40  # hex characters
PASSWORD_BYTES = 18  # 24 URL-safe characters


def _under_home(name: str, doc: str) -> property:
    """A read-only DataDir attribute: the path called name directly under home."""
    return property(lambda self: self.home / name, doc=doc)


@dataclass(frozen=True)
class DataDir:
    """One goldloop data dir (``--data-dir``, ``$GOLDLOOP_HOME``): the only code that joins paths under it."""

    home: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home))

    db_path = _under_home(DB_FILENAME, "goldloop's own state (store.open_db): processes, projects, imports, versions.")
    token_path = _under_home(LS_TOKEN_FILENAME, "The file holding Label Studio's admin API token (mode 0600).")
    ls_data = _under_home(LS_DATA_DIRNAME, "Label Studio's own data dir (LABEL_STUDIO_BASE_DATA_DIR).")
    logs = _under_home(LOGS_DIRNAME, "The log files of the child processes and of the training rounds.")
    models = _under_home(MODELS_DIRNAME, "The model registry: models/<project>/<version>/.")
    datasets = _under_home(DATASETS_DIRNAME, "The gold exports a round trains on: datasets/<project slug>/<version>/.")
    encoders = _under_home(ENCODERS_DIRNAME, "Encoders built for rounds and reused: converted multilingual-e5-small, +cjk extensions, domain-adapted (MLM).")
    admin_password_path = _under_home(LS_PASSWORD_FILENAME, "The generated Label Studio admin password (mode 0600).")
    locks = _under_home(LOCKS_DIRNAME, "The round locks, one file per project (server/locks.py).")
    database_path = _under_home(DATABASE_FILENAME, "Label Studio's database URL or 'sqlite' (mode 0600; server/database.py).")
    llm_cache_path = _under_home(LLM_CACHE_FILENAME, "The LLM pre-annotation cache (server/llm/cache.py): answers, and the tasks given them.")

    @property
    def ls_sqlite_path(self) -> Path:
        """Label Studio's SQLite database, when it runs on SQLite."""
        return self.ls_data / LS_SQLITE_FILENAME

    def round_lock_path(self, project_id: int) -> Path:
        """The lock file of a project's training rounds; project_id is a Label Studio id (a positive integer)."""
        if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id <= 0:
            raise ValueError(f"a round lock needs a Label Studio project id (a positive integer), got {project_id!r}")
        return self.locks / f"round-{project_id}.lock"

    def log(self, name: str) -> Path:
        """The log file called name (a child process, a project's training rounds)."""
        return self.logs / f"{name}.log"

    def report_dir(self, project_id: int | str) -> Path:
        """Where `goldloop report` writes a project's report by default."""
        return self.home / REPORTS_DIRNAME / str(project_id)

    def ensure(self) -> Path:
        """Create the data dir and check it is writable; StackError says what to do when it is not."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self.logs.mkdir(exist_ok=True)
            probe = self.home / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StackError(f"data dir {self.home} is not writable ({reason}); pass --data-dir DIR with a writable directory") from None
        if not os.access(self.home, os.W_OK | os.X_OK):
            raise StackError(f"data dir {self.home} is not writable; pass --data-dir DIR with a writable directory")
        return self.home

    def read_or_create_token(self) -> str:
        """The admin API token: generated once (40 hex chars), kept in the data dir with mode 0600."""
        path = self.token_path
        if path.exists():
            token = path.read_text().strip()
            if len(token) == TOKEN_LENGTH and all(c in "0123456789abcdef" for c in token):
                return token
            raise StackError(f"token file {path} is corrupt (expected 40 hex characters); delete it together with {self.ls_data}")
        token = secrets.token_hex(TOKEN_LENGTH // 2)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return token

    def read_token(self) -> str:
        """The stored admin API token; StackError when the stack was never started here."""
        try:
            return self.token_path.read_text().strip()
        except FileNotFoundError:
            raise StackError(f"no Label Studio token in {self.token_path}; start the stack with: goldloop up --data-dir {self.home}") from None

    def read_or_create_admin_password(self) -> tuple[str, bool]:
        """The Label Studio admin password and whether this call generated it (then the caller shows it once).

        Generated on first use, kept in the data dir with mode 0600; never a fixed default.
        """
        path = self.admin_password_path
        try:
            password = path.read_text().strip()
        except FileNotFoundError:
            password = ""
        else:
            if not password:
                raise StackError(f"password file {path} is empty; delete it together with {self.ls_data}")
            return password, False
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        tmp = path.with_name(f".{path.name}-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        try:
            os.link(tmp, path)  # first writer wins, so two processes never show different passwords
        except FileExistsError:
            return self.read_or_create_admin_password()[0], False
        finally:
            tmp.unlink()
        return password, True
