"""Model versions on disk and in memory: one ProjectModel per (project, version), thread-safe hot swap.

Layout: ``<home>/models/<project>/<version>/<control dir>/`` (one saved model per control) +
``version.json``; ``<home>/models/<project>/serving.json`` names the version being served. Every path
under the root is built by ``Registry.path``, which validates each name and asserts the result stays under
the root: no request value reaches the file system unchecked.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import ids
from .cache import PredictionCache
from .errors import LimitExceeded, UnsafePath
from .models import Examples, Model, PrototypeClassifier, SpanMatcher, TextPrediction, load_model
from .models.base import chosen_labels
from .online import LOG_PREFIX, OnlineLog, record_for
from .results import choice_item, choices_of, span_item, spans_of
from .schema import Control, TaskSpec
from .settings import BackendSettings

log = logging.getLogger(__name__)


def cold_start_version(spec: TaskSpec) -> str:
    return f"coldstart-{spec.config_hash[:8]}"


def control_dirname(name: str) -> str:
    """The directory of a control's saved model: its name when that is a safe file name, else a hash of it."""
    if ids.is_safe_component(name):
        return name
    return "control-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def new_version_name() -> str:
    return time.strftime("v%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


@dataclass
class ProjectModel:
    """The models serving one project: one per control of its labeling config."""

    spec: TaskSpec
    version: str
    models: dict[str, Model]
    meta: dict = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    online_offset: int = 0  # bytes of this version's online log already applied (online.OnlineLog)

    def predict_texts(self, texts_by_field: dict[str, Sequence[str]], cache: PredictionCache | None = None) -> dict[str, list[TextPrediction]]:
        """Per control name, one TextPrediction per text (cached by model key and text)."""
        out: dict[str, list[TextPrediction]] = {}
        with self.lock:
            for control in self.spec.controls:
                model = self.models[control.name]
                texts = list(texts_by_field[control.value_field])
                key = f"{self.version}:{control.name}:{model.cache_key()}"
                preds: list[TextPrediction | None] = [cache.get(key, t) if cache is not None else None for t in texts]
                todo = [i for i, p in enumerate(preds) if p is None]
                if todo:
                    fresh = model.predict([texts[i] for i in todo])
                    for i, p in zip(todo, fresh):
                        preds[i] = p
                        if cache is not None:
                            cache.put(key, texts[i], p)
                out[control.name] = preds  # type: ignore[assignment]
        return out

    def to_results(self, texts_by_field: dict[str, Sequence[str]], cache: PredictionCache | None = None) -> list[dict]:
        """Label Studio prediction items, one per text: result regions, task score, model_version.

        The task score is the confidence of the least confident control, so uncertainty sampling (lowest
        score first) surfaces a document if any of its controls is uncertain. Once some controls are
        trained, cold-start controls (nobody labels them yet) do not count: their flat confidence would
        otherwise cap every score and erase the order.
        """
        per_control = self.predict_texts(texts_by_field, cache)
        n = len(next(iter(texts_by_field.values())))
        cold = set(self.meta.get("cold_start", []))
        scored = {c.name for c in self.spec.controls if c.name not in cold} or {c.name for c in self.spec.controls}
        items = []
        for i in range(n):
            result: list[dict] = []
            confidences = []
            for control in self.spec.controls:
                pred = per_control[control.name][i]
                if control.name in scored:
                    confidences.append(pred.confidence)
                text = texts_by_field[control.value_field][i]
                result += regions(control, pred, text)
            items.append({"result": result, "score": float(min(confidences)) if confidences else 0.0, "model_version": self.version})
        return items

    def learn(self, control: Control, text: str, result_items: list[dict]) -> bool:
        """Online update of a control's cold-start model from an annotation's result items (those of other
        controls are ignored); returns True if anything changed."""
        model = self.models.get(control.name)
        changed = False
        with self.lock:
            if isinstance(model, SpanMatcher):
                for s, e, lbl in spans_of(result_items, control.name):
                    if 0 <= s < e <= len(text):
                        changed |= model.add(text[s:e], lbl)
            elif isinstance(model, PrototypeClassifier):
                labels = [c for c in choices_of(result_items, control.name) if c in model.labels]
                if labels:
                    model.fit(Examples([text], [labels]))
                    changed = True
        return changed

    def online_controls(self) -> set[str]:
        """The controls whose model learns from single annotations (the cold-start matcher and prototypes)."""
        return {name for name, m in self.models.items() if m.learns_online}

    def learn_annotation(self, data: dict, result_items: list) -> bool:
        """Online update of every control whose text is in the task ``data``; True if anything changed."""
        changed = False
        for control in self.spec.controls:
            text = data.get(control.value_field)
            if isinstance(text, str):
                changed |= self.learn(control, text, result_items)
        return changed


def regions(control: Control, pred: TextPrediction, text: str) -> list[dict]:
    """Label Studio result regions for one control's prediction on one text."""
    if control.kind == "spans":
        return [span_item(control, s.start, s.end, s.label, text, s.score) for s in pred.spans]
    chosen = chosen_labels(pred.probs, control.multi)
    if not chosen:
        return []
    return [choice_item(control, chosen, min(pred.probs[c] for c in chosen))]


def cold_start_model(control: Control, settings: BackendSettings, model_name: str | None = None) -> Model:
    """The model a control gets before any training: a string matcher (spans) or label prototypes (choices)
    on ``model_name`` (the encoder the project's version chose) or the configured encoder."""
    if control.kind == "spans":
        return SpanMatcher(control.labels)
    return PrototypeClassifier(
        control.labels, control.multi, model_name=model_name or settings.model, threads=settings.threads, max_length=min(settings.max_length, 256)
    )


class Registry:
    """Every project's serving model, loaded once and shared by requests; swapped atomically on promotion.

    Bounded: at most ``settings.max_loaded_projects`` projects are held in memory (the least recently used one is
    unloaded and reloaded from disk, its online log replayed, on its next request), and at most
    ``settings.max_projects`` project keys are accepted (``admit``).
    """

    def __init__(self, settings: BackendSettings):
        self.settings = settings
        self.root = Path(settings.models_dir)
        self._serving: OrderedDict[str, ProjectModel] = OrderedDict()  # least recently used first
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._known: set[str] | None = None  # admitted project keys, read from the models dir on first use
        self.listeners: list[Callable[[str, str], None]] = []

    def path(self, project: str, version: str | None = None, control: str | None = None, file: str | None = None) -> Path:
        """``root/project[/version[/control dir]][/file]``: the one place that joins names under the models root.

        Raises UnsafePath for a project key ``ids.project_key`` would not return, a version that is no safe
        directory name, or a result that leaves the root.
        """
        if not ids.is_project_key(project):
            raise UnsafePath(f"project key {ids.shown(project)} is not a validated project key")
        parts = [project]
        if version is not None:
            if not ids.is_version(version):
                raise UnsafePath(f"model version {ids.shown(version)} is not a safe directory name")
            parts.append(version)
        if control is not None:
            parts.append(control_dirname(control))
        if file is not None:
            parts.append(file)
        root = Path(os.path.abspath(self.root))
        out = Path(os.path.normpath(root.joinpath(*parts)))
        if root not in out.parents:
            raise UnsafePath(f"{ids.shown(str(out))} is not under the models dir {root}")
        return out

    def admit(self, project: str) -> str:
        """``project`` when this process may hold state for it: a key already known or with a models dir, or a new
        one while fewer than ``max_projects`` are known; else LimitExceeded (a 400 naming the limit)."""
        with self._guard:
            if self._known is None:
                self._known = set(self.projects())
            if project in self._known:
                return project
            if len(self._known) >= self.settings.max_projects and not self.path(project).is_dir():
                raise LimitExceeded(f"this backend already holds {len(self._known)} projects, its limit "
                                    f"(GOLDLOOP_MAX_PROJECTS={self.settings.max_projects}); project {ids.shown(project)} is refused")
            self._known.add(project)
            return project

    def _lock(self, project: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(project, threading.Lock())

    def pointer(self, project: str) -> dict | None:
        """serving.json of a project, or None when absent, unreadable or naming an unsafe version."""
        p = self.path(project, file="serving.json")
        try:
            ptr = json.loads(p.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(ptr, dict) or not ids.is_version(ptr.get("version")):
            log.warning("project %s: ignoring %s: it names no valid version", project, p)
            return None
        return ptr

    def current_version(self, project: str, spec: TaskSpec | None = None) -> str:
        """The version that serves (or will serve) a project — cheap: never loads a model."""
        ptr = self.pointer(project)
        if ptr:
            return ptr["version"]
        return cold_start_version(spec) if spec else "coldstart"

    def _stale(self, project: str, pm: ProjectModel) -> bool:
        """True when another process (e.g. `goldloop train`) promoted a version this process does not serve.

        Reads serving.json only when its mtime changed, and answers the same until the model is reloaded
        (get() asks twice, before and under the lock).
        """
        p = self.path(project, file="serving.json")
        try:
            mtime = p.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        seen = pm.meta.get("pointer_seen")
        if seen is None or seen[0] != mtime:
            seen = (mtime, (self.pointer(project) or {}).get("version"))
            pm.meta["pointer_seen"] = seen
        return bool(seen[1]) and seen[1] != pm.version

    def loaded(self, project: str) -> ProjectModel | None:
        return self._serving.get(project)

    def serving_items(self) -> list[tuple[str, ProjectModel]]:
        """(project, ProjectModel) for every project loaded in this process."""
        with self._guard:
            return list(self._serving.items())

    def install(self, project: str, pm: ProjectModel) -> None:
        """Serve a ProjectModel for a project without saving it (benchmarks, tests)."""
        with self._guard:
            self._serving[project] = pm
            self._serving.move_to_end(project)

    def _fresh(self, project: str, spec: TaskSpec) -> ProjectModel | None:
        """The loaded ProjectModel when it serves this labeling config and the promoted version."""
        pm = self._serving.get(project)
        if pm is not None and pm.spec.config_hash == spec.config_hash and not self._stale(project, pm):
            with self._guard:
                if project in self._serving:
                    self._serving.move_to_end(project)
            return pm
        return None

    def _serve(self, project: str, pm: ProjectModel) -> None:
        """Swap pm in for the project (the most recently used), unload the least recently used past the bound, and
        tell the listeners."""
        with self._guard:
            self._serving[project] = pm
            self._serving.move_to_end(project)
            unloaded = []
            while len(self._serving) > max(1, self.settings.max_loaded_projects):
                unloaded.append(self._serving.popitem(last=False)[0])
        for name in unloaded:
            log.info("project %s: unloaded (more than %d projects in memory); reloaded on its next request", name,
                     self.settings.max_loaded_projects)
        for fn in self.listeners:
            fn(project, pm.version)

    def saved(self, project: str, spec: TaskSpec, version: str) -> ProjectModel:
        """A saved version of a project loaded as it would serve (not installed; controls it holds no usable model of
        get their cold-start model). Raises FileNotFoundError for a version never saved."""
        if not self.path(project, version).is_dir():
            raise FileNotFoundError(f"project {project} has no saved version {version!r}")
        return self._version(project, spec, version)

    def _version(self, project: str, spec: TaskSpec, version: str) -> ProjectModel:
        """The models of a saved version, per control; a control whose model is missing, cannot be loaded or knows other
        labels than the config's gets its cold-start model (listed in meta["cold_start"])."""
        recorded = self.path(project, version, file="version.json")
        record = json.loads(recorded.read_text()) if recorded.is_file() else {}
        models: dict[str, Model] = {}
        cold = []
        for control in spec.controls:
            cdir = self.path(project, version, control.name)
            try:
                m = load_model(cdir, quantize=self.settings.quantize, threads=self.settings.threads) if (cdir / "goldloop_model.json").exists() else None
            except (OSError, ValueError, KeyError, TypeError) as exc:  # TypeError: skops refused a type
                log.warning("project %s: cannot load %s (%s); using the cold-start model", project, cdir, exc)
                m = None
            if m is None or list(m.labels) != list(control.labels):
                cold.append(control.name)
                m = cold_start_model(control, self.settings, record.get("model_name"))
            models[control.name] = m
        meta: dict[str, Any] = {"cold_start": cold}
        if record.get("model_name"):
            meta["model_name"] = record["model_name"]
        return ProjectModel(spec, version, models, meta)

    def get(self, project: str, spec: TaskSpec) -> ProjectModel:
        """The serving ProjectModel for a project and labeling config (loaded on first use), with every
        annotation any process taught it online applied."""
        pm = self._fresh(project, spec)
        if pm is None:
            with self._lock(project):
                pm = self._fresh(project, spec)
                if pm is None:
                    pm = self._load(project, spec)
                    self._serve(project, pm)
        self.catch_up(project, pm)
        return pm

    # --- online learning shared by every process (ml_backend.online) ----------------------------------

    def online_log(self, project: str, version: str) -> OnlineLog:
        """The online-learning log of one project version: ``<root>/<project>/online-<version>.jsonl``."""
        if not ids.is_version(version):
            raise UnsafePath(f"model version {ids.shown(version)} is not a safe file name")
        return OnlineLog(self.path(project, file=f"{LOG_PREFIX}{version}.jsonl"))

    def catch_up(self, project: str, pm: ProjectModel) -> bool:
        """Apply the lines of pm's online log this process has not applied yet; True if a model changed."""
        if not ids.is_version(pm.version):  # a model installed by hand under a name that is no file name
            return False
        olog = self.online_log(project, pm.version)
        if olog.size() <= pm.online_offset:  # the common case: one stat
            return False
        changed = False
        with pm.lock:
            records, pm.online_offset = olog.read_from(pm.online_offset)
            for rec in records:
                if rec.get("config_hash") == pm.spec.config_hash:
                    changed |= pm.learn_annotation(rec["data"], rec["result"])
        return changed

    def teach(self, project: str, spec: TaskSpec, data: dict, result: list) -> bool:
        """Record an annotation in the serving version's online log, so that every process learns it.

        When this process serves the project it applies the log at once; True when one of its models changed.
        When it does not, the record waits in the log for the load; True when it was recorded.
        """
        pm = self._serving.get(project)
        if pm is not None and pm.spec.config_hash != spec.config_hash:
            pm = None
        record = record_for(spec, data, result, pm.online_controls() if pm is not None else None)
        version = pm.version if pm is not None else self.current_version(project, spec)
        if record is None or not self.online_log(project, version).append(record):
            return False
        return self.catch_up(project, pm) if pm is not None else True

    def _load(self, project: str, spec: TaskSpec) -> ProjectModel:
        ptr = self.pointer(project)
        if ptr:
            pm = self._version(project, spec, ptr["version"])
        else:
            models = {c.name: cold_start_model(c, self.settings, None) for c in spec.controls}
            pm = ProjectModel(spec, cold_start_version(spec), models, {"cold_start": [c.name for c in spec.controls]})
        log.info("project %s: serving %s (cold start for %s)", project, pm.version, pm.meta["cold_start"] or "none")
        return pm

    def promote(self, project: str, pm: ProjectModel, info: dict | None = None) -> Path:
        """Save a project's new models as a version, point serving.json at it, swap it in atomically."""
        vdir = self.path(project, pm.version)
        for name, model in pm.models.items():
            if name not in pm.meta.get("cold_start", []):  # cold-start models are rebuilt on load, not saved
                cdir = self.path(project, pm.version, name)
                model.save(cdir)
                self._prepare_serving(model, cdir)
        record = {"version": pm.version, "config_hash": pm.spec.config_hash, "promoted_at": time.time(), **(info or {})}
        (vdir / "version.json").write_text(json.dumps(record, indent=2, default=str))
        tmp = self.path(project, file=f".serving-{uuid.uuid4().hex}.json")
        tmp.write_text(json.dumps({"version": pm.version, "config_hash": pm.spec.config_hash}))
        os.replace(tmp, self.path(project, file="serving.json"))
        self._serve(project, pm)
        self.drop_online_logs(project, keep=pm.version)
        return vdir

    def drop_online_logs(self, project: str, keep: str) -> list[str]:
        """Remove the online logs of every version but ``keep``: the promoted version learned from the labels
        themselves, so only one log per project grows (at most online.MAX_LOG_BYTES). The names removed."""
        removed = []
        for p in self.path(project).glob(f"{LOG_PREFIX}*.jsonl"):
            if p.name != f"{LOG_PREFIX}{keep}.jsonl":
                p.unlink(missing_ok=True)
                removed.append(p.name)
        return removed

    def _prepare_serving(self, model: Model, saved: Path) -> None:
        """Build what serving needs (the int8 graph) before serving.json names the version: the load is then fast."""
        prepare = getattr(model, "prepare_serving", None)
        if prepare is None:
            return
        try:
            prepare(saved, self.settings.quantize)
        except Exception as exc:  # noqa: BLE001 - only a head start: the backend builds it on load otherwise
            log.warning("could not prepare %s for %s serving (%s); the backend does it on load", saved,
                        self.settings.quantize, exc)

    def projects(self) -> list[str]:
        """The projects with a directory under the root (validated keys only)."""
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.glob("*") if p.is_dir() and ids.is_project_key(p.name))

    def promoted(self) -> dict[str, str]:
        """The version serving.json names, per project that has one."""
        return {proj: ptr["version"] for proj in self.projects() if (ptr := self.pointer(proj))}

    def versions(self, project: str | None = None) -> list[dict]:
        """Every saved version (newest first), with its record; all projects when none is given."""
        projects = [project] if project else self.projects()
        out = []
        for proj in projects:
            serving = (self.pointer(proj) or {}).get("version")
            for vfile in sorted(self.path(proj).glob("*/version.json"), reverse=True):
                try:
                    rec = json.loads(vfile.read_text())
                except json.JSONDecodeError:
                    continue
                rec.update(project=proj, serving=rec.get("version") == serving)
                out.append(rec)
        return out
