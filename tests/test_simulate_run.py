"""The offline active-learning simulation on small real subsets (tests/data/simulate, see SOURCE.md)."""
import json
import time
from pathlib import Path

import numpy as np
import pytest

from server.simulate.query_models import PSEUDO_DEFAULTS, pseudo_defaults
from server.simulate.report import labels_to_target, summary_table
from server.simulate.run import run_simulation

DATA = Path(__file__).parent / "data" / "simulate"


def test_classification_simulation(tmp_path):
    out = tmp_path / "sim.json"
    t0 = time.perf_counter()
    rep = run_simulation(
        DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin", "random"], query_model="tfidf_lr",
        seed_size=20, batch_size=20, rounds=3, repeats=2, out=out, seed=5, progress=False, self_training=True,
    )
    assert time.perf_counter() - t0 < 30
    on_disk = json.loads(out.read_text())
    assert on_disk["strategies"].keys() == rep["strategies"].keys()
    for key in ("query_model", "encoder", "full_data", "seeds", "timing", "ratio_to_random", "test_ids", "metric"):
        assert key in on_disk
    assert on_disk["query_model"] == "tfidf_lr" and on_disk["metric"] == "macro_f1"
    assert set(on_disk["strategies"]) == {"margin", "random", "margin+self_training", "random+self_training"}
    assert on_disk["n_test"] == 60 and on_disk["n_pool"] == 240
    png = out.with_suffix(".png")
    assert png.exists() and png.stat().st_size > 1000
    test_ids = set(on_disk["test_ids"])
    text_of = {d["id"]: d["text"] for d in map(json.loads, (DATA / "tweets_300.jsonl").open())}
    for name, res in on_disk["strategies"].items():
        assert [p["labels"] for p in res["curve"]] == [20, 40, 60, 80]
        assert all(0 <= p["mean"] <= 1 and p["std"] >= 0 for p in res["curve"])
        assert len(res["runs"]) == 2
        for run in res["runs"]:
            assert len(run["labeled_ids"]) == 80 == len(set(run["labeled_ids"]))
            # the text read for each point's labels
            assert [p["characters"] for p in run["points"]] == [
                sum(len(text_of[i]) for i in run["labeled_ids"][:n]) for n in (20, 40, 60, 80)]
            assert not test_ids & set(run["labeled_ids"])
        assert "ratio_to_random" in res and "labels_to_95" in res
        # each repeat's own labels-to-95, from its own points, against the same target as the mean curve
        assert len(res["labels_to_95_runs"]) == 2
        for run, l95 in zip(res["runs"], res["labels_to_95_runs"]):
            own = [{"labels": p["labels"], "mean": p["metric"]} for p in run["points"]]
            assert l95 == run["labels_to_95"] == labels_to_target(own, on_disk["target_95"])
    table = summary_table(on_disk)
    # the labels table, a blank line, then documents / tokens / seconds to 90, 95 and 98% per strategy
    assert "per repeat" in table and len(table.splitlines()) == 2 + len(on_disk["strategies"]) + 2 + 3 * len(on_disk["strategies"])
    assert "seconds" in table.splitlines()[3 + len(on_disk["strategies"])]
    assert on_disk["cost_model"]["per_span"] > 0
    for res in on_disk["strategies"].values():
        for run in res["runs"]:  # tokens and modelled seconds of each point's labeled documents
            assert all(p["seconds"] > 0 and p["tokens"] > 0 for p in run["points"])
            assert [p["tokens"] for p in run["points"]] == sorted(p["tokens"] for p in run["points"])
        assert set(res["to_target"]) == {"90", "95", "98"}
        assert all(set(v) == {"labels", "tokens", "seconds"} for v in res["to_target"].values())
        assert res["to_target"]["95"]["labels"] == res["labels_to_95"]
        assert set(res["ratios"]["95"]) == {"labels", "tokens", "seconds"}
    # same seed set for every strategy of a repeat; different seed sets across repeats
    m, r = on_disk["strategies"]["margin"]["runs"], on_disk["strategies"]["random"]["runs"]
    assert m[0]["labeled_ids"][:20] == r[0]["labeled_ids"][:20]
    assert m[0]["labeled_ids"][:20] != m[1]["labeled_ids"][:20]
    assert 0 < on_disk["full_data"]["metric"] <= 1
    assert on_disk["ratio_to_random"]["random"] in (None, 1.0)


