"""fp32 against bf16 autocast on the CPU (``GOLDLOOP_PRECISION``), side by side in one process: seconds per
fine-tuning step and documents per second of span prediction, for the span model of each language.

For each dataset it draws 200 training documents (seed 0) and fine-tunes the loop's token classifier
(``TokenClassifier.fit``, the span recipe's rates, a fresh head each time) for ``--steps`` optimizer steps in fp32,
then in bf16, alternating for ``--repeats`` rounds, then predicts ``--predict-docs`` test documents with the
bf16-trained model in each precision. The figures are medians over the rounds. Entity F1 per precision is
``bench/span_recipe.py --precision`` (whole fits; docs/benchmarks.md, "Precision").

    .venv/bin/python bench/precision.py [--datasets ncbi1,zh] [--steps 30] [--repeats 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.span_recipe import DATASETS, data_dir, encoder_for, read_jsonl  # noqa: E402

COMPARED = ("fp32", "bf16")


def cpu_flags() -> list[str]:
    """The CPU's bf16 instruction sets (Linux /proc/cpuinfo), for the record."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="ncbi1,zh", help="comma-separated: ncbi1, ncbi, zh")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per timed fit")
    ap.add_argument("--repeats", type=int, default=3, help="alternating fp32/bf16 rounds")
    ap.add_argument("--predict-docs", type=int, default=100, help="test documents predicted per precision")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "goldloop-bench",
                    help="converted encoders")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "precision.json")
    args = ap.parse_args(argv)

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    from ml_backend.models import Examples, TokenClassifier
    from ml_backend.models.torch_utils import set_process_precision
    from ml_backend.training import span_recipe

    recipe = span_recipe("new")
    rows = []
    print(f"CPU: {platform.processor() or platform.machine()}, bf16 flags: {', '.join(cpu_flags()) or 'none'}, {args.threads} threads", flush=True)
    for ds in args.datasets.split(","):
        if ds not in DATASETS:
            print(f"unknown dataset {ds!r}; known: {', '.join(DATASETS)}")
            return 2
        folder = data_dir(ds)
        train_docs, test_docs = read_jsonl(folder / "train.jsonl"), read_jsonl(folder / "test.jsonl")
        model_name, record = encoder_for([d["text"] for d in train_docs + test_docs], args.cache)
        label_map = DATASETS[ds][2]
        picked = random.Random(0).sample(train_docs, min(200, len(train_docs)))
        spans = [[(s["start"], s["end"], label_map or s["label"]) for s in d["spans"]] for d in picked]
        labels = DATASETS[ds][1] or sorted({lbl for doc in spans for _, _, lbl in doc})
        examples = Examples([d["text"] for d in picked], spans)
        test = [d["text"] for d in test_docs[: args.predict_docs]]
        step_s: dict[str, list[float]] = {p: [] for p in COMPARED}
        docs_s: dict[str, list[float]] = {p: [] for p in COMPARED}
        for _ in range(args.repeats):
            model = None
            for prec in COMPARED:
                set_process_precision(prec)
                torch.manual_seed(0)
                model = TokenClassifier(labels, model_name=model_name, train_length=recipe.train_length, device="cpu", threads=args.threads,
                                        encoder_layers=recipe.span_layers_of(model_name))  # the depth a round trains
                fit = model.fit(examples, val_fraction=0.0, epochs=1000, max_steps=args.steps, lr=recipe.lr, head_lr=recipe.head_lr,
                                batch_size=recipe.batch_size, early_stopping=False, progress=False, seed=0)
                assert fit["precision"] == prec, fit["precision"]
                step_s[prec].append(fit["seconds"] / fit["steps"])
            for prec in COMPARED:  # the same (bf16-trained) weights in each precision
                set_process_precision(prec)
                started = time.perf_counter()
                model.token_probs(test)
                docs_s[prec].append(len(test) / (time.perf_counter() - started))
        set_process_precision("auto")
        encoder = record["chosen"] if "/" not in record["chosen"] else "/".join(Path(record["chosen"]).parts[-2:])
        row = {"dataset": ds, "encoder": encoder, "train_docs": len(picked), "steps": args.steps, "repeats": args.repeats}
        for prec in COMPARED:
            row[f"{prec}_s_per_step"] = round(statistics.median(step_s[prec]), 3)
            row[f"{prec}_predict_docs_per_s"] = round(statistics.median(docs_s[prec]), 1)
        row["train_speedup"] = round(row["fp32_s_per_step"] / row["bf16_s_per_step"], 2)
        row["predict_speedup"] = round(row["bf16_predict_docs_per_s"] / row["fp32_predict_docs_per_s"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| dataset | encoder | s / step fp32 | s / step bf16 | training speed-up | predict docs/s fp32 | bf16 | predict speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['dataset']} | {r['encoder']} | {r['fp32_s_per_step']:.2f} | {r['bf16_s_per_step']:.2f} | {r['train_speedup']:.2f}x | "
              f"{r['fp32_predict_docs_per_s']:.1f} | {r['bf16_predict_docs_per_s']:.1f} | {r['predict_speedup']:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "cpu_flags": cpu_flags(), "rows": rows}, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
