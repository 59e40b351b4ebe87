"""Annotation effort: the edits an annotator makes to turn a pre-annotation into the gold labels.

On each domain's held-out test documents (NCBI disease test: medical entities; fin_ner_sec_filings test:
financial-news entities; Twitter financial news validation: sentiment), per document, for: no
pre-annotation; the cold start (span matcher / label prototypes with no labels); the shipped starter set
(trained as `goldloop pretrain` trains it); the loop after 50 and 200 of the project's own labels (documents of
the domain's gold train split, split train/dev by the loop's stable split, trained by the loop's rule).

With ``--start``, each labelled point is trained each way a round can start (ml_backend/warm_start.py): ``scratch``
(the base encoder, the project's labels alone), ``warm`` (continued from the starter, as a round continues from the
serving version), ``mixed`` (the base encoder on the starter's data plus the project's labels), ``rehearse`` (warm, and
a sample of the starter's data beside the project's labels: TrainOptions.rehearsal), over ``--seeds``
(each seed draws other project documents and trains with that seed); the curve table gives mean ± sd per point.

Span edits: add a missing span, delete a wrong one, re-label one with the right bounds, re-bound one that
overlaps a gold span (re-bound + re-label when the label is wrong too). Document labels: one edit when the
pre-selected choice is wrong or missing. Also the share of gold entities pre-annotated exactly.

    python -m bench.annotation_effort --out bench/results/annotation_effort.json [--limit-test 100] [--data DIR] [--cold-only]
    python -m bench.annotation_effort --domain sentiment --sizes 25 50 100 200 --start scratch warm mixed --seeds 0 1 2 \
        --starter-cache /tmp/starters --out bench/results/warm_start_sentiment.json

Predicted spans are scored only for the labels the domain's gold set annotates (the medical starter's Medication
spans on NCBI abstracts, which mark diseases only, are neither right nor wrong there).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import replace
from pathlib import Path

from server.effort import span_edits  # the edits the loop counts on real annotations

DEFAULT_DATA = Path(os.environ.get("GOLDLOOP_BENCH_DATA", "/work/shared/data"))
ROOT = Path(__file__).resolve().parents[1]

# domain: schema, control, starter schema, test file, train file, label map (source → project label)
DOMAINS = {
    "medical entities": ("medical_records", "entities", "ncbi_disease/test.jsonl", "ncbi_disease/train.jsonl",
                         {"SpecificDisease": "Disease", "DiseaseClass": "Disease", "CompositeMention": "Disease", "Modifier": "Disease"}),
    "financial entities": ("financial_news", "entities", "fin_ner_sec_filings/test.jsonl", "fin_ner_sec_filings/train.jsonl",
                           {"ORG": "Company", "PER": "Person", "LOC": "Location"}),
    "sentiment": ("financial_news", "sentiment", "twitter_financial_news_sentiment/validation.jsonl",
                  "twitter_financial_news_sentiment/train.jsonl", {"Bullish": "positive", "Bearish": "negative", "Neutral": "neutral"}),
    # a project whose documents are not the starter's: financial news sentences (Financial PhraseBank, all annotators
    # agreeing; CC BY-NC-SA 3.0, measured here, never shipped) against the tweet-trained starter. One file: the test
    # documents are drawn from it (--test-sample) and the project's labels from the rest
    "sentiment (news sentences)": ("financial_news", "sentiment", "financial_phrasebank/sentences_allagree.jsonl",
                                   "financial_phrasebank/sentences_allagree.jsonl", {"positive": "positive", "negative": "negative", "neutral": "neutral"}),
    # cMedQANER test (Chinese questions) against the Chinese medical starter, with its own label map
    "medical entities (ZH)": ("medical_records", "entities", "zh_cmedqaner/test.jsonl", "zh_cmedqaner/train.jsonl",
                              {"disease": "Disease", "symptom": "Symptom", "drug": "Medication", "treatment": "Procedure"}),
    # UniversalNER Chinese-GSDSIMP test (general Wikipedia-style sentences: no permissive Chinese financial-news NER
    # test set exists) against the Chinese financial starter, drawn from the same corpus's train split; the extract is
    # committed (bench/data/zh_gsdsimp), so the paths are absolute, whatever --data says
    "financial entities (ZH)": ("financial_news", "entities", str(ROOT / "bench/data/zh_gsdsimp/test.jsonl"),
                                str(ROOT / "bench/data/zh_gsdsimp/train.jsonl"), {"ORG": "Company", "PER": "Person", "LOC": "Location"}),
}
# the starter set a domain's documents get (server/starters.language_of): English unless named here
LANGUAGE = {"medical entities (ZH)": "zh", "financial entities (ZH)": "zh"}


def _read(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _records(rows, spec, mapping, path, control):
    from server.records import convert

    recs, _ = convert(rows, spec, {k: v for k, v in mapping.items()}, path, control)
    return recs


STARTS = ("scratch", "warm", "mixed", "rehearse")


def run(data: Path, limit_test: int, sizes: tuple[int, ...], seed: int, domains: list[str], on_domain=None, cold_only: bool = False,
        starts: tuple[str, ...] = (), seeds: tuple[int, ...] = (), starter_cache: Path | None = None, test_sample: bool = False, rehearsal: dict | None = None) -> dict:
    """Results per domain and pre-annotation; on_domain(results) after each domain (partial results survive).

    ``starts``: train each size each of these ways (STARTS) and name the rows "N labels (start, seed S)"; empty: the
    loop's rule with ``seed``, rows "N labels". ``starter_cache``: a folder the trained starters are saved to and
    loaded from (one per domain and encoder), so several runs train each starter once."""
    from ml_backend.encoders import choose_encoder
    from ml_backend.registry import cold_start_model
    from ml_backend.schema import parse_label_config
    from ml_backend.training import TrainOptions, examples_for, merge_examples, train_control, with_rehearsal
    from server import starters
    from server.config import Settings
    from server.records import build_records
    from server.records import of_control

    settings = Settings.from_env()
    opts = TrainOptions(cold_start_labels=settings.cold_start_labels, model_name=settings.model, seed=seed, progress=False,
                        work_dir=str(settings.data_dir.encoders), **(rehearsal or {}))
    results = {}
    for name in domains:
        schema, cname, test_file, train_file, mapping = DOMAINS[name]
        spec = parse_label_config((ROOT / "schemas" / f"{schema}.xml").read_text())
        control = spec.control(cname)
        rows_all = _read(data / test_file)
        # the first N, or N drawn at random: a file sorted by label (the tweets' validation split) needs the draw
        rows_all = random.Random(0).sample(rows_all, min(limit_test, len(rows_all))) if test_sample else rows_all[:limit_test]
        test = _records(rows_all, spec, mapping, data / test_file, cname)
        gold_ex = examples_for(control, test)
        scored = set(mapping.values())
        models, timing, kinds = {}, {}, {}
        models["cold start"] = cold_start_model(control, settings.backend_settings())  # what a new project serves
        kinds["cold start"] = models["cold start"].kind
        sources, maps = starters.inputs(schema, LANGUAGE.get(name, "en"))
        st = build_records([s for s in sources if s[1] == cname], spec, dict(m.split("=", 1) for m in maps))
        # the encoder a round picks from the project's documents (the starter's and the imported test documents)
        texts = [r["text"] for split in st.by_split.values() for r in split] + [r["text"] for r in test]
        dopts = replace(opts, model_name=choose_encoder(texts, settings.model, settings.data_dir.encoders)[0])
        st_train = examples_for(control, of_control(st.by_split["train"], control))
        if not cold_only:
            models["starter"], timing["starter"] = _starter(control, st_train, examples_for(control, of_control(st.by_split["dev"], control)),
                                                            dopts, starter_cache, f"{name}-{dopts.model_name}")
            kinds["starter"] = models["starter"].kind
        pool = _records(_read(data / train_file), spec, mapping, data / train_file, cname)
        if train_file == test_file:  # one file for both: the project never labels a test document
            held = {r["id"] for r in test}
            pool = [r for r in pool if r["id"] not in held]
        rows = results[name] = {}
        for cond in ["none"] + list(models):  # scored first: a long curve's partial results carry them
            rows[cond] = _score(control, gold_ex, models[cond].predict(gold_ex.texts) if cond != "none" else None, scored)
            rows[cond].update(model=kinds.get(cond, "-"), train_s=timing.get(cond))
        runs = [(s, start) for s in seeds for start in starts] if starts else [(seed, "")]
        orders = {s: random.Random(s).sample(pool, len(pool)) for s, _ in runs}  # a seed's sizes are nested: 25 ⊂ 50 ⊂ ...
        for n in () if cold_only else sizes:
            for s, start in runs:
                picked = orders[s][:n]
                t = time.time()
                tr = examples_for(control, [r for r in picked if r["split"] == "train"])
                dv = examples_for(control, [r for r in picked if r["split"] == "dev"])
                key = f"{n} labels ({start}, seed {s})" if start else f"{n} labels"
                warm = start in ("warm", "rehearse")
                ropts = replace(dopts, seed=s, warm_start="serving" if warm else "base")
                if start == "mixed":
                    tr = merge_examples(st_train, tr)
                if start == "rehearse":  # the loop's rehearsal: continued from the starter, on a sample of its documents too
                    tr, _ = with_rehearsal(control.kind, tr, st_train, ropts)
                model, info = train_control(control, tr, dv, ropts, start=models.get("starter") if warm else None)
                took = round(time.time() - t, 1)
                # scored now and let go: a curve holds one fine-tuned model at a time, and a kill keeps what was scored
                rows[key] = _score(control, gold_ex, model.predict(gold_ex.texts), scored)
                rows[key].update(model=info["kind"] + (" (warm)" if info.get("started_from") == "serving" else ""), train_s=took)
                del model
                if on_domain:
                    on_domain(results)
        if on_domain:
            on_domain(results)
    return results


def _starter(control, train, dev, opts, cache: Path | None, name: str):
    """The domain's starter model, trained (and saved to ``cache``) or loaded from ``cache``; (model, training seconds)."""
    from ml_backend.models import load_model
    from ml_backend.training import train_control

    folder = cache / "".join(c if c.isalnum() else "-" for c in name) if cache else None
    if folder is not None and (folder / "goldloop_model.json").is_file():
        return load_model(folder), json.loads((folder / "train_s.json").read_text())
    t = time.time()
    model, _ = train_control(control, train, dev, replace(opts, warm_start="base"))
    seconds = round(time.time() - t, 1)
    if folder is not None:
        model.save(folder)
        (folder / "train_s.json").write_text(json.dumps(seconds))
    return model, seconds


