"""The simulation's run loop: gold labels play the annotator, query strategies compete.

One run: a fixed held-out test split (stratified for document labels, never queried); per repeat a random
seed set (the same for every strategy of that repeat); each round the query model is fitted on the labeled
set, scored on the test split, the pool is scored and the strategy picks ``batch_size`` documents, whose
gold labels are then revealed. A full-data run (every non-test document) gives the reference metric. The pick goes
through ``ml_backend.sampling.rank_pool``, the ranking the loop's queue uses. Each curve point records what its
labels cost: documents, characters, tokens and modelled seconds (``ml_backend.cost.PRIOR`` with the documents' gold
entities); cost_aware predicts its seconds with the same model from the spans the query model predicts.

Self-training (``self_training=True``) adds, for every strategy, a ``<strategy>+self_training`` variant:
each round, pool documents the model is confident about (document confidence ≥ ``self_training_threshold``)
join training with their predicted labels at sample weight ``self_training_weight``. Left as ``None`` both
come from the query model (``PSEUDO_DEFAULTS``; ``finetune`` takes the loop's own ``TrainOptions``). For spans the
LR query model keeps whole documents (confidence = 1 - span uncertainty, every token takes its argmax tag);
``finetune`` self-trains as the loop does, per token (``ml_backend.training.self_train``: every pool document
joins, its tokens under the threshold masked out of the loss). Pseudo-labels never count as labels on the curve.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ml_backend.cost import PRIOR, CostModel, count_tokens
from ml_backend.evaluation import plot_learning_curves, primary_metric
from ml_backend.sampling import STRATEGIES, get_strategy, rank_pool

from ..errors import ConfigError
from .corpus import load_corpus, split_test
from .query_models import QueryModel, build_query_model, pseudo_defaults, resolve_name
from .report import SELF_TRAINING_SUFFIX, compare_strategies, strategy_result


def seed_set(pool: np.ndarray, size: int, run_seed: int) -> np.ndarray:
    """The random seed set of the repeat whose seed is ``run_seed`` (every strategy of that repeat starts from it)."""
    return np.random.default_rng(run_seed).choice(pool, size=size, replace=False)


def document_costs(corpus, cost_model: CostModel = PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, modelled seconds) of every document: what labeling it costs under ``cost_model`` with its gold
    entities (an annotator marks the gold spans, whatever the model predicted)."""
    tokens = np.array([count_tokens(t) for t in corpus.texts], dtype=np.float64)
    spans = [len(t) if corpus.task == "spans" else 0 for t in corpus.targets]
    return tokens, cost_model.predict(tokens, spans)


def _one_run(model: QueryModel, strategy_name: str, self_training: bool, pool: np.ndarray, test: np.ndarray,
             seed_docs: np.ndarray, rng: np.random.Generator, *, batch_size: int, rounds: int,
             threshold: float, weight: float, tick: Callable[[], Any],
             seed_fit: Callable[[np.ndarray], Any] | None = None,
             costs: tuple[np.ndarray, np.ndarray] | None = None, cost_model: CostModel = PRIOR) -> dict:
    """One learning curve for one strategy and one seed set; ``seed_fit`` fits the seed round (shared). ``costs``:
    every document's (tokens, modelled seconds) for the curve; ``cost_model`` predicts cost_aware's seconds from
    the model's predicted spans."""
    tokens, seconds = costs if costs is not None else document_costs(model.corpus)
    labeled = list(seed_docs)
    in_labeled = np.zeros(len(model.corpus.ids), dtype=bool)
    in_labeled[seed_docs] = True
    points, n_pseudo = [], []
    for rnd in range(rounds + 1):
        docs = np.asarray(labeled, dtype=np.int64)
        fitted = seed_fit(docs) if rnd == 0 and seed_fit is not None else model.fit(docs)
        remaining = pool[~in_labeled[pool]]
        rem_probs = model.probs(fitted, remaining) if len(remaining) else None
        if self_training and rem_probs is not None:
            fitted, n = model.self_train(fitted, docs, remaining, rem_probs, threshold, weight)
            n_pseudo.append(n)
            if n:
                rem_probs = model.probs(fitted, remaining)
        metrics = model.evaluate(fitted, test)
        # characters: the text an annotator reads for these labels, the cost a label count hides when a strategy
        # prefers long documents
        # tokens and modelled seconds: what the labels cost an annotator (docs/benchmarks.md, "Active learning in
        # seconds")
        points.append({"labels": len(labeled), "characters": int(sum(len(model.corpus.texts[i]) for i in labeled)),
                       "tokens": int(tokens[labeled].sum()), "seconds": float(seconds[labeled].sum()),
                       "metric": primary_metric(metrics)})
        tick()
        if rnd == rounds or len(remaining) == 0:
            break
        pick = rank_pool(  # the loop's own ranking (server.loop.order_scores)
            strategy_name, len(remaining), rng=rng, n=min(batch_size, len(remaining)), controls=lambda: [rem_probs],
            embeddings=lambda: model.embeddings[remaining],
            cost=lambda: cost_model.predict(tokens[remaining], model.predicted_spans(rem_probs)),
        )
        chosen = remaining[pick]
        labeled.extend(int(i) for i in chosen)
        in_labeled[chosen] = True
    out = {"points": points, "labeled_ids": [model.corpus.ids[i] for i in labeled]}
    if self_training:
        out["pseudo_labeled"] = n_pseudo
    return out


