"""The loop's document-classifier recipe with few labels: current vs previous, and self-training on/off.

One process, the same labeled sets for every recipe. Each seed draws N labeled sentences from Financial
PhraseBank (all agree) outside a fixed 450-sentence test set, splits them 85/15 into train/dev as the loop
does, and trains them through ``ml_backend.training.train_control``, the loop's own code:

- ``previous``: the architecture's [CLS] pooling, random head, 4 epochs at 8e-5 with early stopping on dev;
- ``current``: mean pooling, head from a linear probe, at least ``min_steps`` steps at 3e-5 (the defaults);
- ``current+self_training`` (``--self-training``): the current model labels the rest of the pool; the
  sentences it is at least 90% sure of join the labeled ones (weight 1.0) and a fresh student is trained
  from the base encoder with the current recipe (TrainOptions defaults);
- ``current+mlm`` (``--mlm-steps N``): the current recipe after N steps of domain-adaptive MLM on the rest of
  the pool (``TrainOptions.mlm_steps``, the loop's own ``domain_adapt``, its head warm-up included).

For reference, ``frozen_lr`` is the simulation's fast query model (mean-pooled frozen MiniLM + logistic
regression) on the same sets. Prints a table (macro-F1 on the test set, seconds) and writes JSON.

    .venv/bin/python bench/train_recipe.py [--data FILE.jsonl] [--labels 100] [--seeds 3] [--self-training] [--min-steps N] [--mlm-steps N]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "financial_phrasebank" / "sentences_allagree.jsonl"
LABELS = ["positive", "neutral", "negative"]
XML = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="single">'
       + "".join(f'<Choice value="{lbl}"/>' for lbl in LABELS) + "</Choices></View>")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--labels", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--test", type=int, default=450)
    ap.add_argument("--self-training", action="store_true")
    ap.add_argument("--min-steps", type=int, default=None, help="the current recipe's step floor (default: TrainOptions')")
    ap.add_argument("--mlm-steps", type=int, default=0, help="add the current recipe after N domain-adaptive MLM steps on the pool")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_recipe.json")
    ap.add_argument("--device", default="auto", help="where fine-tuning runs: auto (CUDA when torch sees one), cpu, cuda or cuda:N")
    args = ap.parse_args(argv)
    if not args.data.exists():
        print(f"{args.data} not found: pass --data (Financial PhraseBank JSONL: text, label)")
        return 2

    import transformers
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    from ml_backend.models import Examples
    from ml_backend.schema import parse_label_config
    from ml_backend.training import TrainOptions, train_control
    from server.config import default_model
    from server.simulate import encode_texts, load_jsonl

    transformers.logging.set_verbosity_error()
    rows = [r for r in load_jsonl(args.data) if r.get("label") in LABELS]
    texts = [r["text"] for r in rows]
    y = np.array([LABELS.index(r["label"]) for r in rows])
    control = parse_label_config(XML).controls[0]
    order = np.random.default_rng(0).permutation(len(y))
    test, rest = order[: args.test], order[args.test :]
    encoder = default_model()
    recipes = {
        "previous": TrainOptions(pooling="model", linear_probe=False, min_steps=0, doc_lr=8e-5),
        "current": TrainOptions(),
    }
    if args.self_training:
        recipes["current+self_training"] = TrainOptions(self_training=True)
    work = tempfile.TemporaryDirectory(prefix="goldloop-recipe-")
    if args.mlm_steps > 0:
        recipes["current+mlm"] = TrainOptions(mlm_steps=args.mlm_steps, work_dir=work.name)
    if args.min_steps is not None:
        for name in recipes:
            if name != "previous":
                recipes[name].min_steps = args.min_steps

    def examples(ids) -> Examples:
        return Examples([texts[i] for i in ids], [[LABELS[y[i]]] for i in ids])

    def macro_f1(model) -> float:
        preds = model.predict([texts[i] for i in test])
        return float(f1_score(y[test], [LABELS.index(max(p.probs, key=p.probs.get)) for p in preds], average="macro"))

    results: dict[str, list[dict]] = {name: [] for name in ["frozen_lr", *recipes]}
    for seed in range(args.seeds):
        labeled = np.random.default_rng(seed).choice(rest, args.labels, replace=False)
        k = int(round(args.labels * 0.85))
        train, dev = examples(labeled[:k]), examples(labeled[k:])
        pool = [texts[i] for i in np.setdiff1d(rest, labeled)]
        t0 = time.perf_counter()
        emb = encode_texts([texts[i] for i in np.concatenate([labeled, test])], encoder, progress=False, device=args.device)
        lr = LogisticRegression(C=10.0, max_iter=1000, class_weight="balanced").fit(emb[: args.labels], y[labeled])
        f = f1_score(y[test], lr.predict(emb[args.labels :]), average="macro")
        results["frozen_lr"].append({"seed": seed, "macro_f1": float(f), "seconds": time.perf_counter() - t0})
        for name, base in recipes.items():
            opts = dataclasses.replace(base, model_name=encoder, seed=seed, progress=False, cold_start_labels=0, device=args.device)
            t0 = time.perf_counter()
            model, info = train_control(control, train, dev, opts, pool=pool if opts.self_training or opts.mlm_steps else ())
            seconds = time.perf_counter() - t0
            results[name].append({"seed": seed, "macro_f1": macro_f1(model), "seconds": seconds,
                                  "steps": info["fit"].get("steps"), "pseudo_labels": info.get("pseudo_labels"), "device": info["device"]})
            if info.get("domain_adaptation"):
                da = {k: v for k, v in info["domain_adaptation"].items() if k != "path"}
                results[name][-1]["domain_adaptation"] = da
                print(f"  MLM: {da}", flush=True)
            print(f"seed {seed} {name:<24} macro-F1 {results[name][-1]['macro_f1']:.3f}  {seconds:.0f} s", flush=True)
    print(f"\nFinancial PhraseBank, {args.labels} labels ({k} train / {args.labels - k} dev), "
          f"{args.test} test sentences, {args.seeds} seeds, device {results['current'][0]['device']}")
    print(f"{'recipe':<24} {'macro-F1 mean':>13} {'± sd':>6} {'per seed':>24} {'s/fit':>6}")
    for name, runs in results.items():
        f = np.array([r["macro_f1"] for r in runs])
        per = " ".join(f"{v:.3f}" for v in f)
        print(f"{name:<24} {f.mean():>13.3f} {f.std():>6.3f} {per:>24} {np.mean([r['seconds'] for r in runs]):>6.0f}")
    if args.self_training:
        gain = [a["macro_f1"] - b["macro_f1"] for a, b in zip(results["current+self_training"], results["current"])]
        print(f"self-training gain at {args.labels} labels: {100 * np.mean(gain):+.1f} points "
              f"(per seed {' '.join(f'{100 * g:+.1f}' for g in gain)})")
    if args.mlm_steps > 0:
        gain = [a["macro_f1"] - b["macro_f1"] for a, b in zip(results["current+mlm"], results["current"])]
        print(f"MLM ({args.mlm_steps} steps) gain at {args.labels} labels: {100 * np.mean(gain):+.1f} points "
              f"(per seed {' '.join(f'{100 * g:+.1f}' for g in gain)})")
    work.cleanup()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(args.data), "labels": args.labels, "test": args.test,
                                    "min_steps": recipes["current"].min_steps, "mlm_steps": args.mlm_steps, "device": results["current"][0]["device"],
                                    "results": results}, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