def test_self_training_threshold_and_weight(tmp_path):
    """Defaults follow the query model and are recorded; the threshold decides which documents join."""
    kw = dict(query_model="tfidf_lr", seed_size=20, batch_size=20, rounds=2, repeats=1, seed=5, progress=False,
              self_training=True)
    rep = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin"], out=tmp_path / "d.json", **kw)
    assert (rep["self_training_threshold"], rep["self_training_weight"]) == PSEUDO_DEFAULTS["tfidf_lr"] == (0.7, 0.3)
    low = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin"], out=tmp_path / "l.json",
                         self_training_threshold=0.4, self_training_weight=0.5, **kw)
    none = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin"], out=tmp_path / "n.json",
                          self_training_threshold=1.0, **kw)
    assert (low["self_training_threshold"], low["self_training_weight"]) == (0.4, 0.5)
    n_low = low["strategies"]["margin+self_training"]["runs"][0]["pseudo_labeled"]
    n_none = none["strategies"]["margin+self_training"]["runs"][0]["pseudo_labeled"]
    assert max(n_low) > 0 and n_none == [0, 0, 0]
    # nothing passes a threshold of 1.0, so the self-training curve is the plain one
    assert none["strategies"]["margin+self_training"]["curve"] == none["strategies"]["margin"]["curve"]
    # round 0 fits the same seed documents in all three runs: a lower threshold passes at least as many
    n_default = rep["strategies"]["margin+self_training"]["runs"][0]["pseudo_labeled"]
    assert n_low[0] >= n_default[0] >= n_none[0]
    assert pseudo_defaults("encoder_lr") == (0.8, 0.3)
    from ml_backend.training import TrainOptions

    assert pseudo_defaults("finetune") == (TrainOptions().pseudo_threshold, TrainOptions().doc_pseudo_weight)
    assert pseudo_defaults("finetune", TrainOptions(pseudo_threshold=0.95, doc_pseudo_weight=0.5)) == (0.95, 0.5)
    assert pseudo_defaults("finetune", TrainOptions(pseudo_weight=0.2), "spans") == (TrainOptions().pseudo_threshold, 0.2)
    for bad in (dict(self_training_threshold=0.0), dict(self_training_threshold=1.5), dict(self_training_weight=0.0)):
        with pytest.raises(ValueError, match="self_training_"):
            run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin"], out=tmp_path / "x.json", **{**kw, **bad})


def test_simulation_is_reproducible(tmp_path):
    kw = dict(query_model="tfidf_lr", rounds=2, repeats=1, seed=3, progress=False)
    a = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["entropy"], out=tmp_path / "a.json", **kw)
    b = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["entropy"], out=tmp_path / "b.json", **kw)
    assert a["strategies"]["entropy"]["curve"] == b["strategies"]["entropy"]["curve"]
    assert a["strategies"]["entropy"]["runs"][0]["labeled_ids"] == b["strategies"]["entropy"]["runs"][0]["labeled_ids"]


def test_random_runs_more_rounds_than_the_strategies(tmp_path):
    kw = dict(query_model="tfidf_lr", seed_size=20, batch_size=20, repeats=1, seed=3, progress=False)
    long = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin", "random"], rounds=2, random_rounds=5,
                          out=tmp_path / "a.json", **kw)
    assert [p["labels"] for p in long["strategies"]["margin"]["curve"]] == [20, 40, 60]
    assert [p["labels"] for p in long["strategies"]["random"]["curve"]] == [20, 40, 60, 80, 100, 120]
    assert long["random_rounds"] == 5 and long["rounds"] == 2
    # random's first rounds are the curve a plain run gives: the extension only adds points
    short = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["random"], rounds=2, out=tmp_path / "b.json", **kw)
    assert long["strategies"]["random"]["curve"][:3] == short["strategies"]["random"]["curve"]
    with pytest.raises(ValueError, match="random_rounds"):
        run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["random"], rounds=2, random_rounds=-1,
                       out=tmp_path / "c.json", **kw)


def test_self_training_only_skips_the_plain_curves(tmp_path):
    kw = dict(query_model="tfidf_lr", seed_size=20, batch_size=20, rounds=2, repeats=1, seed=3, progress=False)
    both = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin", "random"], self_training=True,
                          out=tmp_path / "a.json", **kw)
    only = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin", "random"], self_training_only=True,
                          out=tmp_path / "b.json", **kw)
    assert set(only["strategies"]) == {"margin+self_training", "random+self_training"}
    assert only["self_training"] and only["self_training_only"] and not both["self_training_only"]
    assert set(only["timing"]["strategies_s"]) == set(only["strategies"])  # no plain variant ran
    for key in only["strategies"]:  # the same curves as the variants of a run with the plain ones
        assert only["strategies"][key]["curve"] == both["strategies"][key]["curve"]
        assert "gain_over_plain" not in only["strategies"][key]
    # without plain random, ratios divide by random+self_training's labels to 95%
    base = only["strategies"]["random+self_training"]["labels_to_95"]
    l95 = only["strategies"]["margin+self_training"]["labels_to_95"]
    assert only["ratio_to_random"]["margin+self_training"] == (l95 / base if l95 is not None and base else None)
    if base:
        assert only["ratio_to_random"]["random+self_training"] == 1.0


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="least_confidence"):
        run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["bald"], out=tmp_path / "x.json")
    with pytest.raises(ValueError, match="encoder_lr"):
        run_simulation(DATA / "ncbi_60.jsonl", DATA / "ncbi.xml", ["margin"], query_model="tfidf_lr",
                       out=tmp_path / "x.json", progress=False)