def _score(control, gold_ex, preds, scored: set) -> dict:
    """Edits per document (and their kinds), exact share or accuracy of one pre-annotation against the gold set."""
    per_doc, exact, gold_n, correct = [], 0, 0, 0
    for i, gold in enumerate(gold_ex.targets):
        if control.kind == "spans":
            # a label the gold set does not annotate (Medication on NCBI) can be neither right nor wrong here
            pred = [s.key() for s in preds[i].spans if s.label in scored] if preds else []
            e = span_edits([tuple(x) for x in gold], [tuple(x) for x in pred])
            exact += e["exact"]
            gold_n += len(gold)
            per_doc.append(e)
        else:
            chosen = max(preds[i].probs, key=preds[i].probs.get) if preds else None
            ok = chosen == gold[0]
            correct += ok
            per_doc.append({"edits": 0 if ok else 1})
    n_docs = len(per_doc)
    row = {"docs": n_docs, "edits_per_doc": sum(d["edits"] for d in per_doc) / max(1, n_docs)}
    if control.kind == "spans":
        for k in ("add", "delete", "relabel", "rebound"):
            row[f"{k}_per_doc"] = sum(d[k] for d in per_doc) / max(1, n_docs)
        row["exact_share"] = exact / max(1, gold_n)
        row["gold_entities"] = gold_n
    else:
        row["accuracy"] = correct / max(1, n_docs)
    return row


