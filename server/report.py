"""`goldloop report`: a Markdown report of a project's model versions with PNG plots."""
from __future__ import annotations

import json
from pathlib import Path

from ml_backend.evaluation import plot_confusion, plot_learning_curves


def _metrics(v: dict) -> dict:
    raw = v.get("metrics")
    if isinstance(raw, str):
        try:
            return json.loads(raw) or {}
        except json.JSONDecodeError:
            return {}
    return raw or {}


def write_report(versions: list[dict], out_dir: Path, title: str, stopping: dict | None = None) -> Path:
    """Write report.md + PNGs (metric vs labeled documents, confusion matrices of the serving version)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = sorted(versions, key=lambda v: v.get("started_at") or 0)
    lines = [f"# {title}: model versions", "", "| version | trigger | status | labeled docs | primary metric | serving before | decision | seconds |",
             "|---|---|---|---:|---:|---:|---|---:|"]
    for v in versions:
        fmt = lambda x: "" if x is None else f"{x:.4f}"  # noqa: E731
        lines.append(f"| {v['version']} | {v.get('trigger', '')} | {v.get('status', '')} | {v.get('labeled_docs') or ''} | {fmt(v.get('primary'))} | "
                     f"{fmt(v.get('serving_primary'))} | {(v.get('decision') or '').replace('|', '/')} | {v.get('duration_s') or ''} |")
    evaluated = [v for v in versions if v.get("primary") is not None and v.get("labeled_docs")]
    if evaluated:
        curve = {"all versions": [{"labels": v["labeled_docs"], "mean": v["primary"], "std": 0.0} for v in evaluated],
                 "promoted": [{"labels": v["labeled_docs"], "mean": v["primary"], "std": 0.0} for v in evaluated if v.get("status") == "promoted"]}
        plot_learning_curves(curve, out_dir / "learning_curve.png", "primary metric (test split)", title=title)
        lines += ["", "## Learning curve", "", "![learning curve](learning_curve.png)"]
    promoted = [v for v in versions if v.get("status") == "promoted"]
    if promoted:
        latest = promoted[-1]
        lines += ["", f"## Serving version {latest['version']}", ""]
        for control, m in (_metrics(latest).get("controls") or {}).items():
            if "confusion" in m and m.get("labels"):
                png = plot_confusion(m["confusion"], m["labels"], out_dir / f"confusion_{control}.png")
                lines += [f"### {control}: accuracy {m.get('accuracy', 0):.3f}, macro F1 {m.get('macro_f1', 0):.3f}", "", f"![confusion {control}]({png.name})", ""]
            per = m.get("per_label") or {}
            if per:
                lines += [f"| {control} label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
                lines += [f"| {lbl} | {x['precision']:.3f} | {x['recall']:.3f} | {x['f1']:.3f} | {x['support']} |" for lbl, x in per.items()]
                lines.append("")
    if stopping:
        lines += ["", "## Stopping criterion", "", f"- stop labeling: **{'yes' if stopping.get('stop') else 'no'}** — {stopping.get('reason')}",
                  f"- prediction agreement of the last two versions on the pool: {stopping.get('pool_agreement')}",
                  f"- test-metric gain per 100 labels: {stopping.get('metric_gain_per_100_labels')}"]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