@pytest.mark.slow
def test_ner_simulation_encoder_lr(tmp_path):
    rep = run_simulation(
        DATA / "ncbi_60.jsonl", DATA / "ncbi.xml", ["margin", "total_margin", "diversity", "random"], query_model="auto",
        seed_size=10, batch_size=10, rounds=2, repeats=1, out=tmp_path / "ner.json", progress=False,
        self_training=True,
    )
    assert rep["task"] == "spans" and rep["query_model"] == "encoder_lr" and rep["metric"] == "entity_f1"
    assert rep["encoder"]
    assert 0 < rep["full_data"]["metric"] <= 1
    test_ids = set(rep["test_ids"])
    for res in rep["strategies"].values():
        assert [p["labels"] for p in res["curve"]] == [10, 20, 30]
        assert not test_ids & set(res["runs"][0]["labeled_ids"])


def test_domain_adaptive_mlm_on_the_pool_only(tmp_path):
    kw = dict(query_model="encoder_lr", seed_size=20, batch_size=20, rounds=1, repeats=1, progress=False, seed=2)
    plain = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin"], out=tmp_path / "a.json", **kw)
    adapted = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin"], out=tmp_path / "b.json", mlm_steps=4, **kw)
    assert plain["domain_adaptation"] is None
    info = json.loads((tmp_path / "b.json").read_text())["domain_adaptation"]
    assert info["steps"] == 4 and info["base_encoder"] == plain["encoder"] == adapted["encoder"]
    # masked-LM sequences come from the pool's texts only (every tweet fits one 128-token window)
    assert info["sequences"] == adapted["n_pool"] == 240
    assert np.isfinite(info["loss_first"]) and np.isfinite(info["loss_last"])
    # the adapted encoder gives other features, so other curves
    assert plain["test_ids"] == adapted["test_ids"]
    assert plain["full_data"]["metric"] != adapted["full_data"]["metric"] or \
        plain["strategies"]["margin"]["runs"][0]["labeled_ids"] != adapted["strategies"]["margin"]["runs"][0]["labeled_ids"]
    with pytest.raises(ValueError, match="encoder_lr"):
        run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin"], out=tmp_path / "c.json",
                       query_model="tfidf_lr", mlm_steps=4, progress=False)


@pytest.mark.slow
def test_finetune_query_model_is_the_loops_model(tmp_path):
    from ml_backend.training import TrainOptions

    rep = run_simulation(
        DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin", "random"], query_model="finetune", seed_size=20,
        batch_size=20, rounds=1, repeats=1, out=tmp_path / "ft.json", progress=False, seed=1,
        train_options=TrainOptions(epochs=2, min_steps=30),
    )
    on_disk = json.loads((tmp_path / "ft.json").read_text())
    assert on_disk["query_model"] == rep["query_model"] == "finetune" and on_disk["encoder"]
    # one full-data fit, the seed round's model (20 labels, shared by both strategies), a 40-label round each
    assert [f["labels"] for f in on_disk["fits"]] == [240, 20, 40, 40]
    assert all(f["kind"] == "sequence_classifier" and f["steps"] >= 30 for f in on_disk["fits"])
    test_ids = set(on_disk["test_ids"])
    for res in on_disk["strategies"].values():
        assert [p["labels"] for p in res["curve"]] == [20, 40]
        assert not test_ids & set(res["runs"][0]["labeled_ids"])
    # the same seed set; margin's second batch is chosen by the fine-tuned model, not at random
    m, r = on_disk["strategies"]["margin"]["runs"][0], on_disk["strategies"]["random"]["runs"][0]
    assert m["labeled_ids"][:20] == r["labeled_ids"][:20] and m["labeled_ids"][20:] != r["labeled_ids"][20:]
    # fine-tuned on the 240-tweet pool, it beats the majority class (macro-F1 of one class: about 0.26)
    assert on_disk["full_data"]["metric"] > 0.4, on_disk["full_data"]


