"""The batch function of bulk pre-annotation, shared by the in-process and the Ray engine (server/predict.py).

A batch is a dict of columns (Ray Data's numpy batch format): ``task`` ids and one ``text_<i>`` column per value
field of the labeling config. The answer holds ``task`` and ``prediction``: the /predict item (result, score,
model_version) as JSON, computed by the same ``ProjectModel.to_results`` that answers /predict. Nothing here
talks to Label Studio: the actors of a Ray cluster get no API token.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml_backend.registry import Registry
from ml_backend.schema import parse_label_config
from ml_backend.settings import BackendSettings

from .errors import ServerError

TASK_COLUMN = "task"
PREDICTION_COLUMN = "prediction"


class PredictError(ServerError):
    """A bulk pre-annotation run cannot start or cannot go on."""


def text_column(i: int) -> str:
    """The batch column of the labeling config's i-th value field (field names may be any string)."""
    return f"text_{i}"


@dataclass(frozen=True)
class Job:
    """What a batch function needs to serve a project's pinned version anywhere (it is sent to Ray actors)."""

    project_key: str
    label_config: str
    version: str
    settings: BackendSettings


class BatchPredictor:
    """The pinned version loaded once (per process, per Ray actor), then one call per batch."""

    def __init__(self, job: Job):
        from ml_backend.models.torch_utils import set_process_device

        set_process_device(job.settings.device, job.settings.precision)
        self.spec = parse_label_config(job.label_config)
        self.pm = Registry(job.settings).get(job.project_key, self.spec)
        if self.pm.version != job.version:
            raise PredictError(f"project {job.project_key}: the serving version changed from {job.version} to "
                               f"{self.pm.version} during the run; run goldloop predict again")

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        texts = {f: [str(t) for t in batch[text_column(i)]] for i, f in enumerate(self.spec.value_fields)}
        items = self.pm.to_results(texts)
        return {TASK_COLUMN: np.asarray(batch[TASK_COLUMN], dtype=np.int64),
                PREDICTION_COLUMN: np.array([json.dumps(it) for it in items], dtype=object)}


def columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows ({"task", "text_0", ...}) as one batch of columns."""
    keys = list(rows[0]) if rows else [TASK_COLUMN]
    return {k: np.array([r[k] for r in rows], dtype=np.int64 if k == TASK_COLUMN else object) for k in keys}


def decode(batch: dict[str, Any]) -> list[dict]:
    """A batch function's answer as Label Studio prediction imports ({"task", "result", "score", "model_version"})."""
    out = []
    for tid, raw in zip(batch[TASK_COLUMN], batch[PREDICTION_COLUMN]):
        item = json.loads(raw)
        out.append({"task": int(tid), "result": item["result"], "score": float(item["score"]), "model_version": item["model_version"]})
    return out
