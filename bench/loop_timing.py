"""START_TRAINING-to-serving time for N labeled documents and /predict p95 while the round runs, on the real stack.

Starts goldloop's stack (real Label Studio on SQLite + the backend) in a throw-away data dir, imports N + pool
tweets into the financial_news project, creates N annotations through the Label Studio API (gold labels),
measures single-document /predict latency over HTTP while idle, then sends Label Studio's START_TRAINING
(Label Studio → backend webhook, exactly as the "Start training" button does) and keeps sending /predict
until the backend serves the new version. The round is the production one: export from Label Studio →
fine-tune → evaluate → gate → promote → pre-annotate the pool → sync the project's model_version.

    .venv/bin/python bench/loop_timing.py [--data FILE.jsonl] [--labeled 500] [--pool 200] [--out JSON]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402

from server import ls_client, stack, store  # noqa: E402
from server.config import ENV_DEVICE, Settings, local_url  # noqa: E402
from server.datadir import DataDir  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "twitter_financial_news_sentiment" / "train.jsonl"
FALLBACK = ROOT / "tests" / "data" / "twitter_financial_news" / "train.jsonl"
MAP = {"Bullish": "positive", "Bearish": "negative", "Neutral": "neutral"}


def goldloop(home: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the goldloop CLI as a user would; fail loudly with its output."""
    full_env = {**os.environ, "GOLDLOOP_HOME": str(home), **(env or {})}
    out = subprocess.run([sys.executable, "-m", "server.cli", *args, "--data-dir", str(home)], env=full_env,
                         capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise SystemExit(f"goldloop {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else FALLBACK)
    ap.add_argument("--labeled", type=int, default=500)
    ap.add_argument("--pool", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop_timing.json")
    ap.add_argument("--keep", action="store_true", help="keep the data dir (printed) instead of deleting it")
    ap.add_argument("--device", default="auto", help="the stack's GOLDLOOP_DEVICE: auto (CUDA when torch sees one), cpu, cuda or cuda:N")
    args = ap.parse_args()

    rows = [json.loads(x) for x in args.data.read_text(encoding="utf-8").split("\n") if x.strip()]
    if len(rows) < 40:
        raise SystemExit(f"{args.data}: only {len(rows)} documents")
    home = Path(tempfile.mkdtemp(prefix="goldloop-loop-bench-")) / "home"
    ls_port, be_port = stack.free_port(), stack.free_port()
    while be_port == ls_port:
        be_port = stack.free_port()
    # only the START_TRAINING below starts a round (no automatic trigger every N annotations)
    env = {"GOLDLOOP_MIN_ANNOTATIONS_TO_TRAIN": str(100 * args.labeled), ENV_DEVICE: args.device}
    t_up = time.perf_counter()
    print("starting Label Studio + backend (first start migrates Label Studio's database) ...", flush=True)
    goldloop(home, "up", "--detach", "--no-samples", "--ls-port", str(ls_port), "--backend-port", str(be_port), env=env)
    t_up = time.perf_counter() - t_up
    try:
        settings = Settings(home=home, ls_url=local_url(ls_port), ls_api_key=DataDir(home).read_token())
        client = ls_client.connect(settings)
        db = store.open_db(DataDir(home).db_path)
        pid = store.get_project_by_name(db, "financial_news")["id"]
        ml_id = store.get_project(db, pid)["ml_backend_id"]

        docs = rows[: args.labeled + args.pool]
        path = home / "bench-docs.jsonl"
        path.write_text("".join(json.dumps({"text": r["text"], "gold": MAP.get(r["label"], r["label"])}) + "\n" for r in docs))
        goldloop(home, "import", "financial_news", str(path), "--no-predict", env=env)
        tasks = list(ls_client.iter_tasks(client, pid))
        labeled = tasks[: args.labeled]
        print(f"annotating {len(labeled)} of {len(tasks)} tasks through the API ...", flush=True)
        for t in labeled:
            ls_client.create_annotation(client, t["id"], [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                           "value": {"choices": [t["data"]["gold"]]}}])
        config = ls_client.get_project(client, pid).label_config
        backend = f"http://127.0.0.1:{be_port}"
        sess = requests.Session()
        probe = [t["data"]["text"] for t in tasks[args.labeled:]] or [t["data"]["text"] for t in tasks]

        def one(i: int) -> tuple[float, str]:
            t0 = time.perf_counter()
            r = sess.post(backend + "/predict", json={"project": f"{pid}.1", "label_config": config,
                                                     "tasks": [{"id": 10_000_000 + i, "data": {"text": probe[i % len(probe)] + f" #{i}"}}]}, timeout=60)
            r.raise_for_status()
            return time.perf_counter() - t0, r.json().get("results", [{}])[0].get("model_version", "")

        for i in range(5):
            one(i)
        idle = [one(100 + i)[0] for i in range(60)]
        before = sess.post(backend + "/setup", json={"project": f"{pid}.1", "schema": config}, timeout=10).json()["model_version"]

        during: list[float] = []
        served_at: list[float] = []
        stop = threading.Event()

        errors: list[str] = []

        def hammer(t0: float) -> None:
            i = 0
            while not stop.is_set():
                try:
                    dt, version = one(1000 + i)
                except requests.RequestException as exc:  # counted and reported, never silently ends the probe
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    time.sleep(0.2)
                    continue
                finally:
                    i += 1
                during.append(dt)
                if version and version != before and not served_at:
                    served_at.append(time.perf_counter() - t0)
                time.sleep(0.2)

        print("START_TRAINING ...", flush=True)
        t0 = time.perf_counter()
        th = threading.Thread(target=hammer, args=(t0,), daemon=True)
        th.start()
        ls_client.train(client, ml_id)
        deadline = t0 + 1800
        rec = None
        last_note = t0
        while time.perf_counter() < deadline:
            rec = next((v for v in store.list_versions(db, pid) if v["status"] != "running"), None)
            if rec is not None:
                break
            if time.perf_counter() - last_note > 15:
                last_note = time.perf_counter()
                print(f"  {last_note - t0:5.0f} s: round running, {len(during)} /predict answered meanwhile", flush=True)
            time.sleep(0.5)
        t_round = time.perf_counter() - t0
        # the backend picks the promoted version up on its next request
        while not served_at and th.is_alive() and time.perf_counter() < deadline and rec is not None and rec["status"] == "promoted":
            time.sleep(0.2)
        stop.set()
        th.join()
        if rec is None:
            raise SystemExit("the round did not finish within 30 minutes")
        metrics = json.loads(rec["metrics"] or "{}")

        def pct(xs, q):
            return 1000 * float(np.percentile(xs, q))

        result = {
            "labeled_docs": rec["labeled_docs"], "pool_docs": rec["pool_docs"], "status": rec["status"], "version": rec["version"],
            "stack_up_s": t_up, "round_s": t_round, "start_training_to_serving_s": served_at[0] if served_at else None,
            "primary": rec["primary"], "serving_primary_before": rec["serving_primary"], "metrics": metrics,
            "predict_ms": {"idle_p50": 1000 * statistics.median(idle), "idle_p95": pct(idle, 95),
                           "during_round_p50": 1000 * statistics.median(during), "during_round_p95": pct(during, 95),
                           "during_requests": len(during), "errors": len(errors), "first_errors": errors[:3]},
            "cpus": os.cpu_count(),
            "device": requests.get(f"{local_url(be_port)}/health", timeout=10).json().get("device"),
        }
        result["predict_ms"]["p95_ratio"] = result["predict_ms"]["during_round_p95"] / result["predict_ms"]["idle_p95"]
        p = result["predict_ms"]
        print(f"\n{'what':<48}{'value':>14}")
        print(f"{'backend device':<48}{result['device']:>14}")
        print(f"{'labeled docs / pool docs':<48}{rec['labeled_docs']:>8} / {rec['pool_docs']}")
        print(f"{'round (export→train→eval→gate→promote→pool) s':<48}{t_round:>14.1f}")
        served = f"{served_at[0]:.1f}" if served_at else "never"
        print(f"{'START_TRAINING → /predict serves new version s':<48}{served:>14}")
        print(f"{'decision':<48}{rec['status']:>14}")
        print(f"{'primary metric new / serving before':<48}{rec['primary'] or 0:>7.3f} / {rec['serving_primary'] or 0:.3f}")
        print(f"{'/predict p50 idle / during round ms':<48}{p['idle_p50']:>7.1f} / {p['during_round_p50']:.1f}")
        print(f"{'/predict p95 idle / during round ms':<48}{p['idle_p95']:>7.1f} / {p['during_round_p95']:.1f}")
        print(f"{'p95 ratio (target <= 2)':<48}{p['p95_ratio']:>14.2f}")
        if errors:
            print(f"{len(errors)} /predict requests failed during the round, first: {errors[0]}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    finally:
        subprocess.run([sys.executable, "-m", "server.cli", "down", "--data-dir", str(home)], cwd=ROOT, capture_output=True, check=False)
        if args.keep:
            print(f"data dir kept: {home}")
        else:
            shutil.rmtree(home.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
