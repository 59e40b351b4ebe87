"""The README's CLI reference matches the real commands and options; errors are one line."""
import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from server.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
ROWS = re.findall(r"^\| `goldloop ([\w-]+)([^`]*)` \|", README, flags=re.M)


def test_readme_lists_every_command():
    assert {name for name, _ in ROWS} == set(main.commands)


@pytest.mark.parametrize("name, usage", ROWS)
def test_readme_options_exist(name, usage):
    help_text = CliRunner().invoke(main, [name, "--help"]).output
    for opt in re.findall(r"--[a-z0-9-]+", usage):
        assert opt in help_text, f"README documents {opt} for goldloop {name}, --help does not"


def test_unknown_project_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(main, ["versions", "nope", "--data-dir", str(tmp_path)], env={"LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_API_KEY": "x"})
    assert res.exit_code != 0
    lines = [ln for ln in res.output.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "Traceback" not in res.output


def test_simulate_missing_file_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(main, ["simulate", "--data", str(tmp_path / "none.jsonl"), "--schema", "x.xml", "--out", str(tmp_path / "o.json")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_simulate_with_an_unusable_labeling_config_is_a_one_line_error_naming_the_file(tmp_path):
    data = Path(__file__).parent / "data" / "simulate"
    schema = tmp_path / "bad.xml"  # value="text" instead of "$text": the backend's SchemaError reaches the command
    schema.write_text((data / "tweets.xml").read_text().replace('value="$text"', 'value="text"'))
    assert schema.read_text() != (data / "tweets.xml").read_text()
    res = CliRunner().invoke(main, ["simulate", "--data", str(data / "tweets_300.jsonl"), "--schema", str(schema),
                                    "--out", str(tmp_path / "o.json"), "--query-model", "tfidf_lr"])
    lines = [ln for ln in res.output.strip().splitlines() if ln]
    assert res.exit_code == 1 and len(lines) == 1 and "Traceback" not in res.output, res.output
    assert lines[0].startswith(f"Error: schema {schema}: ") and "$field" in lines[0]
    assert not (tmp_path / "o.json").exists()


def test_a_backend_error_raised_inside_a_command_is_one_line():
    """Any model-core error (ml_backend.errors) that reaches a command becomes one line, whatever raised it."""
    from ml_backend.errors import TextError
    from server.cli import _Group

    @click.group(cls=_Group)
    @click.pass_context
    def group(ctx):
        ctx.ensure_object(dict)

    @group.command()
    def boom():
        raise TextError("task 7 has no text")

    res = CliRunner().invoke(group, ["boom"])
    assert res.exit_code == 1 and res.output.strip() == "Error: TextError: task 7 has no text", res.output


def test_simulate_bad_self_training_threshold_is_a_usage_error(tmp_path):
    data = Path(__file__).parent / "data" / "simulate"
    res = CliRunner().invoke(main, ["simulate", "--data", str(data / "tweets_300.jsonl"), "--schema", str(data / "tweets.xml"),
                                    "--out", str(tmp_path / "o.json"), "--self-training", "--self-training-threshold", "1.5"])
    assert res.exit_code == 2 and "--self-training-threshold" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o.json").exists()


def test_train_with_a_mention_swap_outside_zero_to_one_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(main, ["train", "medical_records", "--data-dir", str(tmp_path), "--mention-swap", "1.5"])
    assert res.exit_code == 2 and "--mention-swap" in res.output and "Traceback" not in res.output


def test_simulate_prints_the_summary_table(tmp_path):
    data = Path(__file__).parent / "data" / "simulate"
    out = tmp_path / "o.json"
    res = CliRunner().invoke(main, ["simulate", "--data", str(data / "tweets_300.jsonl"), "--schema", str(data / "tweets.xml"),
                                    "--out", str(out), "--strategy", "margin", "--strategy", "random", "--rounds", "2",
                                    "--repeats", "2", "--query-model", "tfidf_lr"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()  # the progress bar goes to stderr
    assert lines[0].split()[:2] == ["strategy", "labels_to_95"]
    rows = {ln.split()[0]: ln for ln in lines[1:3]}
    assert set(rows) == {"margin", "random"}
    report = json.loads(out.read_text())
    for name, row in rows.items():
        assert row.rstrip().endswith(f"{report['strategies'][name]['curve'][-1]['mean']:.3f}")
        assert "/2" in row  # repeats reached out of 2
    assert lines[-1] == f"wrote {out}"
