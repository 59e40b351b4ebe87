"""Training-round time for N labeled documents and /predict latency while training runs, in one run.

Measures the backend side of START_TRAINING → serving: train (fine-tune the sequence classifier on N
labeled tweets, early stopping on dev) → evaluate candidate and serving on the test split → promote
(save + atomic swap), while a client sends single-document /predict requests over HTTP to the same
process; p50/p95 latency idle vs during training.

    .venv/bin/python bench/loop_timing.py [--data FILE] [--labeled 500] [--out JSON]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from ml_backend.registry import ProjectModel, new_version_name  # noqa: E402
from ml_backend.schema import parse_label_config  # noqa: E402
from ml_backend.splits import split_of  # noqa: E402
from ml_backend.training import TrainOptions, evaluate_models, examples_for, gate, train_control  # noqa: E402
from server.config import Settings  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "twitter_financial_news_sentiment" / "train.jsonl"
CONFIG = """<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">
<Choice value="Bearish"/><Choice value="Bullish"/><Choice value="Neutral"/></Choices></View>"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else ROOT / "tests" / "data" / "twitter_financial_news" / "train.jsonl")
    ap.add_argument("--labeled", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop_timing.json")
    args = ap.parse_args()

    import requests
    import waitress

    from ml_backend import create_app
    from bench.predict_throughput import free_port

    rows = [json.loads(x) for x in args.data.read_text(encoding="utf-8").splitlines() if x.strip()][: args.labeled + 200]
    records = [{"id": r["id"], "text": r["text"], "split": split_of(r["id"]), "choices": {"sentiment": [r["label"]]}} for r in rows[: args.labeled]]
    probe = [r["text"] for r in rows[args.labeled :]]
    spec = parse_label_config(CONFIG)
    settings = Settings(home=Path(f"/tmp/goldloop-loop-bench-{os.getpid()}"), cache_size=0)
    app = create_app(settings)
    registry = app.extensions["goldloop"].registry
    serving = registry.get("1", spec)
    port = free_port()
    server = waitress.create_server(app, host="127.0.0.1", port=port, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}/predict"
    sess = requests.Session()

    def one(i: int) -> float:
        t0 = time.perf_counter()
        sess.post(url, json={"project": "1.0", "label_config": CONFIG, "tasks": [{"id": i, "data": {"text": probe[i % len(probe)]}}]}, timeout=60).raise_for_status()
        return time.perf_counter() - t0

    for i in range(5):
        one(i)
    idle = [one(i) for i in range(60)]

    during: list[float] = []
    done = threading.Event()

    def hammer():
        i = 0
        while not done.is_set():
            during.append(one(1000 + i))
            i += 1
            time.sleep(0.2)

    by = {s: [r for r in records if r["split"] == s] for s in ("train", "dev", "test")}
    control = spec.controls[0]
    opts = TrainOptions(cold_start_labels=50, epochs=args.epochs, progress=False, model_name=settings.model)
    th = threading.Thread(target=hammer, daemon=True)
    th.start()
    t0 = time.perf_counter()
    model, info = train_control(control, examples_for(control, by["train"]), examples_for(control, by["dev"]), opts)
    t_train = time.perf_counter() - t0
    candidate = ProjectModel(spec, new_version_name(), {control.name: model})
    new_m = evaluate_models(spec, candidate.models, by["test"])
    old_m = evaluate_models(spec, serving.models, by["test"])
    ok, reason = gate(new_m, old_m, opts.tolerance)
    registry.promote("1", candidate, {"metrics": new_m})
    total = time.perf_counter() - t0
    done.set()
    th.join()
    server.close()

    def pct(xs, q):
        return 1000 * float(np.percentile(xs, q))

    result = {
        "labeled_docs": len(records), "train_docs": len(by["train"]), "model": info["kind"], "epochs_run": info["fit"].get("epochs_run"),
        "train_s": t_train, "train_eval_promote_s": total, "primary_new": new_m["primary"], "primary_cold_start": old_m["primary"],
        "predict_ms": {"idle_p50": 1000 * statistics.median(idle), "idle_p95": pct(idle, 95),
                        "during_training_p50": 1000 * statistics.median(during), "during_training_p95": pct(during, 95), "during_requests": len(during)},
    }
    result["predict_ms"]["p95_ratio"] = result["predict_ms"]["during_training_p95"] / result["predict_ms"]["idle_p95"]
    print(f"\n{'what':<44}{'value':>12}")
    print(f"{'labeled docs (train/dev/test by hash)':<44}{len(records):>12}")
    print(f"{'fine-tune ' + info['kind'] + ' (s)':<44}{t_train:>12.1f}")
    print(f"{'train + evaluate + promote (s)':<44}{total:>12.1f}")
    print(f"{'macro-F1 new / cold start':<44}{new_m['primary']:>6.3f} / {old_m['primary']:.3f}")
    p = result["predict_ms"]
    print(f"{'/predict p95 idle (ms)':<44}{p['idle_p95']:>12.1f}")
    print(f"{'/predict p95 during training (ms)':<44}{p['during_training_p95']:>12.1f}")
    print(f"{'ratio (target <= 2)':<44}{p['p95_ratio']:>12.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
