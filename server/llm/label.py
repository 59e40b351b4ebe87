"""`goldloop llm label PROJECT`: the LLM's suggestions on the unlabeled pool, as Label Studio predictions of model
version ``llm-<model>-<prompt hash8>``.

Only for a project that trusts this model and prompt (`goldloop llm eval` trusted it), unless forced. Resumable:
answers are cached by (text hash, prompt hash, model) as they arrive and the tasks given a prediction are
remembered (server/llm/cache.py), so a rerun after a kill asks only for the documents it has no answer for and posts
only to the tasks it has not posted to. Predictions go to Label Studio in batches, one request each; a kill between
a batch's request and its record can post that batch twice, never lose it.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Callable, Sequence

from .. import ls_client
from ..errors import ExportError
from ..project import ProjectContext
from .align import read_answer, result_items
from .cache import AnswerCache
from .evaluate import model_version
from .prompt import PromptBuilder, project_instruction, text_field
from .provider import LLMError, Provider
from .trust import trusted

log = logging.getLogger(__name__)

BATCH = 32  # documents asked and predictions posted per step: what a kill can cost at most


def _post_to_label_studio(ctx: ProjectContext) -> Callable[[list[dict]], int]:
    return lambda items: ls_client.import_predictions(ctx.client, ctx.pid, items)


def label_pool(ctx: ProjectContext, provider: Provider, *, k: int = 3, force: bool = False, limit: int | None = None,
               progress: bool = True, train: Sequence[dict] | None = None, pool: Sequence[tuple[int, str]] | None = None,
               post: Callable[[list[dict]], int] | None = None, batch: int = BATCH) -> dict[str, Any]:
    """Pre-label the project's pool with the LLM; returns the run's counts.

    ``train`` (few-shot gold), ``pool`` ((task id, text) pairs) and ``post`` (stores a batch of predictions) default to
    the project's export, its unlabeled tasks and Label Studio; tests and benchmarks pass their own."""
    cfg, spec = provider.config, ctx.spec
    field = text_field(spec)
    probe = PromptBuilder.for_project(spec, ctx.project.label_config, (), k, project_instruction(ctx.project))
    version = model_version(cfg.model, probe.hash)
    trust = trusted(ctx.db, ctx.pid, cfg.model, probe.hash)
    if trust is None and not force:
        raise LLMError(f"project {ctx.pid} does not trust {cfg.model} with prompt {probe.hash8}: run `goldloop llm eval {ctx.pid}` "
                       "first (its gate must trust it), or pass --force")
    if train is None or pool is None:
        try:
            gold, tasks = ctx.read_gold(progress)
            found_train = gold.by_split.get("train", [])
        except ExportError:  # nothing labeled yet: no few-shot examples, the pool is every task
            tasks, found_train = ctx.read_pool(), []
        train = found_train if train is None else train
        pool = list(zip(tasks.pool_ids, tasks.pool_texts[field])) if pool is None else pool
    builder = PromptBuilder.for_project(spec, ctx.project.label_config, train, k, project_instruction(ctx.project))
    cache = AnswerCache(ctx.settings.data_dir.llm_cache_path)
    done = cache.posted(ctx.pid, version)
    todo = [(tid, text) for tid, text in pool if tid not in done][: limit if limit is not None else None]
    post = post or _post_to_label_studio(ctx)
    counts: Counter = Counter(pool=len(pool), already_posted=sum(1 for tid, _ in pool if tid in done))
    bar = _progress(len(todo), progress)
    for i in range(0, len(todo), batch):
        step = todo[i:i + batch]
        answers: dict[int, dict | None] = {}
        missing = []
        for tid, text in step:
            got = cache.get(text, builder.hash, cfg.model)
            if got is not None:
                answers[tid] = got
                counts["cached"] += 1
            else:
                missing.append((tid, text))
        texts = dict(missing)

        def keep(tid, answer, texts=texts):  # stored as it arrives: a kill loses nothing answered
            if answer is not None:
                cache.put(texts[tid], builder.hash, cfg.model, answer)

        answers.update(provider.ask_many([(tid, builder.messages(text)) for tid, text in missing], builder.schema, keep))
        items = []
        for tid, text in step:
            if answers.get(tid) is None:
                counts["unanswered"] += 1
                continue
            result = result_items(spec, text, read_answer(spec, text, answers[tid], counts))
            # no "score": a chat answer carries no calibrated confidence, and a made-up one would reorder the queue
            items.append({"task": tid, "result": result, "model_version": version})
        if items:
            post(items)
            cache.mark_posted(ctx.pid, [it["task"] for it in items], version)
            counts["predictions"] += len(items)
        bar.update(len(step))
    bar.close()
    return {"model_version": version, "prompt_hash": builder.hash, "trusted_by": (trust or {}).get("version"), "forced": trust is None,
            "counts": dict(counts), "stats": provider.stats.to_dict()}


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="LLM pre-annotation", unit="doc", disable=not enabled)
