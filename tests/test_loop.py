"""server.loop without Label Studio: pool agreement and the stopping criterion (the round itself: test_e2e_loop)."""
import pytest

from server.loop import pool_agreement, stopping_report


def test_stopping_criterion():
    a = [{"result": [{"from_name": "s", "value": {"choices": ["x"]}}]}, {"result": []}]
    b = [{"result": [{"from_name": "s", "value": {"choices": ["y"]}}]}, {"result": []}]
    assert pool_agreement(a, a) == 1.0 and pool_agreement(a, b) == 0.5 and pool_agreement([], b) is None
    rows = [{"status": "promoted", "primary": 0.70, "labeled_docs": 100, "started_at": 1, "pool_agreement": None},
            {"status": "rejected", "primary": 0.50, "labeled_docs": 150, "started_at": 2},
            {"status": "promoted", "primary": 0.701, "labeled_docs": 200, "started_at": 3, "pool_agreement": 0.99}]
    rep = stopping_report(rows)
    assert rep["stop"] and rep["metric_gain_per_100_labels"] == pytest.approx(0.001)
    rows[-1]["primary"] = 0.80
    assert not stopping_report(rows)["stop"]
    assert not stopping_report(rows[:1])["stop"]
