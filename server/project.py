"""One project as every command and job sees it: the store, the Label Studio client and project, its task spec and the
model registry, opened once (``ProjectContext.open``); and ``TaskPass``, the one read of its tasks a job makes.

Before this object each command found its project by hand (resolve_project, open_db, parse_label_config, Registry in
every entry point) and a round read Label Studio's tasks twice: once for the export, once for the pool.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ml_backend.registry import Registry
from ml_backend.schema import TaskSpec, parse_label_config

from . import ls_client, store
from .effort import annotation_rows
from .errors import LoopError
from .export import ExportOptions, ExportResult, ProjectInfo, export_dataset, read_jsonl
from .locks import RoundLock


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "project"


def completed(task: dict) -> bool:
    """A task someone has annotated (a cancelled, i.e. skipped, annotation does not count)."""
    return any(not a.get("was_cancelled") for a in task.get("annotations") or [])


def load_dataset(version_dir: Path) -> dict[str, list[dict]]:
    """The gold export's records (data.jsonl) by split."""
    by_split: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for rec in read_jsonl(Path(version_dir) / "data.jsonl"):
        by_split.setdefault(rec.get("split", "train"), []).append(rec)
    return by_split


def latest_dataset(root: Path, slug: str) -> Path | None:
    versions = sorted(p for p in (Path(root) / slug).glob("*") if p.is_dir() and not p.name.startswith("."))
    return versions[-1] if versions else None


@dataclass
class Gold:
    """A project's labeled records by split, as a job trains on them, and the dataset version they came from."""

    by_split: dict[str, list[dict]]
    version: str
    data_hash: str | None = None

    @property
    def records(self) -> list[dict]:
        return [r for split in self.by_split.values() for r in split]


@dataclass
class TaskPass:
    """One streaming read of a project's tasks: the export consumes it, and on the way it keeps the unlabeled pool
    (ids and texts per value field), the completed tasks (for a project whose every task is labeled) and each
    annotation's effort row (server/effort.py). The pool is held anyway (the round pre-annotates it); the completed
    tasks keep only id and data."""

    ctx: "ProjectContext"
    pool_ids: list = field(default_factory=list)
    pool_texts: dict[str, list[str]] = field(default_factory=dict)
    done: list[dict] = field(default_factory=list)
    effort: list[dict] = field(default_factory=list)
    consumed: bool = False

    def __post_init__(self) -> None:
        self.pool_texts = {f: [] for f in self.ctx.spec.value_fields}

    def __iter__(self) -> Iterator[dict]:
        spec, share = self.ctx.spec, self.ctx.settings.control_share
        for task in ls_client.iter_tasks(self.ctx.client, self.ctx.pid):
            if task.get("annotations"):  # what each annotation took and which suggestion it was shown
                self.effort += annotation_rows(self.ctx.pid, [task], spec, share)
            d = task.get("data") or {}
            if all(isinstance(d.get(f), str) and d.get(f).strip() for f in spec.value_fields):
                if completed(task):
                    self.done.append({"id": task["id"], "data": d})
                else:
                    self.pool_ids.append(task["id"])
                    for f in spec.value_fields:
                        self.pool_texts[f].append(d[f])
            yield task
        self.consumed = True

    def drain(self) -> "TaskPass":
        """Read every task without exporting (a job training on outside records still needs the pool)."""
        for _ in self:
            pass
        return self


@dataclass
class ProjectContext:
    """A Label Studio project opened for a command or a job."""

    settings: Any
    db: Any
    client: Any
    project: Any
    spec: TaskSpec
    registry: Registry
    # the pool's queue scores the last publish stored (the dashboard shows them without reading the tasks again)
    queue_scores: list[float] | None = None

    @classmethod
    def open(cls, settings, project_ref: str | int, *, client=None, registry: Registry | None = None, db=None) -> "ProjectContext":
        """Find the project (id, title or schema name) and open what every job needs; client and registry may be
        passed in by a caller that already holds them (a backend's own registry, a test's client)."""
        db = db if db is not None else store.open_db(settings.data_dir.db_path)
        client = client or ls_client.connect(settings, db)
        project = ls_client.resolve_project(client, project_ref, db)
        return cls(settings, db, client, project, parse_label_config(project.label_config),
                   registry or Registry(settings.backend_settings()))

    @property
    def pid(self) -> int:
        return int(self.project.id)

    @property
    def key(self) -> str:
        """The project's key in the model registry."""
        return str(self.pid)

    @property
    def slug(self) -> str:
        return slugify((store.get_project(self.db, self.pid) or {}).get("schema_name") or self.project.title)

    def lock(self, trigger: str, version: str) -> RoundLock:
        """The project's round lock, acquired (RoundRunning while another process holds it)."""
        lock = RoundLock(self.settings.data_dir.round_lock_path(self.pid), self.pid)
        lock.acquire(trigger, version)
        return lock

    def read_gold(self, progress: bool) -> tuple[Gold, TaskPass]:
        """Export the project's annotations as a gold dataset version (a new one only when they changed) in the same
        read of the tasks that gathers the pool and the effort rows; the effort rows are stored."""
        tasks = TaskPass(self)
        root = self.settings.data_dir.datasets
        info = ProjectInfo(id=self.pid, slug=self.slug, title=self.project.title, label_config=self.project.label_config)
        exported: ExportResult = export_dataset(tasks, self.spec, info, ExportOptions(root, formats=("jsonl",), progress=progress))
        if not tasks.consumed:  # the export stopped early (it raises then): never train on half a pool
            raise LoopError("the export did not read every task")
        store.record_effort(self.db, tasks.effort)
        vdir = exported.version_dir or latest_dataset(root, info.slug)
        if vdir is None:
            raise LoopError(f"export wrote no dataset: {exported.message}")
        manifest = vdir / "manifest.json"
        data_hash = json.loads(manifest.read_text()).get("content_hash") if manifest.exists() else None
        return Gold(load_dataset(vdir), vdir.name, data_hash), tasks

    def read_pool(self) -> TaskPass:
        """The pool and effort rows without an export (a job on outside records); the effort rows are stored."""
        tasks = TaskPass(self).drain()
        store.record_effort(self.db, tasks.effort)
        return tasks
