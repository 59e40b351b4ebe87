"""50 concurrent clients against the real backend (`goldloop backend`, waitress, loopback), idle and during a fit.

Two projects serve trained models: a token classifier (NCBI disease abstracts, Labels) and a document
classifier (financial tweets, Choices), both fine-tuned briefly from the real MiniLM encoder and promoted
through the registry. Each client loops: one project at random, a /predict of 1 or 8 tasks (even odds),
every text made unique so the prediction cache never answers. Phase "idle" runs alone; phase "training"
runs while another process (at nice 10, as the backend's training rounds do) fine-tunes a token classifier.
Prints requests/s, p50/p95/p99 and errors per phase; writes JSON.

    .venv/bin/python bench/load_backend.py [--clients 50] [--seconds 60] [--out bench/results/load_backend.json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402

DATA = ROOT / "tests" / "data"
NCBI_LABELS = ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"]
NCBI_CONFIG = ("<View><Labels name='entities' toName='text'>" + "".join(f"<Label value='{x}'/>" for x in NCBI_LABELS)
               + "</Labels><Text name='text' value='$text'/></View>")
TWEET_LABELS = ["Bearish", "Bullish", "Neutral"]
TWEET_CONFIG = ("<View><Text name='text' value='$text'/><Choices name='sentiment' toName='text'>"
                + "".join(f"<Choice value='{x}'/>" for x in TWEET_LABELS) + "</Choices></View>")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ncbi_examples(rows):
    from ml_backend.models import Examples

    return Examples([r["text"] for r in rows], [[(s["start"], s["end"], s["label"]) for s in r["spans"]] for r in rows])


def train_and_promote(settings, docs: int, steps: int) -> None:
    """Fine-tune both models briefly on `docs` documents each and promote them as projects 1 and 2."""
    from ml_backend.models import Examples, SequenceClassifier, TokenClassifier
    from ml_backend.registry import ProjectModel, Registry
    from ml_backend.schema import parse_label_config

    registry = Registry(settings)
    ncbi = read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:docs]
    tok = TokenClassifier(NCBI_LABELS, model_name=settings.model, max_length=256)
    tok.fit(ncbi_examples(ncbi), epochs=1, max_steps=steps, batch_size=8, progress=True)
    registry.promote("1", ProjectModel(parse_label_config(NCBI_CONFIG), "v-ncbi", {"entities": tok}))
    tweets = random.Random(0).sample(read_jsonl(DATA / "twitter_financial_news" / "train.jsonl"), docs * 2)  # the file is sorted by label
    seq = SequenceClassifier(TWEET_LABELS, model_name=settings.model, max_length=128)
    seq.fit(Examples([t["text"] for t in tweets], [[t["label"]] for t in tweets]), epochs=1, max_steps=steps, batch_size=8, progress=True)
    registry.promote("2", ProjectModel(parse_label_config(TWEET_CONFIG), "v-tweets", {"sentiment": seq}))


def fit_worker(seconds: float) -> None:
    """Fine-tune token classifiers back to back for `seconds`: the load a training round puts on the machine."""
    from ml_backend.models import TokenClassifier
    from server.config import default_model

    rows = read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:64]
    deadline = time.time() + seconds
    while time.time() < deadline:
        TokenClassifier(NCBI_LABELS, model_name=default_model(), max_length=256).fit(ncbi_examples(rows), epochs=1, max_steps=8, batch_size=8, progress=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_phase(url: str, clients: int, seconds: float, texts: dict[str, list[str]]) -> dict:
    """`clients` threads posting /predict for `seconds`; latencies of the answered requests and the errors."""
    lat: list[float] = []
    errors: list[str] = []
    sizes = {1: 0, 8: 0}
    counter = itertools.count()
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    projects = [("1.1", NCBI_CONFIG, texts["ncbi"]), ("2.1", TWEET_CONFIG, texts["tweets"])]

    def client(i: int) -> None:
        rnd = random.Random(i)
        session = requests.Session()
        while time.perf_counter() < stop:
            project, config, pool = rnd.choice(projects)
            n = rnd.choice((1, 8))
            tasks = [{"id": next(counter), "data": {"text": f"{rnd.choice(pool)} (#{next(counter)})"}} for _ in range(n)]
            t0 = time.perf_counter()
            try:
                resp = session.post(f"{url}/predict", json={"project": project, "label_config": config, "tasks": tasks}, timeout=120)
                ok = resp.status_code == 200 and len(resp.json()["results"]) == n
                problem = None if ok else f"HTTP {resp.status_code}"
            except (requests.RequestException, ValueError) as exc:
                problem = type(exc).__name__
            dt = time.perf_counter() - t0
            with lock:
                if problem:
                    errors.append(problem)
                else:
                    lat.append(dt)
                    sizes[n] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(lat) * 1000 if lat else np.array([np.nan])
    return {"requests": len(lat), "errors": len(errors), "error_kinds": sorted(set(errors)), "seconds": round(wall, 1),
            "requests_per_s": round(len(lat) / wall, 2), "docs_per_s": round((sizes[1] + 8 * sizes[8]) / wall, 2),
            "single_task_requests": sizes[1], "eight_task_requests": sizes[8],
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--train-docs", type=int, default=32, help="documents each served model is fine-tuned on")
    ap.add_argument("--train-steps", type=int, default=6, help="optimizer steps of each served model's fine-tuning")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load_backend.json")
    ap.add_argument("--fit-worker", type=float, default=None, help=argparse.SUPPRESS)  # internal: the training process
    args = ap.parse_args()
    if args.fit_worker is not None:
        fit_worker(args.fit_worker)
        return

    from server.config import Settings

    texts = {"ncbi": [r["text"] for r in read_jsonl(DATA / "ncbi_disease" / "test.jsonl")],
             "tweets": [r["text"] for r in read_jsonl(DATA / "twitter_financial_news" / "train.jsonl")]}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = Settings(home=home)
        t0 = time.perf_counter()
        train_and_promote(settings.backend_settings(), args.train_docs, args.train_steps)
        print(f"trained and promoted both models in {time.perf_counter() - t0:.0f} s")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "backend.log", "wb")
        backend = subprocess.Popen([sys.executable, "-m", "server.cli", "backend", "--data-dir", str(home), "--host", "127.0.0.1",
                                    "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(600):
                try:
                    if requests.get(f"{url}/health", timeout=1).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.2)
            for project, config, key in (("1.1", NCBI_CONFIG, "ncbi"), ("2.1", TWEET_CONFIG, "tweets")):  # load both models
                r = requests.post(f"{url}/predict", json={"project": project, "label_config": config,
                                                          "tasks": [{"id": 0, "data": {"text": texts[key][0]}}]}, timeout=300)
                assert r.status_code == 200 and r.json()["model_version"] in ("v-ncbi", "v-tweets"), r.text
            results = {"idle": run_phase(url, args.clients, args.seconds, texts)}
            fit = subprocess.Popen([sys.executable, __file__, "--fit-worker", str(args.seconds + 120)], cwd=ROOT,
                                   preexec_fn=lambda: os.nice(10), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(15)  # the fit is loading its model and running its first steps
                assert fit.poll() is None, "the training process ended before the load started"
                results["training"] = run_phase(url, args.clients, args.seconds, texts)
                results["training"]["fit_running_at_end"] = fit.poll() is None
            finally:
                fit.kill()
                fit.wait()
            healthy = requests.get(f"{url}/health", timeout=10).json()["status"] == "UP"
        finally:
            backend.terminate()
            backend.wait(30)
    print(f"\n{'phase':<10}{'requests':>9}{'req/s':>8}{'docs/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for phase, r in results.items():
        print(f"{phase:<10}{r['requests']:>9}{r['requests_per_s']:>8.2f}{r['docs_per_s']:>8.1f}{r['p50_ms']:>9.0f}"
              f"{r['p95_ms']:>9.0f}{r['p99_ms']:>9.0f}{r['errors']:>8}")
    ratio = results["training"]["p95_ms"] / results["idle"]["p95_ms"]
    print(f"p95 during training / idle: {ratio:.2f} (target <= 2); healthy afterwards: {healthy}")
    out = {"clients": args.clients, "seconds_per_phase": args.seconds, "train_docs": args.train_docs, "train_steps": args.train_steps,
           "cpu_count": os.cpu_count(), "phases": results, "p95_ratio": round(ratio, 2), "healthy_after": healthy}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
