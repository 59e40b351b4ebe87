"""The dashboard: how long the server takes to write a project's snapshot and the backend to render its page.

A project as a long labeling effort leaves it: 10,000 annotations (effort rows read from Label Studio-shaped tasks,
5% in the control group, three annotators) and 20 rounds (every fifth one rejected), each promoted version with its
version.json in the models dir. Timed: ``server.dashboard_data.write_snapshot`` (store reads, the effort summary
overall and per time bucket, the queue histogram of 5,000 scores, the atomic write) and GET /dashboard?project=1
through Flask's test client (snapshot read, registry records, HTML and five SVG charts), median of N runs each.

    python -m bench.dashboard [--annotations 10000] [--versions 20] [--repeats 50] [--out bench/results/dashboard.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from ml_backend import create_app
from ml_backend.registry import Registry
from ml_backend.schema import parse_label_config
from ml_backend.settings import BackendSettings
from server import dashboard_data, effort, store
from server.loop import stopping_report

ROOT = Path(__file__).resolve().parents[1]
PID = 1
TARGET_MS = 300.0
CONFIG = """<View><Text name="text" value="$text"/>
<Labels name="entities" toName="text"><Label value="Disease"/><Label value="Drug"/></Labels>
<Choices name="urgency" toName="text"><Choice value="urgent"/><Choice value="routine"/></Choices></View>"""


def _span(s, e, label):
    return {"from_name": "entities", "to_name": "text", "type": "labels", "value": {"start": s, "end": e, "labels": [label]}}


def _choice(label):
    return {"from_name": "urgency", "to_name": "text", "type": "choices", "value": {"choices": [label]}}


def build_project(db, registry: Registry, annotations: int, versions: int) -> None:
    """The store rows and version files of the benchmark project."""
    store.upsert_project(db, id=PID, schema_name="medical_records", title="Medical records (benchmark)")
    t0, promoted = 1_760_000_000.0, []
    for i in range(versions):
        name, status = f"v{i:03d}", "rejected" if i % 5 == 4 else "promoted"
        primary = 0.4 + 0.5 * (1 - 0.85 ** (i + 1))
        metrics = {"primary": primary, "controls": {"entities": {"entity_f1": primary}, "urgency": {"macro_f1": primary - 0.05}}}
        store.record_version(db, project_id=PID, version=name, trigger="webhook", status=status, started_at=t0 + 3600 * i,
                             labeled_docs=annotations * (i + 1) // versions, pool_docs=5000, primary=primary,
                             serving_primary=promoted[-1][1] if promoted else 0.3, strategy="least_confidence",
                             decision="promoted: better by 0.01" if status == "promoted" else "rejected: worse by 0.02",
                             pool_agreement=0.9, metrics=json.dumps(metrics), duration_s=60.0)
        if status == "promoted":
            vdir = registry.path(str(PID), name)
            vdir.mkdir(parents=True, exist_ok=True)
            (vdir / "version.json").write_text(json.dumps({"version": name, "promoted_at": t0 + 3600 * i + 60, "metrics": metrics}))
            promoted.append((name, primary))
    registry.path(str(PID), file="serving.json").write_text(json.dumps({"version": promoted[-1][0]}))
    spec = parse_label_config(CONFIG)
    tasks = []
    for n in range(annotations):
        version = promoted[n * len(promoted) // annotations][0]
        pred = {"id": 10**6 + n, "model_version": version, "score": 0.5, "result": [_span(0, 5, "Disease"), _choice("routine")]}
        result = [_span(0, 5, "Disease" if n % 4 else "Drug"), _choice("urgent" if n % 3 else "routine")]
        tasks.append({"id": n + 1, "data": {"text": "x" * 60}, "predictions": [pred],
                      "annotations": [{"id": 10**7 + n, "lead_time": 15.0 + (n * 7919) % 60, "parent_prediction": pred["id"],
                                       "completed_by": 1 + n % 3, "result": result, "updated_at": f"2026-01-{1 + n // 400 % 28:02d}T00:00:{n % 60:02d}Z"}]})
    store.record_effort(db, effort.annotation_rows(PID, tasks, spec, control_share=0.05))


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--annotations", type=int, default=10_000)
    ap.add_argument("--versions", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=50, help="page requests timed (the snapshot build: a fifth of it, at least 3)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dashboard.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = store.open_db(Path(tmp) / "store.db")
        settings = BackendSettings(model="", models_dir=Path(tmp) / "models")
        registry = Registry(settings)
        build_project(db, registry, args.annotations, args.versions)
        stop = stopping_report(store.list_versions(db, PID))
        scores = [(i * 37 % 1000) / 1000 for i in range(5000)]
        build_ms, build_max = _median_ms(lambda: dashboard_data.write_snapshot(db, registry, PID, stopping=stop, queue_scores=scores),
                                         max(3, args.repeats // 5))
        size = registry.path(str(PID), file="dashboard.json").stat().st_size
        client = create_app(settings).test_client()
        page = client.get(f"/dashboard?project={PID}")
        assert page.status_code == 200, page.get_data(as_text=True)[:300]
        page_ms, page_max = _median_ms(lambda: client.get(f"/dashboard?project={PID}"), args.repeats)
        index_ms, index_max = _median_ms(lambda: client.get("/dashboard"), args.repeats)
    rows = [("write_snapshot", build_ms, build_max, size), ("GET /dashboard?project=1", page_ms, page_max, len(page.get_data())),
            ("GET /dashboard (index)", index_ms, index_max, None)]
    result = {"annotations": args.annotations, "versions": args.versions, "repeats": args.repeats, "target_page_ms": TARGET_MS,
              "snapshot_bytes": size, "page_bytes": len(page.get_data()), "machine": platform.processor() or platform.machine(),
              "python": platform.python_version(),
              "timings": [{"what": w, "median_ms": round(m, 2), "max_ms": round(x, 2), "bytes": b} for w, m, x, b in rows],
              "page_within_target": page_ms < TARGET_MS}
    print(f"dashboard: {args.annotations} annotations, {args.versions} versions, median of {args.repeats} requests")
    print(f"{'what':<28}{'median ms':>10}{'max ms':>9}{'bytes':>9}")
    for w, m, x, b in rows:
        print(f"{w:<28}{m:>10.1f}{x:>9.1f}{b if b is not None else '':>9}")
    print(f"page under {TARGET_MS:.0f} ms: {'yes' if page_ms < TARGET_MS else 'NO'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
