"""Which first documents to label: a random seed set against one chosen by typicality, for the loop's span model.

Before a span control has ``GOLDLOOP_COLD_START_LABELS`` labels no fine-tuned model orders the queue, so the first
documents are not chosen by uncertainty. This measures whether choosing them by typicality instead of at random
gives the fine-tuned model a better start: k-means with ``size`` clusters over the pool's frozen-encoder embeddings
(mean-pooled, unit length), and from each cluster the document with the smallest mean distance to its ``knn``
nearest neighbours in the pool (TypiClust, Hacohen et al. 2022). The random set is the one ``goldloop simulate``
draws for its first repeat with the same ``--seed``, on the same test split (20% of the documents), so a row's
random figure equals that simulation's first curve point. Both sets are fitted with the loop's own recipe
(``--query-model finetune``: ``train_control``, the task-id hash's dev documents held back) and scored by strict
entity F1 on the test split. Data: NCBI disease training abstracts with one Disease type (the shared data
folder by default). Prints a table and writes JSON.

    python bench/seed_sets.py [--data-dir DIR] [--seeds 0,1,2] [--size 50] [--sets random,typical] [--knn 20]
        [--precision auto|bf16|fp32]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
TEST_FRACTION = 0.2  # goldloop simulate's default
DISEASE_XML = """<View>
  <Labels name="label" toName="text"><Label value="Disease"/></Labels>
  <Text name="text" value="$text"/>
</View>"""


def typical_set(emb: np.ndarray, size: int, seed: int, knn: int = 20) -> np.ndarray:
    """Positions of ``size`` documents: per k-means cluster, the member with the densest neighbourhood."""
    from sklearn.cluster import KMeans

    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    labels = KMeans(n_clusters=size, n_init=10, random_state=seed).fit(emb).labels_
    dist = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * emb @ emb.T))  # unit vectors: Euclidean from the cosine
    np.fill_diagonal(dist, np.inf)
    density = 1.0 / np.sort(dist, axis=1)[:, : min(knn, len(emb) - 1)].mean(axis=1)
    return np.array([m[np.argmax(density[m])] for m in (np.flatnonzero(labels == c) for c in range(size))])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", default="0,1,2", help="simulation seeds: each gives its own test split and random set")
    ap.add_argument("--size", type=int, default=50, help="documents in a seed set")
    ap.add_argument("--sets", default="random,typical", help="comma-separated: random, typical")
    ap.add_argument("--knn", type=int, default=20, help="neighbours that measure a document's typicality")
    ap.add_argument("--precision", default="auto", help="auto (fp32 on the CPU), bf16 (autocast on the CPU too) or fp32")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "seed_sets.json")
    args = ap.parse_args(argv)
    src = args.data_dir / "ncbi_disease" / "train.jsonl"
    if not src.is_file():
        print(f"error: {src} not found (give --data-dir, the folder that holds ncbi_disease/)", file=sys.stderr)
        return 2
    sets = [s for s in args.sets.split(",") if s]
    if not sets or set(sets) - {"random", "typical"}:
        print(f"error: --sets takes random and/or typical, got {args.sets!r}", file=sys.stderr)
        return 2

    from ml_backend.evaluation import primary_metric
    from ml_backend.models.torch_utils import set_process_precision
    from server.simulate.corpus import load_corpus, split_test
    from server.simulate.query_models import build_query_model
    from server.simulate.run import seed_set

    set_process_precision(args.precision)
    docs = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = [dict(d, spans=[dict(s, label="Disease") for s in d["spans"]]) for d in docs]
    corpus = load_corpus(docs, DISEASE_XML)
    backend, _, encoder = build_query_model(corpus, "finetune", None, progress=False)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        pool, test = split_test(corpus, TEST_FRACTION, seed)
        for name in sets:
            if name == "random":  # the first repeat's seed set of `goldloop simulate --seed SEED`
                picked = seed_set(pool, args.size, seed + 1000)
            else:
                picked = pool[typical_set(backend.embeddings[pool], args.size, seed, args.knn)]
            t0 = time.perf_counter()
            f1 = primary_metric(backend.evaluate(backend.fit(picked), test))
            rows.append({"seed": seed, "set": name, "entity_f1": round(f1, 4),
                         "characters": int(sum(len(corpus.texts[i]) for i in picked)),
                         "mentions": int(sum(len(corpus.targets[i]) for i in picked)),
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'seed':>4} {'set':<8} {'entity F1':>9} {'characters':>10} {'mentions':>8} {'seconds':>7}")
    for r in rows:
        print(f"{r['seed']:>4} {r['set']:<8} {r['entity_f1']:>9.3f} {r['characters']:>10} {r['mentions']:>8} {r['seconds']:>7.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"encoder": encoder, "precision": args.precision, "size": args.size, "knn": args.knn, "test_fraction": TEST_FRACTION,
                                    "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
