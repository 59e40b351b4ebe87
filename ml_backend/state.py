"""Per-app state: settings, model registry, prediction cache, metrics, webhook log, background jobs."""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .cache import PredictionCache
from .registry import Registry
from .schema import TaskSpec
from .settings import BackendSettings

log = logging.getLogger(__name__)


class Metrics:
    """Prometheus metrics of one app (own registry, so several apps in one process don't clash)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("goldloop_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "goldloop_request_seconds", "Request latency", ["endpoint"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 100),
        )
        self.tasks = Counter("goldloop_predicted_tasks", "Tasks answered by /predict", ["project"], registry=self.registry)
        self.task_errors = Counter("goldloop_task_errors", "Tasks answered with an empty result (bad input)", ["reason"], registry=self.registry)
        self.webhooks = Counter("goldloop_webhook_events", "Webhook events received", ["action"], registry=self.registry)
        self.model_version = Gauge("goldloop_model_info", "Serving model version per project (value 1)", ["project", "version"], registry=self.registry)
        self.cache_hits = Gauge("goldloop_cache_hits", "Prediction cache hits", registry=self.registry)
        self.cache_misses = Gauge("goldloop_cache_misses", "Prediction cache misses", registry=self.registry)
        self.trainings = Counter("goldloop_training_jobs", "Training jobs by outcome", ["outcome"], registry=self.registry)


class BackendState:
    """Everything one backend app holds."""

    def __init__(self, settings: BackendSettings, trainer: Callable[[str, dict], Any] | None = None):
        from .models.torch_utils import device_name, set_process_device

        self.settings = settings
        # every model this process loads runs here (ValueError naming a bad or absent device, before any load)
        self.device = device_name(set_process_device(settings.device))
        self.registry = Registry(settings)
        self.cache = PredictionCache(settings.cache_size)
        self.metrics = Metrics()
        Gauge("goldloop_device_info", "Device the models run on (value 1)", ["device"], registry=self.metrics.registry).labels(device=self.device).set(1)
        self.trainer = trainer
        self.specs: dict[str, TaskSpec] = {}  # last labeling config seen per project
        self.events: collections.deque = collections.deque(maxlen=1000)
        self.event_counts: collections.Counter = collections.Counter()
        self._jobs: dict[str, dict] = {}  # project -> {"thread", "pending"}
        self._jobs_lock = threading.Lock()
        self.registry.listeners.append(self._on_promote)

    def _on_promote(self, project: str, version: str) -> None:
        self.metrics.model_version.clear()
        for proj, pm in self.registry.serving_items():
            self.metrics.model_version.labels(project=proj, version=pm.version).set(1)

    def record_event(self, action: str, project: str | None, payload: dict, metric_label: str = "other") -> None:
        """Remember a webhook event; /metrics counts it under `metric_label` (a fixed name, never raw request data)."""
        self.event_counts[action] += 1
        self.metrics.webhooks.labels(action=metric_label).inc()
        self.events.append({"action": action, "project": project, "received_at": time.time(), "keys": sorted(payload)})

    def warm(self, project: str, spec: TaskSpec) -> None:
        """Load a project's model in the background (so /setup never blocks on it)."""
        if self.registry.loaded(project) is not None:
            return

        def run():
            try:
                self.registry.get(project, spec)
            except (OSError, ValueError, RuntimeError) as exc:
                log.warning("project %s: warm-up failed: %s", project, exc)

        threading.Thread(target=run, name=f"warm-{project}", daemon=True).start()

    def start_training(self, project: str, event: dict) -> str:
        """Run the trainer in the background: one job per project; a trigger while one runs is queued once."""
        if self.trainer is None:
            self.metrics.trainings.labels(outcome="no_trainer").inc()
            return "no trainer configured (run the backend through `goldloop backend` with Label Studio access)"
        with self._jobs_lock:
            job = self._jobs.get(project)
            if job and job["thread"].is_alive():
                job["pending"] = event
                return "queued after the running job"
            job = {"pending": None}
            job["thread"] = threading.Thread(target=self._run_jobs, args=(project, event, job), name=f"train-{project}", daemon=True)
            self._jobs[project] = job
            job["thread"].start()
            return "started"

    def _run_jobs(self, project: str, event: dict, job: dict) -> None:
        while event is not None:
            try:
                self.trainer(project, event)
                self.metrics.trainings.labels(outcome="finished").inc()
            except Exception:  # a training job must never take the server down; the trainer records why
                log.exception("project %s: training job failed", project)
                self.metrics.trainings.labels(outcome="failed").inc()
            with self._jobs_lock:
                event, job["pending"] = job["pending"], None

    def training_running(self, project: str) -> bool:
        job = self._jobs.get(project)
        return bool(job and job["thread"].is_alive())
