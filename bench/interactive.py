"""Latency of an Auto-Annotation answer (/predict with params.context) on a 5,000-character document.

The document is NCBI disease test abstracts joined and cut to 5,000 characters; the annotator has marked the
first occurrence of its most frequent disease mention. Served models, each behind the backend app (the
Flask app's own request path, no network):

- cold start: the string matcher, taught the gold spans of NCBI training abstracts through the webhook;
- token fp32: all-MiniLM-L6-v2 fine-tuned briefly on NCBI training abstracts, promoted and served;
- token int8: the same weights served through the ONNX Runtime int8 graph (``--no-int8`` skips it).

Per model, interleaved, ``--repeats`` requests each: the interactive answer on a document the backend has
not seen (the text made unique per request, so the model runs), the interactive answer on a document it has
(a later mark on the same task: the model's spans come from the prediction cache), and the baseline, the
plain /predict of an unseen document (what a pre-annotation costs). "model spans" is the share of answers that
carried the model's spans (an interactive answer waits at most ml_backend.interactive.MODEL_WAIT_S for them).
Prints a table, writes JSON.

    .venv/bin/python bench/interactive.py [--repeats 40] [--steps 16] [--no-int8] [--out bench/results/interactive.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

DATA = ROOT / "tests" / "data"
DOC_CHARS = 5000
BUDGET_MS = 100.0
NCBI_LABELS = ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"]
NCBI_CONFIG = ("<View><Labels name='entities' toName='text'>" + "".join(f"<Label value='{x}'/>" for x in NCBI_LABELS)
               + "</Labels><Text name='text' value='$text'/></View>")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def document() -> tuple[str, dict]:
    """The 5,000-character document and the annotator's region: the first occurrence of its most frequent mention."""
    text, spans = "", []
    for row in read_jsonl(DATA / "ncbi_disease" / "test.jsonl"):
        base = len(text) + (2 if text else 0)
        text = f"{text}\n\n{row['text']}" if text else row["text"]
        spans += [(base + s["start"], base + s["end"], s["label"]) for s in row["spans"]]
        if len(text) >= DOC_CHARS:
            break
    text = text[:DOC_CHARS]
    spans = [s for s in spans if s[1] <= DOC_CHARS]
    counts = Counter(text[s:e].casefold() for s, e, _ in spans)
    s, e, label = next(x for x in spans if text[x[0]:x[1]].casefold() == counts.most_common(1)[0][0])
    region = {"id": "bench00001", "from_name": "entities", "to_name": "text", "type": "labels", "origin": "manual",
              "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}}
    return text, region


def body(text: str, region: dict | None) -> dict:
    """A /predict body in the shape Label Studio sends (tests/data/fixtures/label-studio-1.23.2-interactive.jsonl)."""
    task = {"id": 1, "annotations": [], "drafts": [], "predictions": [], "data": {"text": text}, "meta": {}, "project": 1}
    context = {"result": [region]} if region else None
    return {"tasks": [task], "project": "1.1796007545", "label_config": NCBI_CONFIG,
            "params": {"login": None, "password": None, "context": context}}


def ncbi_examples(rows):
    from ml_backend.models import Examples

    return Examples([r["text"] for r in rows], [[(s["start"], s["end"], s["label"]) for s in r["spans"]] for r in rows])


def served_apps(home: Path, steps: int, int8: bool) -> dict:
    """name → a test client of a backend app serving that model for project 1."""
    from ml_backend import create_app
    from ml_backend.models import TokenClassifier
    from ml_backend.registry import ProjectModel, Registry
    from ml_backend.schema import parse_label_config
    from server.config import Settings

    train = read_jsonl(DATA / "ncbi_disease" / "train.jsonl")
    apps = {}
    settings = Settings(home=home / "cold", testing=True).backend_settings()
    cold = create_app(settings).test_client()
    for i, row in enumerate(tqdm(train, desc="teach the matcher", unit="doc")):
        result = [{"from_name": "entities", "to_name": "text", "type": "labels",
                   "value": {"start": s["start"], "end": s["end"], "labels": [s["label"]]}} for s in row["spans"]]
        cold.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1, "label_config": NCBI_CONFIG},
                                    "task": {"id": i, "data": {"text": row["text"]}}, "annotation": {"id": i, "result": result}})
    apps["cold start (matcher)"] = cold
    settings = Settings(home=home / "token", testing=True).backend_settings()
    model = TokenClassifier(NCBI_LABELS, model_name=settings.model, max_length=256)
    model.fit(ncbi_examples(train[:64]), epochs=1, max_steps=steps, batch_size=8, progress=True)
    spec = parse_label_config(NCBI_CONFIG)
    Registry(settings).promote("1", ProjectModel(spec, "v-token", {"entities": model}))
    apps["MiniLM token fp32"] = create_app(settings).test_client()
    if int8:
        settings8 = settings.with_overrides(quantize="int8", models_dir=home / "token8" / "models")
        Registry(settings8).promote("1", ProjectModel(spec, "v-token-int8", {"entities": model}))
        apps["MiniLM token int8"] = create_app(settings8).test_client()
    return apps