def run_simulation(
    data: Path,
    schema: Path,
    strategies: list[str],
    *,
    self_training: bool = False,
    self_training_only: bool = False,
    seed_size: int = 20,
    batch_size: int = 20,
    rounds: int = 10,
    repeats: int = 3,
    random_rounds: int | None = None,
    query_model: str = "auto",
    test_fraction: float = 0.2,
    out: Path,
    seed: int = 0,
    encoder: str | None = None,
    progress: bool = True,
    control: str | None = None,
    self_training_threshold: float | None = None,
    self_training_weight: float | None = None,
    documents: Sequence[dict] | None = None,
    backend: QueryModel | None = None,
    mlm_steps: int = 0,
    train_options=None,
    device: str | None = None,
    encoder_cache: Path | None = None,
) -> dict:
    """Simulate active learning against gold labels; write JSON to `out` and a PNG curve next to it.

    ``documents`` (records) replaces reading ``data``; ``backend`` reuses a query model (its features) already
    built by ``build_query_model`` for the same corpus (both for benchmarks that run several configurations).
    ``device`` (``auto | cpu | cuda | cuda:N``; ``None``: the process's device) is where the encoder runs; the
    report records the device used. ``random_rounds`` (default ``rounds``) runs the random baseline for more
    rounds than the strategies, so that the ratio to random resolves where random reaches 95% of the full-data
    metric late, without paying those rounds for every strategy. ``self_training_only`` (implies
    ``self_training``) runs only the self-training variants: their plain curves are the same computation as a plain
    run's, so a plain run already on record need not be paid for again; ratios then divide by plain random's figure
    when random runs, else by ``random+self_training``'s.
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from ml_backend.models.torch_utils import resolve_device

    t0 = time.perf_counter()
    used_device = str(resolve_device(device))  # a bad or absent device fails before any work
    strategies = list(dict.fromkeys(strategies))
    if not strategies:
        raise ValueError(f"give at least one strategy; expected names from {list(STRATEGIES)}")
    for name in strategies:
        get_strategy(name)  # ValueError listing the names
    for name, v in (("seed_size", seed_size), ("batch_size", batch_size), ("repeats", repeats)):
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    random_rounds = rounds if random_rounds is None else random_rounds
    self_training = self_training or self_training_only
    if random_rounds < 0:
        raise ValueError(f"random_rounds must be >= 0, got {random_rounds}")
    if mlm_steps < 0:
        raise ValueError(f"mlm_steps must be >= 0, got {mlm_steps}")
    if self_training_threshold is not None and not 0.0 < self_training_threshold <= 1.0:
        raise ValueError(f"self_training_threshold must be in (0, 1], got {self_training_threshold}")
    if self_training_weight is not None and not self_training_weight > 0.0:
        raise ValueError(f"self_training_weight must be > 0, got {self_training_weight}")
    corpus = load_corpus(documents if documents is not None else Path(data), schema, control)
    pool, test = split_test(corpus, test_fraction, seed)
    if seed_size > len(pool):
        raise ConfigError(f"seed_size {seed_size} exceeds the {len(pool)} documents outside the test split")
    t_feat = time.perf_counter()
    if backend is None:
        backend, qm, enc = build_query_model(corpus, query_model, encoder, progress=progress, mlm_steps=mlm_steps,
                                             mlm_texts=[corpus.texts[i] for i in pool], seed=seed,
                                             train_options=train_options, device=device, encoder_cache=encoder_cache)
    else:
        qm, enc = resolve_name(query_model, corpus.task), encoder
        if backend.corpus.ids != corpus.ids:
            raise ValueError("the given backend was built for other documents")
    features_s = time.perf_counter() - t_feat
    threshold, weight = pseudo_defaults(qm, train_options, corpus.task)
    threshold = threshold if self_training_threshold is None else self_training_threshold
    weight = weight if self_training_weight is None else self_training_weight

    # tiny fits: one BLAS/OpenMP thread is faster than two fighting; fine-tuning wants every core
    limiter = threadpool_limits(1) if qm != "finetune" else None
    try:
        full_model = backend.fit(pool)
        full_metrics = backend.evaluate(full_model, test)
        full = primary_metric(full_metrics)
        metric_name = "entity_f1" if corpus.task == "spans" else "macro_f1"

        modes = [True] if self_training_only else [False, True] if self_training else [False]
        variants = [(s, st) for st in modes for s in strategies]
        seeds = [seed + 1000 * (r + 1) for r in range(repeats)]
        def rounds_of(name: str) -> int:
            return random_rounds if name == "random" else rounds

        def n_points(name: str) -> int:
            return min(rounds_of(name), int(np.ceil((len(pool) - seed_size) / batch_size))) + 1

        costs = document_costs(corpus)
        bar = tqdm(total=repeats * sum(n_points(name) for name, _ in variants), desc="simulate", disable=not progress)
        results: dict[str, dict] = {}
        timing: dict[str, float] = {}
        # every variant of a repeat starts from the same seed set, so its first model is fitted once and shared
        # (query models never change a fitted model; a minutes-long fine-tune per variant is saved). The first
        # variant's timing includes that fit.
        seed_models: dict[int, Any] = {}

        def shared_seed_fit(s: int) -> Callable[[np.ndarray], Any]:
            def fit(docs: np.ndarray) -> Any:
                if s not in seed_models:
                    seed_models[s] = backend.fit(docs)
                return seed_models[s]
            return fit
        for name, st in variants:
            key = name + (SELF_TRAINING_SUFFIX if st else "")
            bar.set_postfix_str(key)
            ts = time.perf_counter()
            runs = []
            for r, s in enumerate(seeds):
                seed_docs = seed_set(pool, seed_size, s)
                run = _one_run(
                    backend, name, st, pool, test, seed_docs, np.random.default_rng(s + 1),
                    batch_size=batch_size, rounds=rounds_of(name), threshold=threshold,
                    weight=weight, tick=lambda: bar.update(1), seed_fit=shared_seed_fit(s), costs=costs,
                )
                runs.append({"repeat": r, "seed": s, **run})
            timing[key] = round(time.perf_counter() - ts, 3)
            results[key] = strategy_result(name, st, runs, full)
        bar.close()
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    compare_strategies(results, strategies, self_training)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_path = out.with_suffix(".png")
    plot_learning_curves({k: v["curve"] for k, v in results.items()}, plot_path, metric_name, reference=full,
                         title=f"{Path(str(data)).name if data is not None else 'documents'} · {qm}")
    report = {
        "data": str(data) if data is not None else None,
        "schema": str(schema) if isinstance(schema, Path) or not str(schema).lstrip().startswith("<") else None,
        "task": corpus.task,
        "control": corpus.control,
        "labels": corpus.labels,
        "metric": metric_name,
        "query_model": qm,
        "encoder": enc,
        "device": used_device if qm != "tfidf_lr" else "cpu",  # TF-IDF + LR is scikit-learn on the CPU
        "fits": backend.fits,  # finetune: the model kind, steps and seconds of every fit
        "n_documents": len(corpus.ids),
        "duplicates_dropped": corpus.duplicates_dropped,
        "n_pool": int(len(pool)),
        "n_test": int(len(test)),
        "test_ids": [corpus.ids[i] for i in test],
        "seed": seed,
        "seeds": seeds,
        "seed_size": seed_size,
        "batch_size": batch_size,
        "rounds": rounds,
        "random_rounds": random_rounds,
        "repeats": repeats,
        "domain_adaptation": backend.domain_adaptation,
        "encoder_choice": backend.encoder_choice,
        "self_training": self_training,
        "self_training_only": self_training_only,
        "self_training_threshold": threshold if self_training else None,
        "self_training_weight": weight if self_training else None,
        "full_data": {"labels": int(len(pool)), "metric": full, "metrics": full_metrics},
        "target_95": 0.95 * full,
        # the seconds on every curve and cost_aware's predictions: ml_backend.cost's prior (no annotation times offline)
        "cost_model": PRIOR.to_dict(),
        "strategies": results,
        "ratio_to_random": {k: v["ratio_to_random"] for k, v in results.items()},
        "timing": {"features_s": round(features_s, 3), "strategies_s": timing,
                   "total_s": round(time.perf_counter() - t0, 3)},
        "plot": str(plot_path),
    }
    out.write_text(json.dumps(report, indent=1, default=_json_default), encoding="utf-8")
    return report


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