@pytest.mark.slow
def test_finetune_query_model_self_trains_spans_per_token(tmp_path):
    from ml_backend.training import TrainOptions

    rep = run_simulation(DATA / "ncbi_60.jsonl", DATA / "ncbi.xml", ["margin"], query_model="finetune", self_training=True,
                         rounds=0, repeats=1, seed_size=10, out=tmp_path / "x.json", progress=False,
                         train_options=TrainOptions(epochs=1, span_min_steps=4, batch_size=8))
    n_pool = rep["n_documents"] - len(rep["test_ids"])
    assert rep["self_training_weight"] == 0.3  # the loop's per-token weight, not its document weight
    run = rep["strategies"]["margin+self_training"]["runs"][0]
    assert run["pseudo_labeled"] == [n_pool - 10]  # per token: every unlabeled pool document joins
    st_fits = [f for f in rep["fits"] if f.get("self_training")]
    assert len(st_fits) == 1 and st_fits[0]["labels"] == 10 and st_fits[0]["pseudo_labels"] == n_pool - 10
    # margin and margin+self_training start from one seed-round model, fitted once
    assert [f["labels"] for f in rep["fits"] if not f.get("self_training")] == [n_pool, 10]
    assert st_fits[0]["steps"] >= 1


def test_the_loop_and_the_simulation_rank_through_one_rank_pool(tmp_path, monkeypatch):
    import threading
    from types import SimpleNamespace

    import ml_backend.sampling as sampling
    import server.simulate.run as sim_run
    from ml_backend.schema import parse_label_config
    from server.loop import order_scores
    from server.simulate.corpus import load_corpus, split_test
    from server.simulate.query_models import build_query_model
    from server.simulate.run import seed_set

    calls = []
    real = sampling.rank_pool

    def spy(strategy, size, **kw):
        calls.append(strategy)
        return real(strategy, size, **kw)

    monkeypatch.setattr(sampling, "rank_pool", spy)
    monkeypatch.setattr(sim_run, "rank_pool", spy)
    seed = 3
    rep = run_simulation(DATA / "tweets_300.jsonl", DATA / "tweets.xml", ["margin", "cost_aware"], query_model="tfidf_lr",
                         seed_size=20, batch_size=20, rounds=1, repeats=1, seed=seed, out=tmp_path / "s.json", progress=False)
    assert calls == ["margin", "cost_aware"]

    # the simulation's first margin batch, recomputed: its model on the seed set, the pool's probabilities
    corpus = load_corpus(DATA / "tweets_300.jsonl", DATA / "tweets.xml")
    pool, _ = split_test(corpus, 0.2, seed)
    run_seed = rep["seeds"][0]
    seed_docs = seed_set(pool, 20, run_seed)
    qm, _, _ = build_query_model(corpus, "tfidf_lr", None, progress=False)
    remaining = pool[~np.isin(pool, seed_docs)]
    probs = qm.probs(qm.fit(np.asarray(seed_docs)), remaining)

    # the loop's queue for a project whose one control gives those probabilities, with the run's rng seed
    spec = parse_label_config((DATA / "tweets.xml").read_text())
    control = spec.choice_controls[0]
    preds = [SimpleNamespace(probs=dict(zip(control.labels, row)), confidence=float(row.max())) for row in probs]
    pm = SimpleNamespace(spec=spec, meta={}, lock=threading.Lock(),
                         models={control.name: SimpleNamespace(scores_tokens=False, embeds=False)},
                         predict_texts=lambda texts: {control.name: preds})
    items = [{"score": float(row.max()), "result": []} for row in probs]
    texts = {spec.value_fields[0]: [corpus.texts[i] for i in remaining]}
    scores = order_scores("margin", items, pm, texts, seed=run_seed + 1)
    assert calls[-1] == "margin"
    queue = remaining[np.argsort(scores, kind="stable")]  # Label Studio serves the lowest score first
    labeled = rep["strategies"]["margin"]["runs"][0]["labeled_ids"]
    assert [corpus.ids[i] for i in queue[:20]] == labeled[20:40]
    # cost_aware: the same gain per predicted second in the loop's queue as rank_pool gives for those inputs
    from ml_backend.cost import PRIOR

    loop_cost = order_scores("cost_aware", items, pm, texts, seed=run_seed + 1)
    want = real("cost_aware", len(items), rng=np.random.default_rng(run_seed + 1), controls=[probs],
                cost=PRIOR.predict_texts(texts[spec.value_fields[0]]))
    assert list(np.argsort(loop_cost, kind="stable")) == list(want)