def timed(client, payload: dict) -> tuple[float, dict]:
    """Milliseconds of one /predict through the app, and its one prediction."""
    t0 = time.perf_counter()
    resp = client.post("/predict", json=payload)
    ms = (time.perf_counter() - t0) * 1000
    if resp.status_code != 200:
        raise SystemExit(f"Error: /predict answered {resp.status_code}: {resp.get_json()}")
    return ms, resp.get_json()["results"][0]


def stats(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "max_ms": round(max(ms), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--steps", type=int, default=16, help="fine-tuning steps of the token model")
    ap.add_argument("--no-int8", dest="int8", action="store_false")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "interactive.json")
    args = ap.parse_args()
    text, region = document()
    with tempfile.TemporaryDirectory() as tmp:
        apps = served_apps(Path(tmp), args.steps, args.int8)
        rows = []
        for name, client in apps.items():
            timed(client, body(text, region))  # warm-up: the model loaded, the text seen (cache)
            paths = ("interactive, unseen document", "interactive, seen document", "baseline: plain /predict, unseen")
            cells: dict[str, list[float]] = {p: [] for p in paths}
            with_model: dict[str, int] = {p: 0 for p in paths}
            last: dict[str, dict] = {}
            for i in tqdm(range(args.repeats), desc=name, unit="round"):
                requests = (body(f"{text[:-12]} (#{i:08d})", region),  # same length, new text: no cache hit
                            body(text, region), body(f"{text[:-12]} (*{i:08d})", None))
                for path, payload in zip(paths, requests):
                    ms, last[path] = timed(client, payload)
                    cells[path].append(ms)
                    with_model[path] += not last[path].get("model_pending")
                    with client.application.extensions["goldloop"].registry.loaded("1").lock:
                        pass  # a prediction still running in the background (past the wait) ends before the next request
            for path, ms in cells.items():
                spans = [r for r in last[path]["result"] if r["from_name"] == "entities"]
                copied = sum(1 for r in spans if r["id"] != region["id"] and r["value"]["text"].casefold() == region["value"]["text"].casefold())
                rows.append({"model": name, "path": path, **stats(ms), "with_model_spans": with_model[path] / len(ms),
                             "spans": len(spans), "copies": copied, "model_version": last[path]["model_version"]})
    print(f"\nInteractive answer on a {len(text)}-character document; marked {region['value']['text']!r} "
          f"({region['value']['labels'][0]}); {args.repeats} requests per cell, Flask app in-process\n")
    head = (f"{'model':<22} {'path':<34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'model spans':>11} {'spans':>6} "
            f"{'copies':>6}  p95<=100ms")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        ok = "yes" if r["p95_ms"] <= BUDGET_MS else "no"
        ok = ok if r["path"].startswith("interactive") else "-"
        print(f"{r['model']:<22} {r['path']:<34} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['max_ms']:>8.1f} "
              f"{r['with_model_spans']:>10.0%} {r['spans']:>6} {r['copies']:>6}  {ok}")
    import torch

    out = {"document_chars": len(text), "marked": region["value"], "repeats": args.repeats, "budget_ms": BUDGET_MS,
           "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version()},
           "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
