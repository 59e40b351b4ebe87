"""`goldloop report`: a Markdown report of a project's model versions with PNG plots, and the dashboard snapshot of the same."""
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


def effort_lines(effort: dict, out_dir: Path) -> list[str]:
    """The report's "Annotator time" section: seconds and edits per document with and without suggestions, per model
    version, the time saved against the control group, and a plot of seconds per document."""
    fmt = lambda x, d=1: "" if x is None else f"{x:.{d}f}"  # noqa: E731
    groups = [("with suggestions", effort["with_suggestions"]), ("control group (served empty)", effort["control"]),
              ("no suggestion shown", effort["without_suggestions"])]
    groups += [(f"version {v}", g) for v, g in effort["by_version"].items()]
    lines = ["", "## Annotator time", "", f"{effort['annotations']} annotations ({effort['skipped']} skipped); seconds are Label Studio's "
             "lead time, capped at 600 s a document.", "",
             "| annotations of | n | seconds / doc (95% CI) | median s | edits / doc |", "|---|---:|---:|---:|---:|"]
    for name, g in groups:
        lo, hi = g["seconds_ci"]
        ci = f" ({fmt(lo)}-{fmt(hi)})" if lo is not None else ""
        lines.append(f"| {name} | {g['annotations']} | {fmt(g['seconds_mean'])}{ci} | {fmt(g['seconds_median'])} | {fmt(g['edits_mean'], 2)} |")
    saved = effort.get("seconds_saved_per_doc")
    lines += ["", f"Time saved by suggestions: **{saved['mean']:.1f} s a document** (95% CI {saved['ci'][0]:.1f} to {saved['ci'][1]:.1f}; "
                  f"{saved['control_n']} control and {saved['suggested_n']} suggested annotations)." if saved else
              "Time saved by suggestions: not measured yet (it needs two or more annotations of control-group tasks and of suggested ones)."]
    plotted = [(name, g) for name, g in groups if g["seconds_mean"] is not None]
    if plotted:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(plotted)))
        means = [g["seconds_mean"] for _, g in plotted]
        errs = [[m - (g["seconds_ci"][0] if g["seconds_ci"][0] is not None else m) for m, (_, g) in zip(means, plotted)],
                [(g["seconds_ci"][1] if g["seconds_ci"][1] is not None else m) - m for m, (_, g) in zip(means, plotted)]]
        ax.barh([n for n, _ in plotted], means, xerr=errs, color="#4c78a8", capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel("seconds per document (mean, 95% CI)")
        fig.tight_layout()
        fig.savefig(out_dir / "annotator_time.png", dpi=110)
        plt.close(fig)
        lines += ["", "![annotator time](annotator_time.png)"]
    return lines


def write_report(versions: list[dict], out_dir: Path, title: str, stopping: dict | None = None, effort: dict | None = None, *,
                 ctx=None) -> Path:
    """Write report.md + PNGs (metric vs labeled documents, confusion matrices of the serving version, annotator time).

    ctx: the project's ``server.project.ProjectContext``; given, the same numbers also go to the backend's dashboard
    snapshot (``server.dashboard_data``), with the queue read from Label Studio and the starter's record."""
    if ctx is not None:
        from . import starters
        from .dashboard_data import write_snapshot_quietly

        write_snapshot_quietly(ctx, stopping, starter=starters.state(ctx.db, ctx.pid))
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
    if effort and effort.get("annotations"):
        lines += effort_lines(effort, out_dir)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
