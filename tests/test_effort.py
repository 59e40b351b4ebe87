"""Annotator effort (server/effort.py) and the control group (ml_backend/control_group.py)."""
from __future__ import annotations

import pytest

from ml_backend import create_app
from ml_backend.control_group import DEFAULT_SHARE, check_share, in_control_group
from ml_backend.schema import parse_label_config
from server import effort, store

CONFIG = """<View><Text name="text" value="$text"/>
<Labels name="entities" toName="text"><Label value="Disease"/><Label value="Drug"/></Labels>
<Choices name="urgency" toName="text"><Choice value="urgent"/><Choice value="routine"/></Choices></View>"""
SPEC = parse_label_config(CONFIG)


def span(s, e, label, frm="entities"):
    return {"from_name": frm, "to_name": "text", "type": "labels", "value": {"start": s, "end": e, "labels": [label]}}


def choice(*labels):
    return {"from_name": "urgency", "to_name": "text", "type": "choices", "value": {"choices": list(labels)}}


def test_edits_count_added_deleted_relabelled_rebounded_spans_and_changed_choices():
    shown = [span(0, 5, "Disease"), span(10, 15, "Drug"), span(20, 30, "Disease"), span(40, 45, "Drug"), choice("routine")]
    submitted = [span(0, 5, "Disease"),  # kept
                 span(10, 15, "Disease"),  # re-labelled
                 span(20, 26, "Disease"),  # re-bounded
                 span(50, 55, "Drug"),  # added (40-45 deleted)
                 choice("urgent")]  # one choice off, one on
    e = effort.result_edits(SPEC, shown, submitted)
    assert (e["add"], e["delete"], e["relabel"], e["rebound"], e["choices"], e["edits"]) == (1, 1, 1, 1, 2, 6)
    assert effort.result_edits(SPEC, shown, shown)["edits"] == 0
    assert effort.result_edits(SPEC, None, submitted)["edits"] == 5  # an empty task: every span and choice is typed


def test_lead_times_are_capped_and_missing_ones_stay_missing():
    assert effort.capped_seconds(12.5) == 12.5
    assert effort.capped_seconds(36_000) == effort.LEAD_TIME_CAP_S
    for bad in (None, -1, float("nan"), "12", True):
        assert effort.capped_seconds(bad) is None


def task(tid, annotations, predictions=()):
    return {"id": tid, "data": {"text": "x" * 60}, "annotations": list(annotations), "predictions": list(predictions)}


def test_rows_read_lead_time_the_prediction_shown_updates_skips_and_several_annotators():
    pred = {"id": 70, "model_version": "v1", "score": 0.42, "result": [span(0, 5, "Disease"), choice("routine")]}
    tasks = [
        task(1, [{"id": 11, "lead_time": 31.0, "parent_prediction": 70, "completed_by": 1, "result": [span(0, 5, "Disease"), choice("routine")]},
                 {"id": 12, "lead_time": 5000.0, "parent_prediction": 70, "completed_by": 2, "result": [choice("urgent")]}], [pred]),
        task(3, [{"id": 13, "lead_time": 8.0, "was_cancelled": True, "completed_by": 1, "result": []}]),
        task(4, [{"id": 14, "lead_time": 44.0, "completed_by": 1, "result": [span(0, 5, "Drug")]}]),
    ]
    rows = {r["annotation_id"]: r for r in effort.annotation_rows(9, tasks, SPEC)}
    assert rows[11]["seconds"] == 31.0 and rows[11]["edits"] == 0 and rows[11]["model_version"] == "v1"
    assert rows[11]["prediction_score"] == 0.42 and rows[11]["suggested"] and rows[11]["annotator"] == 1
    assert rows[12]["seconds"] == effort.LEAD_TIME_CAP_S and rows[12]["capped"] and rows[12]["edits"] == 3  # span deleted, 2 choices
    assert rows[13]["skipped"] and rows[13]["edits"] == 0 and rows[13]["seconds"] == 8.0
    assert not rows[14]["suggested"] and rows[14]["model_version"] is None and rows[14]["add"] == 1


def test_the_store_keeps_one_row_per_annotation_and_an_update_replaces_it(tmp_path):
    db = store.open_db(tmp_path / "store.db")
    t = task(1, [{"id": 11, "lead_time": 31.0, "completed_by": 1, "result": [span(0, 5, "Drug")]}])
    store.record_effort(db, effort.annotation_rows(9, [t], SPEC))
    t["annotations"][0].update(lead_time=40.0, result=[span(0, 5, "Drug"), span(10, 15, "Disease")])
    store.record_effort(db, effort.annotation_rows(9, [t], SPEC))
    rows = store.list_effort(db, 9)
    assert len(rows) == 1 and rows[0]["seconds"] == 40.0 and rows[0]["add"] == 2 and rows[0]["suggested"] is False


