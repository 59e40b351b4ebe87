"""Curves into figures: labels to the 95% target, each repeat's spread (server/simulate/report.py)."""
import pytest

from server.simulate.report import labels_to_target, per_repeat_spread


def test_labels_to_target_interpolates():
    curve = [{"labels": 20, "mean": 0.5}, {"labels": 40, "mean": 0.7}, {"labels": 60, "mean": 0.9}]
    assert labels_to_target(curve, 0.8) == pytest.approx(50.0)
    assert labels_to_target(curve, 0.4) == 20.0
    assert labels_to_target(curve, 0.95) is None


def test_per_repeat_spread():
    assert per_repeat_spread([100.0, 140.0, 300.0]) == "140 (100-300) 3/3"
    # a repeat that never reached the target counts as infinitely many labels
    assert per_repeat_spread([100.0, None, 140.0]) == "140 (100-140) 2/3"
    assert per_repeat_spread([100.0, None, None]) == "- (100-100) 1/3"
    assert per_repeat_spread([None, None]) == "- 0/2"


def test_to_target_in_documents_tokens_and_seconds_with_ratios_to_random():
    from server.simulate.report import compare_strategies, strategy_result, summary_table

    def run(metrics, tokens, seconds):
        return {"points": [{"labels": 20 * (i + 1), "characters": 0, "tokens": t, "seconds": s, "metric": m}
                           for i, (m, t, s) in enumerate(zip(metrics, tokens, seconds))]}

    full = 1.0
    # the cheap strategy needs more documents but fewer seconds than random
    cheap = strategy_result("cost_aware", False, [run([0.5, 0.92, 0.99], [100, 200, 300], [50, 100, 150])], full)
    rand = strategy_result("random", False, [run([0.5, 0.96, 0.99], [400, 800, 1200], [200, 400, 600])], full)
    results = {"cost_aware": cheap, "random": rand}
    compare_strategies(results, ["cost_aware", "random"], False)
    assert set(cheap["to_target"]) == {"90", "95", "98"}
    t95 = cheap["to_target"]["95"]
    assert t95["labels"] == pytest.approx(20 + 20 * 3 / 7 + 20)  # between its 40- and 60-label points
    assert t95["seconds"] == pytest.approx(100 + 50 * 3 / 7)
    assert cheap["seconds_to_95_runs"] == [pytest.approx(t95["seconds"])]
    r = cheap["ratios"]["95"]
    assert r["labels"] > 1.0 > r["seconds"]
    assert r["seconds"] == pytest.approx(t95["seconds"] / rand["to_target"]["95"]["seconds"])
    assert cheap["ratios_same_training"] == cheap["ratios"] and rand["ratios"]["95"]["seconds"] == 1.0
    report = {"strategies": results, "full_data": {"labels": 100, "metric": full}, "metric": "entity_f1", "target_95": 0.95}
    table = summary_table(report)
    assert "seconds" in table and "sec/rnd" in table
    assert len(table.splitlines()) == 2 + len(results) + 2 + 3 * len(results)