def table(results: dict) -> str:
    lines = [f"{'domain':<21} {'pre-annotation':<28} {'model':<20} {'edits/doc':>9} {'add':>6} {'del':>6} {'relab':>6} {'rebnd':>6} "
             f"{'exact':>6} {'acc':>6} {'train s':>8}"]
    for name, rows in results.items():
        for cond, r in rows.items():
            f = lambda k: f"{r[k]:.2f}" if r.get(k) is not None else "-"  # noqa: E731
            lines.append(f"{name:<21} {cond:<28} {r['model']:<20} {r['edits_per_doc']:>9.2f} {f('add_per_doc'):>6} {f('delete_per_doc'):>6} "
                         f"{f('relabel_per_doc'):>6} {f('rebound_per_doc'):>6} {f('exact_share'):>6} {f('accuracy'):>6} "
                         f"{r['train_s'] if r.get('train_s') is not None else '-':>8}")
    return "\n".join(lines)


def curve(results: dict) -> tuple[str, dict]:
    """The learning curves: per domain, start and size, mean ± sd over seeds of edits/doc and exact share (spans) or
    accuracy (sentiment), and of the training seconds; the starter is the 0-label point of every start."""
    import re

    import numpy as np

    out: dict = {}
    for name, rows in results.items():
        for cond, r in rows.items():
            m = re.fullmatch(r"(\d+) labels \((\w+), seed (\d+)\)", cond)
            if m:
                out.setdefault(name, {}).setdefault(m.group(2), {}).setdefault(int(m.group(1)), []).append(r)
    lines = [f"{'domain':<21} {'start':<8} {'labels':>6} {'seeds':>5} {'edits/doc':>13} {'exact/acc':>13} {'train s':>9}"]
    summary: dict = {}
    for name, by_start in out.items():
        starter = results[name].get("starter")
        if starter:
            quality = starter.get("exact_share", starter.get("accuracy"))
            lines.append(f"{name:<21} {'starter':<8} {0:>6} {'':>5} {starter['edits_per_doc']:>13.2f} {quality:>13.3f} {starter['train_s'] or 0:>9.0f}")
        for start, by_n in by_start.items():
            for n, rs in sorted(by_n.items()):
                e = np.array([r["edits_per_doc"] for r in rs])
                q = np.array([r.get("exact_share", r.get("accuracy")) for r in rs], dtype=float)
                ts = np.array([r["train_s"] or 0 for r in rs], dtype=float)
                summary.setdefault(name, {}).setdefault(start, {})[n] = {
                    "seeds": len(rs), "edits_mean": float(e.mean()), "edits_sd": float(e.std(ddof=1)) if len(rs) > 1 else None,
                    "quality_mean": float(q.mean()), "quality_sd": float(q.std(ddof=1)) if len(rs) > 1 else None, "train_s_mean": float(ts.mean())}
                sd = lambda a, f: f"{a.mean():{f}} ± {a.std(ddof=1):{f}}" if len(a) > 1 else f"{a.mean():{f}}"  # noqa: E731
                lines.append(f"{name:<21} {start:<8} {n:>6} {len(rs):>5} {sd(e, '.2f'):>13} {sd(q, '.3f'):>13} {ts.mean():>9.0f}")
    return "\n".join(lines), summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the converted datasets")
    ap.add_argument("--limit-test", type=int, default=100, help="test documents per domain")
    ap.add_argument("--sizes", type=int, nargs="*", default=[50, 200], help="project labels per 'after N labels' row (none: --sizes alone)")
    ap.add_argument("--domain", action="append", choices=list(DOMAINS), help="domains (default all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-sample", action="store_true", help="draw --limit-test test documents at random (seed 0), not the first ones")
    ap.add_argument("--cold-only", action="store_true", help="only the rows that need no training: none and cold start")
    ap.add_argument("--start", nargs="+", choices=STARTS, default=[], help="learning curves: train each size each of these ways")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="with --start: the seeds of each point")
    ap.add_argument("--rehearsal", type=float, default=None, help="with --start rehearse: starter examples per project label [TrainOptions]")
    ap.add_argument("--rehearsal-floor", type=int, default=None, help="with --start rehearse: at least this many [TrainOptions]")
    ap.add_argument("--starter-cache", type=Path, default=None, help="save trained starters here and load them on the next run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "annotation_effort.json")
    a = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.time()
    a.out.parent.mkdir(parents=True, exist_ok=True)

    def write(results: dict) -> None:
        a.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "results": results,
                                     "curve": curve(results)[1], "wall_s": round(time.time() - started, 1)}, indent=2))

    results = run(a.data, a.limit_test, tuple(a.sizes), a.seed, a.domain or list(DOMAINS), on_domain=write, cold_only=a.cold_only,
                  starts=tuple(a.start), seeds=tuple(a.seeds), starter_cache=a.starter_cache, test_sample=a.test_sample,
                  rehearsal={k: v for k, v in (("rehearsal", a.rehearsal), ("rehearsal_floor", a.rehearsal_floor)) if v is not None})
    print(table(results))
    if a.start:
        print()
        print(curve(results)[0])
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
