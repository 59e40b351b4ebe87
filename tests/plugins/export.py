"""Fixtures and task builders for the export tests: the medical fixture project, exported once per session."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from ml_backend.schema import parse_label_config
from server.export import ExportOptions, ExportResult, ProjectInfo, export_dataset

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "export"
SIMPLE_XML = """<View>
  <Labels name="entities" toName="text"><Label value="Disease"/><Label value="Drug"/></Labels>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single"><Choice value="positive"/><Choice value="negative"/></Choices>
</View>"""


@pytest.fixture(scope="session")
def fixture_xml() -> str:
    return (DATA / "config.xml").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def fixture_tasks() -> list[dict]:
    return json.loads((DATA / "tasks.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def exported(tmp_path_factory, fixture_xml, fixture_tasks):
    """The fixture project exported once in every format, label check included: (result, out root, spec, project)."""
    out = tmp_path_factory.mktemp("exports")
    spec = parse_label_config(fixture_xml)
    project = ProjectInfo(7, "medical-fixture", "Medical fixture", fixture_xml)
    result = export_dataset(iter(fixture_tasks), spec, project,
                            ExportOptions(out, check_labels=True, goldloop_version="0.1.0"))
    return result, out, spec, project


def simple_export(out: Path, tasks: list[dict], **kw) -> ExportResult:
    """Export tasks of the one-span-control, one-choice-control SIMPLE_XML project (slug "simple")."""
    spec = parse_label_config(SIMPLE_XML)
    return export_dataset(tasks, spec, ProjectInfo(3, "simple", "Simple", SIMPLE_XML), ExportOptions(out, **kw))


def ann(aid: int, result: list[dict], who: int = 1, updated: str = "2026-11-22T05:58:28Z", **kw) -> dict:
    """A Label Studio annotation."""
    return {"id": aid, "completed_by": who, "result": result, "was_cancelled": False, "ground_truth": False,
            "created_at": updated, "updated_at": updated, "parent_prediction": None, **kw}


def span(start: int, end: int, text: str, label: str = "Disease", name: str = "entities") -> dict:
    """A span result item."""
    return {"from_name": name, "to_name": "text", "type": "labels",
            "value": {"start": start, "end": end, "text": text, "labels": [label]}}


def latest_annotation(task: dict) -> dict:
    """The most recently updated annotation that is not cancelled."""
    live = [a for a in task["annotations"] if not a["was_cancelled"]]
    return max(live, key=lambda a: (a["updated_at"], a["id"]))


def many_tasks(fixture_tasks: list[dict], n: int):
    """n tasks repeating the fixture's with new task ids (a project larger than the helper threshold)."""
    for i in range(n):
        t = copy.deepcopy(fixture_tasks[i % len(fixture_tasks)])
        t["id"] = 100_000 + i
        yield t
