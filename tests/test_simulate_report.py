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
