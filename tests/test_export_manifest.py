"""The manifest's counts and provenance, the datasheet, agreement figures."""
from __future__ import annotations

import pytest

from server.export import read_jsonl
from tests.plugins.export import latest_annotation


def test_manifest_counts_and_provenance(exported, fixture_tasks):
    result, _, spec, project = exported
    m = result.manifest
    assert m["project"]["id"] == project.id and m["label_config_hash"] == spec.config_hash
    assert m["counts"]["documents"] == 15
    assert sum(m["counts"]["per_split"].values()) == 15
    assert all(m["counts"]["per_split"][s] >= 3 for s in ("train", "dev", "test"))
    assert m["counts"]["annotations_cancelled"] == 1
    assert m["counts"]["annotations_counted"] == 30
    # every third task was pre-annotated: latest annotation accepted it on 3 tasks, changed it on 2
    assert m["counts"]["origin"] == {"prediction_accepted": 3, "human_changed": 2, "human": 10}
    assert m["model_versions"] == {"m-1": 3, "m-2": 2}
    assert {a["id"] for a in m["annotators"]} == {"1", "2"}
    assert m["resolution"]["policy"] == "majority"
    assert m["goldloop_version"] == "0.1.0"
    assert m["problems"] == [] and m["problem_counts"] == {}
    total = sum(len(res) - 1 - (1 if any(r["from_name"] == "aspects" for r in res) else 0)
                for res in (latest_annotation(t)["result"] for t in fixture_tasks))
    assert sum(m["counts"]["spans_per_label"]["entities"].values()) == total


def test_conflicts_suspects_and_datasheet(exported):
    result, *_ = exported
    conflicts = list(read_jsonl(result.version_dir / "conflicts.jsonl"))
    assert len(conflicts) == result.manifest["counts"]["conflicts"] > 0
    assert {"id", "annotations", "resolved"} <= set(conflicts[0])
    assert len(conflicts[0]["annotations"]) == 2
    for row in read_jsonl(result.version_dir / "suspect_labels.jsonl"):
        assert {"id", "text", "given_label", "suggested_label", "confidence"} <= set(row)
    sheet = (result.version_dir / "README.md").read_text(encoding="utf-8")
    for needle in ("## Labels", "SpecificDisease", "## Splits", "## Agreement", "## Known limits", "longer"):
        assert needle in sheet


def test_two_annotator_kappa_hand_checked(exported):
    # topic labels of annotators 1 and 2 (tests/data/export/make_fixture.py): 12 of 15 agree -> p_o = 0.8;
    # marginals a: hereditary 7, cancer 4, other 4; b: hereditary 5, cancer 6, other 4
    # p_e = (7*5 + 4*6 + 4*4) / 225 = 1/3 -> kappa = (0.8 - 1/3) / (2/3) = 0.7
    result, *_ = exported
    topic = result.manifest["agreement"]["choices"]["topic"]
    assert topic["cohen_kappa"] == pytest.approx(0.7)
    assert topic["items"] == 15
    assert result.manifest["agreement"]["spans"]["entities"]["f1"] < 1.0
