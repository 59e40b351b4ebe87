"""Bulk pre-annotation engines side by side, in one process run: in-process vs Ray local (``goldloop predict``).

Both run the same batch function (server/predict_batch.py BatchPredictor) over the same N documents with a served
version: a token classifier on the default encoder (MiniLM-L6; its head is not trained: the compute is that of a
fine-tuned one, the spans are not meaningful). Label Studio is left out: reading and writing tasks costs both
engines the same and is measured by the e2e tests, not here. Reported per engine: model load + prediction time,
docs/s, Ray's startup, and the projection to 1M documents on this machine and per Ray CPU.

    .venv/bin/python bench/batch_predict.py [--data JSONL] [--docs N] [--batch-size N] [--num-cpus N] [--quantize none|int8] [--out JSON]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml_backend.models import TokenClassifier  # noqa: E402
from ml_backend.models.torch_utils import available_cores  # noqa: E402
from ml_backend.registry import ProjectModel, Registry  # noqa: E402
from ml_backend.results import spans_of  # noqa: E402
from ml_backend.schema import parse_label_config  # noqa: E402
from server.config import Settings  # noqa: E402
from server.predict import in_process_batches  # noqa: E402
from server.predict_batch import BatchPredictor, Job  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "ncbi_disease" / "train.jsonl"
IN_REPO = ROOT / "tests" / "data" / "ncbi_disease" / "train.jsonl"
LABELS = ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"]
CONFIG = "<View><Labels name='entities' toName='text'>" + "".join(f"<Label value='{x}'/>" for x in LABELS) + "</Labels><Text name='text' value='$text'/></View>"
VERSION = "bench-v1"
PROJECT = "1"


def read_texts(path: Path, n: int) -> list[str]:
    texts = [json.loads(ln)["text"] for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [texts[i % len(texts)] for i in range(n)]  # repeated when the file is shorter (no cache: each batch computes)


def serve_version(settings: Settings) -> None:
    spec = parse_label_config(CONFIG)
    model = TokenClassifier(LABELS, model_name=settings.model)
    Registry(settings.backend_settings()).promote(PROJECT, ProjectModel(spec, VERSION, {"entities": model}))


def in_process(job: Job, rows: list[dict], batch_size: int) -> tuple[dict, list[dict]]:
    t0 = time.perf_counter()
    BatchPredictor(job)  # the model load, timed alone (in_process_batches loads it again, from the OS page cache)
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    items = [it for batch in in_process_batches(job, rows, batch_size) for it in batch]
    total = time.perf_counter() - t1
    return {"engine": "in-process", "load_s": round(load, 2), "wall_s": round(total, 2), "startup_s": 0.0,
            "docs_per_s": round(len(rows) / total, 2), "workers": 1, "threads_per_worker": available_cores()}, items


def ray_local(job: Job, rows: list[dict], batch_size: int, num_cpus: int) -> tuple[dict, list[dict]]:
    from server.predict_ray import ray_batches

    stats: dict = {}
    t0 = time.perf_counter()
    items = [it for batch in ray_batches(job, rows, batch_size, "local", num_cpus, stats) for it in batch]
    total = time.perf_counter() - t0 - stats["startup_s"]
    return {"engine": "ray local", "load_s": None, "wall_s": round(total, 2), "startup_s": stats["startup_s"],
            "docs_per_s": round(len(rows) / total, 2), "workers": stats["actors"], "threads_per_worker": 1}, items


def same_predictions(a: list[dict], b: list[dict]) -> bool:
    by_task = {it["task"]: it for it in b}
    return len(a) == len(b) and all(
        sorted(spans_of(x["result"])) == sorted(spans_of(by_task[x["task"]]["result"])) and abs(x["score"] - by_task[x["task"]]["score"]) < 1e-4
        for x in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else IN_REPO, help="JSONL with a 'text' field (default: NCBI abstracts)")
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-cpus", type=int, default=available_cores(), help="Ray local CPUs (one actor each)")
    ap.add_argument("--quantize", default="none", choices=["none", "int8"])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch_predict.json")
    args = ap.parse_args()

    texts = read_texts(args.data, args.docs)
    rows = [{"task": i + 1, "text_0": t} for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory(prefix="goldloop-bench-") as home:
        settings = Settings(home=Path(home), quantize=args.quantize)
        serve_version(settings)
        job = Job(PROJECT, CONFIG, VERSION, settings.backend_settings())
        base, base_items = in_process(job, rows, args.batch_size)
        ray_row, ray_items = ray_local(job, rows, args.batch_size, args.num_cpus)
    rows_out = [base, ray_row]
    for r in rows_out:
        r["hours_per_1M_docs"] = round(1e6 / r["docs_per_s"] / 3600, 1)
    per_cpu = ray_row["docs_per_s"] / ray_row["workers"]
    result = {
        "data": str(args.data), "docs": len(texts), "mean_chars": round(sum(map(len, texts)) / len(texts)), "batch_size": args.batch_size,
        "cores": available_cores(), "quantize": args.quantize, "model": settings.model, "engines": rows_out,
        "same_predictions": same_predictions(base_items, ray_items),
        "ray_docs_per_s_per_cpu": round(per_cpu, 2),
        "projection_hours_per_1M_docs": {f"{n} CPUs": round(1e6 / (per_cpu * n) / 3600, 2) for n in (2, 16, 64, 256)},
    }
    print(f"{len(texts)} docs ({result['mean_chars']} chars on average) from {args.data.name}, batch {args.batch_size}, "
          f"{result['cores']} cores, quantize {args.quantize}")
    print(f"{'engine':<12}{'workers':>8}{'startup s':>11}{'load s':>8}{'predict s':>11}{'docs/s':>9}{'h / 1M docs':>13}")
    for r in rows_out:
        load = "" if r["load_s"] is None else f"{r['load_s']:.1f}"
        print(f"{r['engine']:<12}{r['workers']:>8}{r['startup_s']:>11.1f}{load:>8}{r['wall_s']:>11.1f}{r['docs_per_s']:>9.1f}{r['hours_per_1M_docs']:>13.1f}")
    print(f"same predictions from both engines: {result['same_predictions']}")
    print("Ray projection at " + f"{per_cpu:.1f} docs/s per CPU: " + ", ".join(f"{k}: {v} h" for k, v in result["projection_hours_per_1M_docs"].items()) + " per 1M docs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