def test_the_summary_measures_time_saved_against_the_control_group():
    def row(i, secs, suggested, control):
        return {"annotation_id": i, "seconds": secs, "suggested": suggested, "control": control, "skipped": False,
                "edits": 1, "model_version": "v1" if suggested else None}

    rows = [row(i, 60.0 + i % 5, False, True) for i in range(20)] + [row(100 + i, 30.0 + i % 7, True, False) for i in range(80)]
    s = effort.summary(rows)
    saved = s["seconds_saved_per_doc"]
    assert saved["control_n"] == 20 and saved["suggested_n"] == 80
    assert saved["ci"][0] < saved["mean"] < saved["ci"][1] and 25 < saved["mean"] < 35
    assert s["by_version"]["v1"]["annotations"] == 80
    assert effort.summary(rows[20:])["seconds_saved_per_doc"] is None  # no control group yet: nothing claimed


def test_the_control_group_is_stable_and_holds_its_share_within_one_point():
    ids = range(1, 2001)
    chosen = [i for i in ids if in_control_group(i, DEFAULT_SHARE)]
    assert abs(len(chosen) / 2000 - DEFAULT_SHARE) <= 0.01
    assert chosen == [i for i in ids if in_control_group(i, DEFAULT_SHARE)]
    assert not any(in_control_group(i, 0) for i in ids) and not in_control_group("7", 0.5) and not in_control_group(None, 0.5)
    with pytest.raises(ValueError, match="between 0 and 0.5"):
        check_share("0.9")
    with pytest.raises(ValueError, match="GOLDLOOP_CONTROL_SHARE"):
        check_share("lots", "GOLDLOOP_CONTROL_SHARE")


def test_predict_serves_control_tasks_empty_with_their_score(settings):
    from server.config import Settings

    assert Settings.from_env({}).control_share == DEFAULT_SHARE  # what every command gets
    assert Settings.from_env({"GOLDLOOP_CONTROL_SHARE": "0"}).control_share == 0
    client = create_app(settings.backend_settings().with_overrides(control_share=0.3)).test_client()
    config = """<View><Text name="text" value="$text"/><Labels name="l" toName="text"><Label value="Date"/></Labels></View>"""
    tasks = [{"id": i, "data": {"text": "Seen on 2024-03-05 and again on 2024-04-01."}} for i in range(1, 41)]
    results = client.post("/predict", json={"project": 5, "label_config": config, "tasks": tasks}).get_json()["results"]
    for t, r in zip(tasks, results):
        assert (r["result"] == []) == in_control_group(t["id"], 0.3), t["id"]
        assert r["score"] > 0 and r["model_version"]
    assert 5 <= sum(in_control_group(t["id"], 0.3) for t in tasks) <= 20


def test_cost_aware_rounds_fit_the_projects_own_seconds_once_there_are_enough(tmp_path):
    """The round's cost model for cost_aware (server.loop.project_cost_model): the prior until 30 timed annotations,
    then a fit on the project's own seconds, read from the store's effort rows and this round's task texts."""
    from types import SimpleNamespace

    from ml_backend.cost import PRIOR
    from server.loop import project_cost_model
    from server.project import ProjectContext

    db = store.open_db(tmp_path / "store.db")
    ctx = ProjectContext(None, db, None, SimpleNamespace(id=9), SPEC, None)
    words = "word " * 60
    done = [{"id": i, "data": {"text": words[: 5 * (5 + i)]}} for i in range(1, 41)]  # 5 to 44 words
    tasks = [task(i, [{"id": 100 + i, "lead_time": 10.0 + 2.0 * (5 + i), "completed_by": 1, "result": []}]) for i in range(1, 41)]
    store.record_effort(db, effort.annotation_rows(9, tasks[:20], SPEC))
    assert project_cost_model(ctx, done) == PRIOR  # 20 timed annotations: not enough to trust a fit
    store.record_effort(db, effort.annotation_rows(9, tasks, SPEC))
    fitted = project_cost_model(ctx, done)
    assert fitted.source != PRIOR.source and fitted.n_rows == 40
    assert fitted.per_token == pytest.approx(2.0, abs=0.05) and fitted.intercept == pytest.approx(10.0, abs=1.0)
