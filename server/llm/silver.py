"""Silver labels: a round trains the project's small model on the LLM's answers for the unlabeled pool (what
`goldloop llm label` cached) next to the gold labels, at a lower weight, so the fast model serves what the LLM knows.

Only the LLM the project trusts (its newest `goldloop llm eval` passed the gate: trust.py) teaches, and only its
cached answers: a round never calls the server. A document without a cached answer gives no example; an answer
with no entity is an example of "no entity here"; a document-label control gets the example only when the answer
chose a label.
"""
from __future__ import annotations

from collections import Counter

from ml_backend.models import Examples
from ml_backend.schema import TaskSpec

from ..errors import LoopError
from .align import read_answer
from .cache import AnswerCache
from .prompt import text_field
from .trust import trusted_model


def silver_examples(ctx, pool_texts: dict[str, list[str]], weight: float, limit: int = 2000) -> tuple[dict[str, Examples], dict]:
    """Per control, the trusted LLM's cached answers on the pool as examples weighing ``weight``, from at most
    ``limit`` answered documents (a round's training set stays bounded however large the pool: TrainOptions.max_pool,
    the cap self-training has too); and what was used (model, documents per control, answers read). Raises LoopError
    when the project trusts no LLM."""
    record = trusted_model(ctx.db, ctx.pid)
    if record is None:
        raise LoopError(f"project {ctx.pid} trusts no LLM: run `goldloop llm eval {ctx.pid}` (its gate must trust it) and "
                        f"`goldloop llm label {ctx.pid}` before training on silver labels")
    return examples_from_cache(ctx.spec, AnswerCache(ctx.settings.data_dir.llm_cache_path), record["llm_model"],
                               pool_texts.get(text_field(ctx.spec), []), weight, limit)


def examples_from_cache(spec: TaskSpec, cache: AnswerCache, model: str, texts: list[str], weight: float,
                        limit: int = 2000) -> tuple[dict[str, Examples], dict]:
    """silver_examples' work for one model's cached answers on ``texts``."""
    counts: Counter = Counter()
    out = {c.name: Examples([], [], []) for c in spec.controls}
    answered = 0
    for text in dict.fromkeys(texts):  # a duplicated pool text teaches once
        if answered >= limit:
            break
        answer = cache.latest(text, model)
        if answer is None:
            continue
        answered += 1
        read = read_answer(spec, text, answer, counts)
        for c in spec.controls:
            if c.kind == "spans" or read[c.name]:
                ex = out[c.name]
                ex.texts.append(text)
                ex.targets.append(list(read[c.name]))
                ex.weights.append(weight)
    info = {"llm_model": model, "weight": weight, "pool_docs": len(texts), "answered": answered,
            "docs": {name: len(ex.texts) for name, ex in out.items()}, "alignment": dict(counts)}
    return out, info
