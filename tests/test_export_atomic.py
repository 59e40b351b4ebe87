"""Atomic, verifiable export files: JSON Lines encoding, no-change detection, killed and unwritable exports."""
from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from server.errors import ExportError
from server.export import ExportOptions, export_dataset, list_versions
from server.export.atomic import json_line
from tests.plugins.export import ROOT, SIMPLE_XML, ann, simple_export, span


def test_jsonl_values_equal_the_standard_library():
    values = [{"text": "Ünïcode 中文 \u2028 \"q\" \\ \n\t", "n": [0, -1, 2**63 - 1], "f": [0.1, 1e-05, 1e16, -0.0]},
              {"big": 2**70}, {1: "int key"}, [None, True, False, {}, []]]
    for v in values:
        line = json_line(v)
        assert line.endswith(b"\n") and line.count(b"\n") == 1  # one record per line, whatever the text holds
        assert json.loads(line) == json.loads(json.dumps(v))


def test_second_export_is_no_change(exported, fixture_tasks):
    result, out, spec, project = exported
    again = export_dataset(fixture_tasks, spec, project, ExportOptions(out, check_labels=True))
    assert not again.changed
    assert again.message == f"no change since {result.version}"
    assert again.version == result.version
    assert list_versions(out / project.slug) == [result.version]
    assert not [p for p in (out / project.slug).iterdir() if p.name.startswith(".tmp-")]


def test_changed_content_makes_new_version(tmp_path):
    task = {"id": 1, "data": {"text": "Gout and asthma."}, "annotations": [ann(1, [span(0, 4, "Gout")])]}
    first = simple_export(tmp_path, [task])
    task2 = copy.deepcopy(task)
    task2["annotations"][0]["result"].append(span(9, 15, "asthma"))
    second = simple_export(tmp_path, [task2])
    assert second.changed and second.version != first.version
    assert list_versions(tmp_path / "simple") == sorted([first.version, second.version])


def test_killed_export_leaves_no_version(tmp_path):
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from ml_backend.schema import parse_label_config
        from server.export import ExportOptions, ProjectInfo, export_dataset
        xml = {SIMPLE_XML!r}
        def slow():
            for i in range(1, 10_000):
                time.sleep(0.01)
                yield {{"id": i, "data": {{"text": "Gout again."}},
                       "annotations": [{{"id": i, "completed_by": 1, "result": []}}]}}
        export_dataset(slow(), parse_label_config(xml), ProjectInfo(3, "simple", "Simple", xml),
                       ExportOptions(Path({str(out)!r}), formats=("jsonl", "conll", "csv")))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not list((out / "simple").glob(".tmp-*")):
            time.sleep(0.05)
        assert list((out / "simple").glob(".tmp-*")), "the export never started"
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list_versions(out / "simple") == []
    assert list((out / "simple").glob(".tmp-*"))  # the partial temp dir is ignored ...
    task = {"id": 1, "data": {"text": "Gout again."}, "annotations": [ann(1, [span(0, 4, "Gout")])]}
    r = simple_export(out, [task], formats=("jsonl",))
    assert r.changed and list_versions(out / "simple") == [r.version]
    assert not list((out / "simple").glob(".tmp-*"))  # ... and cleaned by the next export


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    task = {"id": 1, "data": {"text": "Gout."}, "annotations": [ann(1, [])]}
    with pytest.raises(ExportError, match="cannot write exports"):
        simple_export(blocker / "exports", [task])
