"""What a simulation's curves say: mean curves, labels to 95% of the full-data metric, ratios to random,
self-training's gain, and the plain-text summary table.

``labels_to_95``: the first labeled-document count at which the mean curve reaches 95% of the full-data
metric, linearly interpolated between the two curve points that straddle it (the first point when it is
already there); ``None`` when the curve never gets there. ``ratio_to_random`` divides a strategy's figure
by random's (plain random's; ``random+self_training``'s when only self-training variants ran; ``None`` when either
is ``None``). ``labels_to_95_runs`` holds each repeat's own crossing (same
rule on that repeat's curve), the spread behind the mean: with few repeats the mean curve's crossing can swing
by a hundred labels, most of all for random, whose curve flattens near the target.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

SELF_TRAINING_SUFFIX = "+self_training"


def labels_to_target(curve: list[dict], target: float) -> float | None:
    """First label count whose mean reaches target, linearly interpolated between straddling points."""
    prev = None
    for pt in curve:
        if pt["mean"] >= target:
            if prev is None or pt["mean"] == prev["mean"]:
                return float(pt["labels"])
            frac = (target - prev["mean"]) / (pt["mean"] - prev["mean"])
            return float(prev["labels"] + frac * (pt["labels"] - prev["labels"]))
        prev = pt
    return None


def strategy_result(strategy: str, self_training: bool, runs: list[dict], full: float) -> dict:
    """One strategy variant's mean curve and labels-to-95 over its repeats; adds each repeat's own crossing
    to its run record."""
    length = min(len(run["points"]) for run in runs)
    curve = []
    for i in range(length):
        vals = np.array([run["points"][i]["metric"] for run in runs])
        chars = np.mean([run["points"][i]["characters"] for run in runs])
        curve.append({"labels": runs[0]["points"][i]["labels"], "mean": float(vals.mean()), "std": float(vals.std()),
                      "characters": float(chars)})
    for run in runs:  # each repeat's own crossing: the spread behind the mean curve's
        own = [{"labels": p["labels"], "mean": p["metric"]} for p in run["points"]]
        run["labels_to_95"] = labels_to_target(own, 0.95 * full)
    return {
        "strategy": strategy,
        "self_training": self_training,
        "curve": curve,
        "labels_to_95": labels_to_target(curve, 0.95 * full),
        "labels_to_95_runs": [run["labels_to_95"] for run in runs],
        "aulc": float(np.mean([p["mean"] for p in curve])) if curve else None,
        "runs": runs,
    }


def compare_strategies(results: dict[str, dict], strategies: list[str], self_training: bool) -> None:
    """Add every variant's ratio to random and, with self-training, its gain over the plain curve per point."""
    baseline = results.get("random") or results.get("random" + SELF_TRAINING_SUFFIX) or {}
    base = baseline.get("labels_to_95")
    for res in results.values():
        l95 = res["labels_to_95"]
        res["ratio_to_random"] = (l95 / base) if (l95 is not None and base) else None
    if self_training:
        for name in strategies:
            if name not in results:  # self-training variants only: no plain curve to compare with
                continue
            plain, st = results[name]["curve"], results[name + SELF_TRAINING_SUFFIX]["curve"]
            results[name + SELF_TRAINING_SUFFIX]["gain_over_plain"] = [
                {"labels": a["labels"], "gain": b["mean"] - a["mean"]} for a, b in zip(plain, st)
            ]


def per_repeat_spread(values: Sequence[float | None]) -> str:
    """Repeats' own labels-to-95 as 'median (min-max) reached/n'; a repeat that never reached it counts as
    infinitely many labels, so the median is '-' when half of them or more never did."""
    n = len(values)
    reached = sorted(float(v) for v in values if v is not None)
    if not reached:
        return f"- 0/{n}"
    med = float(np.median([float("inf") if v is None else float(v) for v in values]))
    med_s = "-" if med == float("inf") else f"{med:.0f}"
    return f"{med_s} ({reached[0]:.0f}-{reached[-1]:.0f}) {len(reached)}/{n}"


def summary_table(report: dict) -> str:
    """A plain-text table: strategy, labels to 95% (mean curve, and each repeat's), ratio to random, AULC,
    final mean."""
    rows = [f"{'strategy':<30} {'labels_to_95':>12} {'per repeat: median (range) reached':>34} {'ratio':>7} "
            f"{'aulc':>7} {'final':>7}"]
    for k, v in report["strategies"].items():
        l95 = "-" if v["labels_to_95"] is None else f"{v['labels_to_95']:.0f}"
        runs = per_repeat_spread(v["labels_to_95_runs"]) if "labels_to_95_runs" in v else "n/a"
        ratio = "-" if v["ratio_to_random"] is None else f"{v['ratio_to_random']:.2f}"
        final = v["curve"][-1]["mean"] if v["curve"] else float("nan")
        rows.append(f"{k:<30} {l95:>12} {runs:>34} {ratio:>7} {v['aulc']:>7.3f} {final:>7.3f}")
    rows.append(f"full data ({report['full_data']['labels']} labels): {report['metric']} = "
                f"{report['full_data']['metric']:.3f}; 95% target = {report['target_95']:.3f}")
    return "\n".join(rows)
