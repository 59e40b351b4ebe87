"""`goldloop llm eval PROJECT`: the LLM's answers on the project's fixed test split, scored exactly like a model
version, compared with the serving version on the same documents by the round's gate, and kept as a version record.

The LLM stands in for a version's models: one request per test document answers every control, and per control an
adapter (``AnswerModel``) hands evaluate_models what a model's ``predict`` would (spans; one-hot label
probabilities). A document without an answer predicts no spans, and for a single-choice control the first label
(the argmax of nothing), like a model that learned nothing. The record (kind "llm", trigger "llm-eval") names the
model and the prompt hash, never the server's key; its status is "trusted" or "not trusted" (never "promoted": no
model version serves from it, and what reads promoted versions must not count it), which `goldloop llm label` checks
(``trusted``).
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ml_backend.alignment import Span
from ml_backend.models.base import TextPrediction
from ml_backend.schema import Control, TaskSpec
from ml_backend.training import gate, has_labels

from ..errors import LoopError
from ..loop import evaluate_labeled, of_control
from ..project import Gold, ProjectContext
from ..runner import run_job
from .align import read_answer
from .prompt import PromptBuilder, project_instruction, record_text
from .provider import Provider
from .trust import KIND, NOT_TRUSTED, TRIGGER, TRUSTED

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.0  # an LLM earns trust by doing at least as well as what serves


class AnswerModel:
    """One control's view of the LLM's answers, with the ``predict`` evaluate_models calls."""

    def __init__(self, control: Control, answers: dict[str, dict[str, list]]):
        self.control, self.answers = control, answers

    def predict(self, texts: Sequence[str]) -> list[TextPrediction]:
        out = []
        for text in texts:
            got = self.answers.get(text, {}).get(self.control.name, [])
            if self.control.kind == "spans":
                out.append(TextPrediction(spans=[Span(s, e, lbl) for s, e, lbl in got]))
            else:
                out.append(TextPrediction(probs={lbl: float(lbl in got) for lbl in self.control.labels}))
        return out


def model_version(model: str, prompt_hash: str) -> str:
    """The Label Studio model_version of the LLM's predictions: ``llm-<model>-<prompt hash8>``."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in model)[:60]
    return f"llm-{safe}-{prompt_hash[:8]}"


def answer_documents(spec: TaskSpec, provider: Provider, builder: PromptBuilder, texts: Sequence[str],
                     counts: Counter | None = None) -> dict[str, dict[str, list]]:
    """Per distinct text, what the LLM's answer says per control (spans at offsets, chosen labels)."""
    counts = counts if counts is not None else Counter()
    unique = list(dict.fromkeys(texts))
    answers = provider.ask_many([(t, builder.messages(t)) for t in unique], builder.schema)
    return {t: read_answer(spec, t, answers.get(t), counts) for t in unique}


def score_llm(spec: TaskSpec, provider: Provider, builder: PromptBuilder, test: list[dict], serving_models: dict,
              tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """The LLM and the serving models on the same test records: metrics, the gate's decision, the run's counts."""
    labeled = {c.name for c in spec.controls if has_labels(c, of_control(test, c))}
    if not test or not labeled:
        raise LoopError("the test split has no labeled documents: label more (the split is 15% of the labeled documents)")
    counts: Counter = Counter()
    answers = answer_documents(spec, provider, builder, [record_text(spec, r) for r in test], counts)
    models = {c.name: AnswerModel(c, answers) for c in spec.controls}
    new = evaluate_labeled(spec, models, test, labeled)
    old = evaluate_labeled(spec, serving_models, test, labeled)
    promote, why = gate(new, old, tolerance)
    stats = provider.stats.to_dict()
    if stats["answered"] == 0:
        promote, why = False, f"the LLM answered none of {stats['asked']} test documents ({stats['dropped_reasons']}); not trusted"
    docs = max(1, stats["asked"])
    return {"metrics": new, "serving_metrics": old, "promote": promote, "decision": why, "stats": stats,
            "alignment": dict(counts), "tokens_per_doc": round((stats["prompt_tokens"] + stats["completion_tokens"]) / docs, 1),
            "seconds_per_doc": round(stats["seconds"] / docs, 3)}


def run_llm_eval(ctx: ProjectContext, provider: Provider, *, k: int = 3, tolerance: float = DEFAULT_TOLERANCE,
                 progress: bool = True, gold: Gold | None = None) -> dict:
    """Score the LLM on the project's test split and record the decision as a version (runner.run_job).

    ``gold``: records to use instead of a fresh export (tests, benchmarks); otherwise ctx.read_gold exports them."""
    cfg = provider.config
    probe = PromptBuilder.for_project(ctx.spec, ctx.project.label_config, (), k, project_instruction(ctx.project))
    record = {"kind": KIND, "llm_model": cfg.model, "prompt_hash": probe.hash, "model_version_name": model_version(cfg.model, probe.hash)}

    def build(version: str) -> dict[str, Any]:
        data = gold if gold is not None else ctx.read_gold(progress)[0]
        builder = PromptBuilder.for_project(ctx.spec, ctx.project.label_config, data.by_split.get("train", []), k, project_instruction(ctx.project))
        serving = ctx.registry.get(ctx.key, ctx.spec)
        result = score_llm(ctx.spec, provider, builder, data.by_split.get("test", []), serving.models, tolerance)
        log.info("project %s: LLM %s prompt %s: %s", ctx.pid, cfg.model, builder.hash8, result["decision"])
        return {
            "status": TRUSTED if result["promote"] else NOT_TRUSTED,
            "decision": ("trusted as a suggestion source: " if result["promote"] else "not trusted: ") + result["decision"],
            "dataset_version": data.version, "labeled_docs": len(data.records),
            "metrics": json.dumps(result["metrics"]), "serving_metrics": json.dumps(result["serving_metrics"]),
            "primary": result["metrics"].get("primary"), "serving_primary": result["serving_metrics"].get("primary"),
            "serving_version": serving.version, "llm_stats": json.dumps({**result["stats"], "alignment": result["alignment"]}),
        }

    hyper = {"model": cfg.model, "k": k, "tolerance": tolerance, "max_tokens": cfg.max_tokens, "temperature": cfg.temperature}
    return run_job(ctx, build, kind=KIND, trigger=TRIGGER, strategy=KIND, hyperparameters=hyper, record=record)

