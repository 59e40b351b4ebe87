"""Bulk pre-annotation: the serving model's predictions for a project's tasks, written to Label Studio in batches.

`goldloop predict PROJECT` reads the project's tasks page by page, keeps those that need a prediction, runs the
project's serving version on them batch by batch and imports each batch's predictions into Label Studio with one
request, under the version's name (the ``model_version`` the loop gives the pool's predictions after a promotion).
In-process by default; with ``ray`` (an address, or ``"local"``) the batches run on a Ray Data actor pool, one model
load per actor, and this process writes what comes back (server/predict_ray.py). Both engines call the same batch
function, ``BatchPredictor`` (server/predict_batch.py).

Resumable, never twice: a batch's predictions go into Label Studio with one bulk insert (all or none), and every
run first skips the tasks that already hold a prediction of the serving version. A killed run, or one cut short by
``limit``, continues where it stopped when run again; no task gets two predictions of one version (as long as one
run per project goes at a time). ``only_missing`` also skips tasks holding a prediction of any other version.
Tasks whose text the backend would refuse (missing, empty, too long) are skipped and counted, as /predict leaves
them an empty result.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator

from ml_backend.registry import Registry
from ml_backend.schema import TaskSpec, parse_label_config

from . import ls_client, store
from .predict_batch import TASK_COLUMN, BatchPredictor, Job, PredictError, columns, decode, text_column

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
MAX_BATCH_SIZE = 500  # Label Studio inserts an import of up to 500 predictions in one statement: all or none
PAGE_SIZE = 500  # tasks per Label Studio listing request while scanning


@dataclass
class Scan:
    """The tasks a run predicts, and why the others are left out."""

    rows: list[dict] = field(default_factory=list)
    seen: int = 0
    has_version: int = 0  # already hold a prediction of the serving version (an earlier run, the loop)
    has_other: int = 0  # hold a prediction of another version (left out with only_missing)
    bad_text: int = 0  # the backend would refuse their text: /predict answers them an empty result
    limited: bool = False  # the scan stopped at the limit


@dataclass
class PredictResult:
    """What a run did (the CLI prints it; the benchmark records it)."""

    project_id: int
    version: str
    engine: str
    quantize: str
    scanned: int
    skipped_has_version: int
    skipped_other_version: int
    skipped_bad_text: int
    predicted: int = 0
    remaining: bool = False  # the limit stopped the run before every task was predicted
    scan_s: float = 0.0
    predict_s: float = 0.0
    startup_s: float = 0.0  # Ray: connecting or starting the cluster
    actors: int = 0

    @property
    def docs_per_s(self) -> float:
        return self.predicted / self.predict_s if self.predict_s > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "docs_per_s": round(self.docs_per_s, 2)}

    def summary(self) -> str:
        engine = f"{self.engine} ({self.actors} actors, started in {self.startup_s:.1f} s)" if self.engine != "in-process" else self.engine
        lines = [f"project {self.project_id}: {self.predicted} task(s) predicted with {self.version} "
                 f"in {self.predict_s:.1f} s ({self.docs_per_s:.1f} docs/s, {engine}, quantize {self.quantize})",
                 f"  scanned {self.scanned}; skipped: {self.skipped_has_version} already predicted by {self.version}, "
                 f"{self.skipped_other_version} with another version's prediction, {self.skipped_bad_text} without usable text"]
        if self.remaining:
            lines.append("  stopped at --limit: run it again to predict the rest")
        return "\n".join(lines)


def scan_tasks(tasks: Iterable[dict], spec: TaskSpec, version: str, *, only_missing: bool = False, limit: int | None = None,
               max_text_chars: int = 500_000, on_task: Callable[[], None] | None = None) -> Scan:
    """The tasks to predict, as rows of the batch function, in listing order (at most `limit`)."""

    scan = Scan()
    for task in tasks:
        scan.seen += 1
        if on_task is not None:
            on_task()
        versions = {p.get("model_version") for p in task.get("predictions") or [] if isinstance(p, dict)}
        if version in versions:
            scan.has_version += 1
            continue
        if only_missing and versions:
            scan.has_other += 1
            continue
        if spec.problem(task, max_text_chars) is not None:
            scan.bad_text += 1
            continue
        if limit is not None and len(scan.rows) >= limit:
            scan.limited = True
            break
        row = {TASK_COLUMN: int(task["id"])}
        for i, f in enumerate(spec.value_fields):
            row[text_column(i)] = task["data"][f]
        scan.rows.append(row)
    return scan


def serving_quantize(registry: Registry, project_key: str, version: str, spec: TaskSpec, configured: str) -> str:
    """How the backend serves this version: the configured mode, else int8 when the version's int8 graph was built
    (a round promotes with the int8 graph prepared only when its backend serves int8)."""
    if configured != "none":
        return configured
    for control in spec.controls:
        if registry.path(project_key, version, control.name, "onnx").is_dir():
            return "int8"
    return configured


def in_process_batches(job: Job, rows: list[dict], batch_size: int) -> Iterator[list[dict]]:
    """The in-process engine: one BatchPredictor, the rows batch by batch."""
    predictor = BatchPredictor(job)
    for i in range(0, len(rows), batch_size):
        yield decode(predictor(columns(rows[i : i + batch_size])))


@contextlib.contextmanager
def predict_lock(path, pid: int):
    """One `goldloop predict` per project at a time (two would both see a task unpredicted and both write it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PredictError(f"project {pid}: another goldloop predict is running on it; wait for it or stop it") from None
        yield
    finally:
        os.close(fd)  # drops the flock


def run_predict(settings, project_ref: str | int, *, ray: str | None = None, num_cpus: int | None = None,
                batch_size: int = DEFAULT_BATCH_SIZE, only_missing: bool = False, limit: int | None = None,
                quantize: str | None = None, progress: bool = True, client=None) -> PredictResult:
    """Pre-annotate a project's tasks with its serving version; see the module docstring.

    ray: None (in-process), "local" (a Ray instance on this machine, `num_cpus` of it, default every core) or the
    address of a running Ray cluster ("auto", "HOST:PORT", "ray://HOST:PORT").
    """
    from tqdm.auto import tqdm

    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise PredictError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}")
    if limit is not None and limit < 0:
        raise PredictError(f"--limit must be 0 or more, got {limit}")
    if ray is not None:
        from .predict_ray import check_ray

        check_ray(ray)  # before scanning: a missing package or a dead address fails in a second, not after the scan
    db = store.open_db(settings.data_dir.db_path) if settings.data_dir.db_path.exists() else None
    client = client or ls_client.connect(settings, db)
    project = ls_client.resolve_project(client, project_ref, db)
    pid = int(project.id)
    with predict_lock(settings.data_dir.locks / f"predict-{pid}.lock", pid):
        spec = parse_label_config(project.label_config)
        backend = settings.backend_settings()
        registry = Registry(backend)
        key = str(pid)
        pointer = registry.pointer(key)
        if pointer is None:
            raise PredictError(f"project {pid} has no trained model version yet (run: goldloop train {project_ref}); "
                               "until then Label Studio asks the backend task by task")
        version = pointer["version"]
        mode = quantize or serving_quantize(registry, key, version, spec, backend.quantize)
        job = Job(key, project.label_config, version, backend.with_overrides(quantize=mode))

        t0 = time.perf_counter()
        total = int(getattr(project, "task_number", 0) or 0) or None
        with tqdm(total=total, unit="task", desc="scan", disable=not progress, leave=False) as bar:
            scan = scan_tasks(ls_client.iter_tasks(client, pid, page_size=PAGE_SIZE), spec, version, only_missing=only_missing,
                              limit=limit, max_text_chars=backend.max_text_chars, on_task=lambda: bar.update(1))
        result = PredictResult(pid, version, "in-process" if ray is None else f"ray {ray}", mode, scan.seen, scan.has_version,
                               scan.has_other, scan.bad_text, remaining=scan.limited, scan_s=round(time.perf_counter() - t0, 2))
        if not scan.rows:
            return result
        stats: dict = {}
        if ray is None:
            batches = in_process_batches(job, scan.rows, batch_size)
        else:
            from .predict_ray import ray_batches

            batches = ray_batches(job, scan.rows, batch_size, ray, num_cpus, stats)
        t1 = time.perf_counter()
        try:
            with tqdm(total=len(scan.rows), unit="task", desc=f"predict {version}", disable=not progress) as bar:
                for items in batches:
                    for i in range(0, len(items), batch_size):
                        part = items[i : i + batch_size]
                        ls_client.import_predictions(client, pid, part)
                        result.predicted += len(part)
                        bar.update(len(part))
        finally:
            batches.close()  # a failed write stops the engine now (Ray: shuts down the instance this run started)
        result.startup_s, result.actors = stats.get("startup_s", 0.0), stats.get("actors", 0)
        result.predict_s = round(time.perf_counter() - t1 - result.startup_s, 2)
        return result
