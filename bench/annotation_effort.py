"""Annotation effort: the edits an annotator makes to turn a pre-annotation into the gold labels.

On each domain's held-out test documents (NCBI disease test: medical entities; fin_ner_sec_filings test:
financial-news entities; Twitter financial news validation: sentiment), per document, for: no
pre-annotation; the cold start (span matcher / label prototypes with no labels); the shipped starter set
(trained as `goldloop pretrain` trains it); the loop after 50 and 200 of the project's own labels (documents of
the domain's gold train split, split train/dev by the loop's stable split, trained by the loop's rule).

Span edits: add a missing span, delete a wrong one, re-label one with the right bounds, re-bound one that
overlaps a gold span (re-bound + re-label when the label is wrong too). Document labels: one edit when the
pre-selected choice is wrong or missing. Also the share of gold entities pre-annotated exactly.

    python -m bench.annotation_effort --out bench/results/annotation_effort.json [--limit-test 100] [--data DIR] [--cold-only]

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
    # cMedQANER test (Chinese questions) against the Chinese medical starter, with its own label map
    "medical entities (ZH)": ("medical_records", "entities", "zh_cmedqaner/test.jsonl", "zh_cmedqaner/train.jsonl",
                              {"disease": "Disease", "symptom": "Symptom", "drug": "Medication", "treatment": "Procedure"}),
}
# the starter set a domain's documents get (server/starters.language_of): English unless named here
LANGUAGE = {"medical entities (ZH)": "zh"}


def _read(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _records(rows, spec, mapping, path, control):
    from server.pretrain import convert

    recs, _ = convert(rows, spec, {k: v for k, v in mapping.items()}, path, control)
    return recs


def run(data: Path, limit_test: int, sizes: tuple[int, ...], seed: int, domains: list[str], on_domain=None, cold_only: bool = False) -> dict:
    """Results per domain and pre-annotation; on_domain(results) after each domain (partial results survive)."""
    from ml_backend.encoders import choose_encoder
    from ml_backend.registry import cold_start_model
    from ml_backend.schema import parse_label_config
    from ml_backend.training import TrainOptions, examples_for, train_control
    from server import starters
    from server.config import Settings
    from server.pretrain import build_records
    from server.loop import of_control

    settings = Settings.from_env()
    opts = TrainOptions(cold_start_labels=settings.cold_start_labels, model_name=settings.model, seed=seed, progress=False,
                        work_dir=str(settings.data_dir.encoders))
    results = {}
    for name in domains:
        schema, cname, test_file, train_file, mapping = DOMAINS[name]
        spec = parse_label_config((ROOT / "schemas" / f"{schema}.xml").read_text())
        control = spec.control(cname)
        test = _records(_read(data / test_file)[:limit_test], spec, mapping, data / test_file, cname)
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
        t = time.time()
        if not cold_only:
            models["starter"], info = train_control(control, examples_for(control, of_control(st.by_split["train"], control)),
                                                    examples_for(control, of_control(st.by_split["dev"], control)), dopts)
            timing["starter"], kinds["starter"] = round(time.time() - t, 1), info["kind"]
        pool = _records(_read(data / train_file), spec, mapping, data / train_file, cname)
        random.Random(seed).shuffle(pool)
        for n in () if cold_only else sizes:
            picked = pool[:n]
            t = time.time()
            tr = [r for r in picked if r["split"] == "train"]
            dv = [r for r in picked if r["split"] == "dev"]
            key = f"{n} labels"
            models[key], info = train_control(control, examples_for(control, tr), examples_for(control, dv), dopts)
            timing[key], kinds[key] = round(time.time() - t, 1), info["kind"]
        rows = {}
        for cond in ["none"] + list(models):
            preds = models[cond].predict(gold_ex.texts) if cond != "none" else None
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
            row = {"docs": n_docs, "edits_per_doc": sum(d["edits"] for d in per_doc) / max(1, n_docs),
                   "model": kinds.get(cond, "-"), "train_s": timing.get(cond)}
            if control.kind == "spans":
                for k in ("add", "delete", "relabel", "rebound"):
                    row[f"{k}_per_doc"] = sum(d[k] for d in per_doc) / max(1, n_docs)
                row["exact_share"] = exact / max(1, gold_n)
                row["gold_entities"] = gold_n
            else:
                row["accuracy"] = correct / max(1, n_docs)
            rows[cond] = row
        results[name] = rows
        if on_domain:
            on_domain(results)
    return results


def table(results: dict) -> str:
    lines = [f"{'domain':<21} {'pre-annotation':<15} {'model':<20} {'edits/doc':>9} {'add':>6} {'del':>6} {'relab':>6} {'rebnd':>6} "
             f"{'exact':>6} {'acc':>6} {'train s':>8}"]
    for name, rows in results.items():
        for cond, r in rows.items():
            f = lambda k: f"{r[k]:.2f}" if r.get(k) is not None else "-"  # noqa: E731
            lines.append(f"{name:<21} {cond:<15} {r['model']:<20} {r['edits_per_doc']:>9.2f} {f('add_per_doc'):>6} {f('delete_per_doc'):>6} "
                         f"{f('relabel_per_doc'):>6} {f('rebound_per_doc'):>6} {f('exact_share'):>6} {f('accuracy'):>6} "
                         f"{r['train_s'] if r.get('train_s') is not None else '-':>8}")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the converted datasets")
    ap.add_argument("--limit-test", type=int, default=100, help="test documents per domain")
    ap.add_argument("--sizes", type=int, nargs="*", default=[50, 200], help="project labels per 'after N labels' row (none: --sizes alone)")
    ap.add_argument("--domain", action="append", choices=list(DOMAINS), help="domains (default all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cold-only", action="store_true", help="only the rows that need no training: none and cold start")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "annotation_effort.json")
    a = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.time()
    a.out.parent.mkdir(parents=True, exist_ok=True)

    def write(results: dict) -> None:
        a.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "results": results,
                                     "wall_s": round(time.time() - started, 1)}, indent=2))

    results = run(a.data, a.limit_test, tuple(a.sizes), a.seed, a.domain or list(DOMAINS), on_domain=write, cold_only=a.cold_only)
    print(table(results))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
