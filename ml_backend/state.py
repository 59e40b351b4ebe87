"""Per-app state: settings, model registry, prediction cache, metrics, webhook log, background jobs."""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .cache import PredictionCache
from .jobs import TrainingQueue
from .registry import Registry
from .schema import TaskSpec
from .settings import BackendSettings

log = logging.getLogger(__name__)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set: several worker processes share /metrics (prometheus multiprocess mode)


def multiprocess_dir() -> str | None:
    """The directory the worker processes write their metric values to, when they run under gunicorn."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """Prometheus metrics of one app (own registry, so several apps in one process don't clash).

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set) every value also lands in the shared directory and
    /metrics adds up every worker's (``exposition``): counters and histograms sum, including those of workers
    that have exited; the cache gauges sum over live workers; ``goldloop_model_info``, which needs
    ``Gauge.clear()``, is computed at scrape time instead (``ServingInfo``).
    """

    def __init__(self, multiprocess: bool = False):
        self.multiprocess = multiprocess
        self.registry = CollectorRegistry()
        self.requests = Counter("goldloop_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "goldloop_request_seconds", "Request latency", ["endpoint"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 100),
        )
        self.tasks = Counter("goldloop_predicted_tasks", "Tasks answered by /predict", ["project"], registry=self.registry)
        self.task_errors = Counter("goldloop_task_errors", "Tasks answered with an empty result (bad input)", ["reason"], registry=self.registry)
        self.webhooks = Counter("goldloop_webhook_events", "Webhook events received", ["action"], registry=self.registry)
        self.model_version = None if multiprocess else Gauge(
            "goldloop_model_info", "Serving model version per project (value 1)", ["project", "version"], registry=self.registry)
        self.cache_hits = Gauge("goldloop_cache_hits", "Prediction cache hits", registry=self.registry, multiprocess_mode="livesum")
        self.cache_misses = Gauge("goldloop_cache_misses", "Prediction cache misses", registry=self.registry, multiprocess_mode="livesum")
        self.trainings = Counter("goldloop_training_jobs", "Training jobs by outcome", ["outcome"], registry=self.registry)
        if multiprocess:
            Gauge("goldloop_worker_processes", "Live backend worker processes", registry=self.registry,
                  multiprocess_mode="livesum").set(1)


class ServingInfo:
    """``goldloop_model_info`` at scrape time, for multiprocess mode: the promoted version of every project on disk
    (what each worker serves from its next request on), else the cold-start version this worker serves."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        fam = GaugeMetricFamily("goldloop_model_info", "Serving model version per project (value 1)", labels=["project", "version"])
        served = {proj: pm.version for proj, pm in self.registry.serving_items()}
        served.update(self.registry.promoted())
        for proj, version in sorted(served.items()):
            fam.add_metric([proj, version], 1)
        yield fam


class BackendState:
    """Everything one backend app holds."""

    def __init__(self, settings: BackendSettings, trainer: Callable[[str, dict], Any] | None = None):
        from .models.torch_utils import device_name, precision_name, set_process_device

        self.settings = settings
        # every model this process loads runs here (ValueError naming a bad or absent device, before any load)
        device = set_process_device(settings.device, settings.precision)
        self.device = device_name(device)
        self.precision = precision_name(device)  # what they train and predict in there: bf16, fp16 or fp32
        self.registry = Registry(settings)
        self.cache = PredictionCache(settings.cache_size)
        self.metrics = Metrics(multiprocess=multiprocess_dir() is not None)
        Gauge("goldloop_device_info", "Device the models run on (value 1)", ["device"], registry=self.metrics.registry,
              multiprocess_mode="livemax").labels(device=self.device).set(1)
        self.trainer = trainer
        self.specs: dict[str, TaskSpec] = {}  # last labeling config seen per project
        self.events: collections.deque = collections.deque(maxlen=1000)
        self.event_counts: collections.Counter = collections.Counter()
        self.jobs = TrainingQueue(self.registry.path, self._train)
        self._scrape = None  # the registry /metrics reads in multiprocess mode, built on first scrape
        self.registry.listeners.append(self._on_promote)

    def exposition(self) -> bytes:
        """The text /metrics answers: this process's metrics, or every worker's in multiprocess mode."""
        if not self.metrics.multiprocess:
            return generate_latest(self.metrics.registry)
        if self._scrape is None:
            from prometheus_client import multiprocess

            scrape = CollectorRegistry()
            multiprocess.MultiProcessCollector(scrape, path=multiprocess_dir())
            scrape.register(ServingInfo(self.registry))
            self._scrape = scrape
        return generate_latest(self._scrape)

    def _on_promote(self, project: str, version: str) -> None:
        if self.metrics.model_version is None:  # multiprocess mode: computed at scrape time
            return
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
        """Run the trainer in the background: one job per project across every worker process; a trigger while
        one runs is queued once (``jobs.TrainingQueue``)."""
        if self.trainer is None:
            self.metrics.trainings.labels(outcome="no_trainer").inc()
            return "no trainer configured (run the backend through `goldloop backend` with Label Studio access)"
        return self.jobs.submit(project, event)

    def _train(self, project: str, event: dict) -> None:
        try:
            self.trainer(project, event)
            self.metrics.trainings.labels(outcome="finished").inc()
        except Exception:  # a training job must never take the server down; the trainer records why
            log.exception("project %s: training job failed", project)
            self.metrics.trainings.labels(outcome="failed").inc()

    def training_running(self, project: str) -> bool:
        """True while this process runs (or is about to run) a training job of the project."""
        return self.jobs.running_here(project)
