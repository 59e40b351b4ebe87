"""Export throughput and peak memory: N Label Studio-shaped tasks built from real documents → every format.

Each size runs in a fresh subprocess so its peak RSS (resource.getrusage in the child) is its own, once
per mode: ``serial`` (everything in the export's process) and ``auto`` (CoNLL/Parquet in a helper process
once the export is large, the default), side by side in one run.
Prints a table and writes JSON (default bench/results/export_speed.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ncbi_disease" / "train.jsonl"
FALLBACK_DATA = ROOT / "tests" / "data" / "export" / "tasks.json"


def load_documents(path: Path) -> list[dict]:
    """Documents as {"text", "spans"} from a corpus JSONL or a Label Studio task list."""
    if path.suffix == ".json":
        docs = []
        for t in json.loads(path.read_text(encoding="utf-8")):
            ann = t["annotations"][0]["result"]
            spans = [{"start": r["value"]["start"], "end": r["value"]["end"], "label": r["value"]["labels"][0]}
                     for r in ann if "start" in r.get("value", {})]
            docs.append({"text": t["data"]["text"], "spans": spans})
        return docs
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def label_config(labels: list[str]) -> str:
    """A labeling config with one span control holding the corpus's labels."""
    inner = "".join(f'<Label value="{lbl}"/>' for lbl in labels)
    return f'<View><Labels name="entities" toName="text">{inner}</Labels><Text name="text" value="$text"/></View>'


def tasks(docs: list[dict], n: int) -> Iterator[dict]:
    """n tasks repeating the documents with new ids; gold spans as one annotation each (streamed)."""
    for i in range(n):
        doc = docs[i % len(docs)]
        text = doc["text"]
        result = [
            {"id": f"r{j}", "from_name": "entities", "to_name": "text", "type": "labels",
             "value": {"start": s["start"], "end": s["end"], "text": text[s["start"]:s["end"]], "labels": [s["label"]]}}
            for j, s in enumerate(doc["spans"])
        ]
        yield {"id": i + 1, "data": {"text": text}, "meta": {},
               "annotations": [{"id": i + 1, "completed_by": 1 + i % 3, "result": result, "was_cancelled": False,
                                "ground_truth": False, "created_at": "2026-11-22T05:58:28.513430Z",
                                "updated_at": "2026-11-22T05:58:28.513430Z", "lead_time": 3.2,
                                "parent_prediction": None}],
               "predictions": []}


MODES = {"serial": False, "auto": None}


def child(data: Path, n: int, mode: str = "auto") -> dict:
    """Run one export of n tasks in this process; return timings and peak RSS."""
    sys.path.insert(0, str(ROOT))
    from ml_backend.schema import parse_label_config
    from server.export import ExportOptions, ProjectInfo, export_dataset

    docs = load_documents(data)
    labels = sorted({s["label"] for d in docs for s in d["spans"]})
    xml = label_config(labels)
    spec = parse_label_config(xml)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = Path(tempfile.mkdtemp(prefix="goldloop-bench-"))
    try:
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        # total: the task count, which `goldloop export` takes from the Label Studio project
        options = ExportOptions(out, progress=False, total=n, parallel=MODES[mode])
        result = export_dataset(tasks(docs, n), spec, ProjectInfo(1, "bench", "Bench", xml), options)
        elapsed = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the helper process that builds CoNLL/Parquet
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        documents = result.manifest["counts"]["documents"]
        size = sum(p.stat().st_size for p in result.version_dir.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "tasks": n,
        "mode": mode,
        "documents": documents,
        "seconds": round(elapsed, 2),
        "cpu_seconds": round(cpu, 2),
        "helper_cpu_seconds": round(kids.ru_utime + kids.ru_stime, 2),
        "tasks_per_s": round(n / elapsed),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "helper_peak_rss_mb": round(kids.ru_maxrss / 1024, 1),
        "rss_before_export_mb": round(rss_before / 1024, 1),
        "output_mb": round(size / 1e6, 1),
        "documents_in_corpus": len(docs),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every size in a fresh subprocess, print a table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA if DEFAULT_DATA.exists() else FALLBACK_DATA,
                    help="corpus JSONL ({text, spans}) or Label Studio task list JSON")
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated task counts")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export_speed.json")
    ap.add_argument("--modes", default="serial,auto", help="comma-separated: " + ",".join(MODES))
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-mode", default="auto", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.data, args.child, args.child_mode)))
        return 0
    if not args.data.exists():
        print(f"data file not found: {args.data}", file=sys.stderr)
        return 2
    rows = []
    modes = [m for m in args.modes.split(",") if m]
    if unknown := [m for m in modes if m not in MODES]:
        print(f"unknown mode(s) {unknown}; choose from {list(MODES)}", file=sys.stderr)
        return 2
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        for mode in modes:
            proc = subprocess.run(
                [sys.executable, __file__, "--data", str(args.data), "--child", str(n), "--child-mode", mode],
                capture_output=True, text=True, cwd=ROOT,
            )
            if proc.returncode != 0:
                print(f"export of {n} tasks ({mode}) failed:\n{proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                return 1
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{'tasks':>8} {'mode':>7} {'wall s':>8} {'CPU s':>8} {'helper CPU s':>13} {'tasks/s':>8} {'peak RSS MB':>12} "
          f"{'helper RSS MB':>14} {'output MB':>10}")
    for r in rows:
        print(f"{r['tasks']:>8} {r['mode']:>7} {r['seconds']:>8} {r['cpu_seconds']:>8} {r['helper_cpu_seconds']:>13} "
              f"{r['tasks_per_s']:>8} {r['peak_rss_mb']:>12} {r['helper_peak_rss_mb']:>14} {r['output_mb']:>10}")
    by = {(r["tasks"], r["mode"]): r for r in rows}
    speedups = {}
    for (n, mode), r in by.items():
        if mode != "serial" and (n, "serial") in by:
            speedups[f"{n}:{mode}"] = round(by[(n, "serial")]["seconds"] / r["seconds"], 2)
            print(f"{n} tasks: {mode} is {speedups[f'{n}:{mode}']}x serial")
    report = {
        "benchmark": "export_speed",
        "speedup_vs_serial": speedups,
        "data": str(args.data),
        "formats": ["jsonl", "conll", "hf", "csv"],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
