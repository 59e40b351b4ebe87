"""What a simulation's curves say: mean curves, labels to 95% of the full-data metric, ratios to random,
self-training's gain, and the plain-text summary table.

``labels_to_95``: the first labeled-document count at which the mean curve reaches 95% of the full-data
metric, linearly interpolated between the two curve points that straddle it (the first point when it is
already there); ``None`` when the curve never gets there. ``ratio_to_random`` divides a strategy's figure
by random's (plain random's; ``random+self_training``'s when only self-training variants ran; ``None`` when either
is ``None``). ``labels_to_95_runs`` holds each repeat's own crossing (same
rule on that repeat's curve), the spread behind the mean: with few repeats the mean curve's crossing can swing
by a hundred labels, most of all for random, whose curve flattens near the target.

``to_target`` gives the same crossing at 90, 95 and 98% of the full-data metric in three units: documents
(``labels``), tokens and modelled seconds (``ml_backend.cost``, gold entities), each read off the mean curve
against that unit's mean; ``ratios`` divides each by plain random's and ``ratios_same_training`` by the random variant
trained the same way (``random+self_training`` for a self-trained variant), so cost-aware selection is judged in
what labels cost, not only in how many there are.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

SELF_TRAINING_SUFFIX = "+self_training"
TARGETS = (0.90, 0.95, 0.98)  # shares of the full-data metric
UNITS = ("labels", "tokens", "seconds")  # documents, their tokens, their modelled annotation seconds


def labels_to_target(curve: list[dict], target: float, unit: str = "labels") -> float | None:
    """First ``unit`` (label count, tokens, seconds) whose mean reaches target, linearly interpolated between
    straddling points; ``None`` when the curve never reaches it or its points lack the unit."""
    prev = None
    for pt in curve:
        if unit not in pt:
            return None
        if pt["mean"] >= target:
            if prev is None or pt["mean"] == prev["mean"]:
                return float(pt[unit])
            frac = (target - prev["mean"]) / (pt["mean"] - prev["mean"])
            return float(prev[unit] + frac * (pt[unit] - prev[unit]))
        prev = pt
    return None


def _target_key(share: float) -> str:
    return f"{round(100 * share)}"


def strategy_result(strategy: str, self_training: bool, runs: list[dict], full: float) -> dict:
    """One strategy variant's mean curve and labels-to-95 over its repeats; adds each repeat's own crossing
    to its run record."""
    length = min(len(run["points"]) for run in runs)
    curve = []
    for i in range(length):
        vals = np.array([run["points"][i]["metric"] for run in runs])
        chars = np.mean([run["points"][i]["characters"] for run in runs])
        pt = {"labels": runs[0]["points"][i]["labels"], "mean": float(vals.mean()), "std": float(vals.std()),
              "characters": float(chars)}
        for unit in ("tokens", "seconds"):  # mean over repeats: each repeat labels other documents
            if all(unit in run["points"][i] for run in runs):
                pt[unit] = float(np.mean([run["points"][i][unit] for run in runs]))
        curve.append(pt)
    for run in runs:  # each repeat's own crossing: the spread behind the mean curve's
        own = [{**p, "mean": p["metric"]} for p in run["points"]]
        run["labels_to_95"] = labels_to_target(own, 0.95 * full)
        run["seconds_to_95"] = labels_to_target(own, 0.95 * full, "seconds")
        run["tokens_to_95"] = labels_to_target(own, 0.95 * full, "tokens")
    to_target = {_target_key(t): {u: labels_to_target(curve, t * full, u) for u in UNITS} for t in TARGETS}
    return {
        "strategy": strategy,
        "self_training": self_training,
        "curve": curve,
        "labels_to_95": labels_to_target(curve, 0.95 * full),
        "labels_to_95_runs": [run["labels_to_95"] for run in runs],
        "to_target": to_target,
        "tokens_to_95_runs": [run["tokens_to_95"] for run in runs],
        "seconds_to_95_runs": [run["seconds_to_95"] for run in runs],
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
        same = results.get("random" + (SELF_TRAINING_SUFFIX if res["self_training"] else "")) or baseline
        if "to_target" in res:
            res["ratios"] = _ratios(res["to_target"], baseline.get("to_target"))
            res["ratios_same_training"] = _ratios(res["to_target"], same.get("to_target"))
    if self_training:
        for name in strategies:
            if name not in results:  # self-training variants only: no plain curve to compare with
                continue
            plain, st = results[name]["curve"], results[name + SELF_TRAINING_SUFFIX]["curve"]
            results[name + SELF_TRAINING_SUFFIX]["gain_over_plain"] = [
                {"labels": a["labels"], "gain": b["mean"] - a["mean"]} for a, b in zip(plain, st)
            ]


def _ratios(mine: dict, base: dict | None) -> dict:
    """Each target's figure in each unit over the baseline's (``None`` where either never got there)."""
    out = {}
    for key, units in mine.items():
        b = (base or {}).get(key) or {}
        out[key] = {u: (v / b[u]) if (v is not None and b.get(u)) else None for u, v in units.items()}
    return out


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
    if any("to_target" in v for v in report["strategies"].values()):
        rows += ["", cost_table(report)]
    return "\n".join(rows)


def cost_table(report: dict) -> str:
    """Documents, tokens and modelled seconds to 90/95/98% of the full-data metric per strategy, each with its ratio
    to the random variant trained the same way ("-": never got there within the rounds)."""
    def fmt(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    rows = [f"{'strategy':<30} {'target':>6} {'documents':>9} {'tokens':>9} {'seconds':>9} "
            f"{'docs/rnd':>8} {'tok/rnd':>8} {'sec/rnd':>8}"]
    for k, v in report["strategies"].items():
        for key, units in (v.get("to_target") or {}).items():
            r = (v.get("ratios_same_training") or {}).get(key, {})
            rows.append(f"{k:<30} {key + '%':>6} {fmt(units['labels'], '.0f'):>9} {fmt(units['tokens'], '.0f'):>9} "
                        f"{fmt(units['seconds'], '.0f'):>9} {fmt(r.get('labels'), '.2f'):>8} "
                        f"{fmt(r.get('tokens'), '.2f'):>8} {fmt(r.get('seconds'), '.2f'):>8}")
    return "\n".join(rows)
