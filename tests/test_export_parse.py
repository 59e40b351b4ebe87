"""Task parsing: offsets checked and relocated, unknown labels, bad tasks, resolution policies, reviews."""
from __future__ import annotations

import json

import pytest

from ml_backend.schema import parse_label_config
from server.errors import ExportError
from server.export import ExportOptions, ProjectInfo, export_dataset, read_jsonl
from tests.plugins.export import ann, latest_annotation, simple_export, span


def test_offset_mismatch_relocated_or_dropped(tmp_path):
    text = "Asthma. Later, asthma and gout."
    task = {"id": 1, "data": {"text": text}, "annotations": [ann(1, [
        span(16, 22, "asthma"),            # off by one: relocated to the nearest 'asthma' (15)
        span(0, 5, "diabetes"),            # text not in the document: dropped
        span(26, 80, "gout."),             # end outside the text: relocated to 26..31
        span(40, 50, "x"),                 # outside, text absent: dropped
    ])]}
    r = simple_export(tmp_path, [task])
    (rec,) = read_jsonl(r.version_dir / "data.jsonl")
    assert [(s["start"], s["end"], s["text"]) for s in rec["spans"]] == [(15, 21, "asthma"), (26, 31, "gout.")]
    counts = r.manifest["problem_counts"]
    assert counts == {"offset_relocated": 2, "offset_mismatch": 1, "offset_out_of_range": 1}
    problems = list(read_jsonl(r.version_dir / "problems.jsonl"))
    assert len(problems) == 4 and all(p["task_id"] == 1 and p["annotation_id"] == 1 for p in problems)


def test_unknown_labels_and_controls_dropped(tmp_path):
    task = {"id": 1, "data": {"text": "Gout and asthma."}, "annotations": [ann(1, [
        span(0, 4, "Gout", label="Gene"),
        span(9, 15, "asthma"),
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["angry"]}},
        {"from_name": "mood", "to_name": "text", "type": "choices", "value": {"choices": ["x"]}},
    ])]}
    r = simple_export(tmp_path, [task])
    (rec,) = read_jsonl(r.version_dir / "data.jsonl")
    assert [s["label"] for s in rec["spans"]] == ["Disease"]
    assert rec["choices"] == {"sentiment": []}
    assert r.manifest["problem_counts"] == {"unknown_control": 1, "unknown_label": 2}


def test_whitespace_in_spans_is_trimmed(tmp_path):
    text = "Patient has gout today."
    task = {"id": 1, "data": {"text": text}, "annotations": [ann(1, [span(11, 17, " gout ")])]}
    r = simple_export(tmp_path, [task])
    (rec,) = read_jsonl(r.version_dir / "data.jsonl")
    assert (rec["spans"][0]["start"], rec["spans"][0]["end"]) == (12, 16)
    assert r.manifest["counts"]["spans_whitespace_trimmed"] == 1


def test_unpaired_surrogates_skip_the_task_or_stay_escaped(tmp_path):
    # a JSON "\ud800" escape decodes to a str that no UTF-8 file can hold
    lone = json.loads('"\\ud800"')
    bad_text = {"id": 1, "data": {"text": f"Gout {lone}."}, "annotations": [ann(1, [span(0, 4, "Gout")])]}
    bad_meta = {"id": 2, "data": {"text": "Gout.", "note": f"x{lone}"}, "annotations": [ann(2, [span(0, 4, "Gout")])]}
    r = simple_export(tmp_path, [bad_text, bad_meta])
    assert r.manifest["counts"]["skipped_tasks"] == {"invalid_text": 1}
    assert [(p["task_id"], p["kind"]) for p in r.manifest["problems"]] == [(1, "invalid_text")]
    (rec,) = read_jsonl(r.version_dir / "data.jsonl")
    assert rec["id"] == 2 and rec["data"]["note"] == f"x{lone}"  # written as a \u escape, read back the same


def test_bad_arguments_and_bad_tasks(tmp_path):
    task = {"id": 1, "data": {"text": "Gout."}, "annotations": [ann(1, [span(0, 4, "Gout")])]}
    with pytest.raises(ExportError, match="formats"):
        simple_export(tmp_path, [task], formats=("xlsx",))
    with pytest.raises(ExportError, match="resolve"):
        simple_export(tmp_path, [task], resolve="vote")
    bad = ["not a task", {"id": "x", "data": {"text": "a"}}, {"id": 2, "data": {}, "annotations": [ann(2, [])]},
           {"id": 3, "data": {"text": "a"}, "annotations": [ann(3, "oops")]}]
    r = simple_export(tmp_path, [*bad, task])
    assert r.manifest["counts"]["documents"] == 1
    assert r.manifest["counts"]["skipped_tasks"] == {"bad_task": 2, "missing_text": 1, "no_usable_annotations": 1}


def test_resolution_policies(tmp_path, fixture_xml, fixture_tasks):
    spec = parse_label_config(fixture_xml)
    project = ProjectInfo(7, "fx", "Fixture", fixture_xml)
    gt = export_dataset(fixture_tasks, spec, project, ExportOptions(tmp_path, formats=("jsonl",), resolve="ground-truth"))
    assert gt.manifest["resolution"]["ground_truth_fallbacks"] == 14
    assert gt.manifest["problem_counts"] == {"no_ground_truth": 14}
    gt_task = next(t for t in fixture_tasks if any(a["ground_truth"] for a in t["annotations"]))
    rec = next(r for r in read_jsonl(gt.version_dir / "data.jsonl") if r["id"] == gt_task["id"])
    marked = next(a for a in gt_task["annotations"] if a["ground_truth"])
    topic = next(r["value"]["choices"] for r in marked["result"] if r["from_name"] == "topic")
    assert rec["choices"]["topic"] == topic
    latest = export_dataset(fixture_tasks, spec, project, ExportOptions(tmp_path, formats=("jsonl",), resolve="latest"))
    for rec in read_jsonl(latest.version_dir / "data.jsonl"):
        task = next(t for t in fixture_tasks if t["id"] == rec["id"])
        want = next(r["value"]["choices"] for r in latest_annotation(task)["result"] if r["from_name"] == "topic")
        assert rec["choices"]["topic"] == want


def test_only_reviewed(tmp_path):
    def task(i, **kw):
        return {"id": i, "data": {"text": "Gout."}, "annotations": [ann(i, [span(0, 4, "Gout")], **kw)]}

    tasks = [task(1, reviews=[{"accepted": True}]), task(2, reviews=[{"accepted": False}]),
             task(3, ground_truth=True), task(4)]
    r = simple_export(tmp_path, tasks, only_reviewed=True, formats=("jsonl",))
    assert [rec["id"] for rec in read_jsonl(r.version_dir / "data.jsonl")] == [1, 3]
    assert r.manifest["counts"]["skipped_tasks"] == {"not_reviewed": 2}
    with pytest.raises(ExportError, match="no reviewed annotations"):
        simple_export(tmp_path / "other", [task(2), task(4)], only_reviewed=True)
