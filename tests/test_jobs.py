"""server/jobs.py: the auto-distill rule (the one place it is written) and the webhook child's entry point; the CLI's
help grouped by area. The distillation itself runs end to end in tests/test_e2e_distill.py."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from server import distill, jobs
from server.cli import SECTIONS, main
from server.config import Settings


class _Ctx:
    pid = 7


@pytest.fixture
def distilled(monkeypatch):
    calls = []
    monkeypatch.setattr(distill, "run_distill", lambda settings, pid, **kw: calls.append((pid, kw)) or {"version": "s", "status": "promoted"})
    return calls


@pytest.mark.parametrize("rec, layers", [
    ({"status": "rejected", "trigger": "cli"}, 3),
    ({"status": "failed", "trigger": "webhook"}, 3),
    ({"status": "promoted", "trigger": "cli"}, 0),
    ({"status": "promoted", "trigger": jobs.AUTO_DISTILL}, 3),  # never a student of a student
])
def test_no_student_unless_a_promotion_with_distill_layers(distilled, rec, layers, tmp_path):
    assert jobs.after_promotion(Settings(home=tmp_path, distill_layers=layers), _Ctx(), rec) == []
    assert distilled == []


@pytest.mark.parametrize("trigger", ["cli", "START_TRAINING", "pretrain", "starter"])
def test_every_promotion_is_followed_by_its_student(distilled, trigger, tmp_path):
    out = jobs.after_promotion(Settings(home=tmp_path, distill_layers=3), _Ctx(), {"status": "promoted", "trigger": trigger}, "margin")
    assert out == [{"version": "s", "status": "promoted"}]
    (pid, kw), = distilled
    assert pid == 7 and kw["layers"] == 3 and kw["trigger"] == jobs.AUTO_DISTILL and kw["strategy"] == "margin"


def test_round_child_needs_a_project_and_a_data_dir(capsys):
    with pytest.raises(SystemExit) as exc:
        jobs.main(["round"])
    assert exc.value.code == 2 and "--data-dir" in capsys.readouterr().err


def test_help_lists_every_command_once_under_its_area():
    out = CliRunner().invoke(main, ["--help"]).output
    for title, commands in SECTIONS:
        assert f"{title}:" in out
    listed = [c.name for _, commands in SECTIONS for c in commands]
    assert sorted(listed) == sorted(main.commands) and len(set(listed)) == len(listed)
    assert out.index("Stack:") < out.index("up ") < out.index("Active learning:") < out.index("train ")
