"""server.up against a real Label Studio (no ML backend): one project per schema, kept in step with its schema file."""
from __future__ import annotations

from pathlib import Path

import pytest

from server import ls_client, store
from server.errors import ConfigError
from server.schema_files import load_schema, load_schemas
from server.up import ensure_project

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]


def test_one_project_per_schema_idempotent(ls_projects):
    _, s, db, client = ls_projects
    before = {p["schema_name"]: p["id"] for p in store.list_projects(db)}
    assert set(before) >= {"contracts", "financial_news", "medical_records"}
    for schema in load_schemas():
        project, sync = ensure_project(client, schema, s, db)
        assert project.id == before[schema.name] and not sync.changed
        assert project.title == schema.title
        assert project.min_annotations_to_start_training == s.min_annotations_to_train
    assert len([p for p in ls_client.list_projects(client) if ls_client.schema_name_of(p)]) == len(before)


def test_changed_schema_updates_the_labeling_config(ls_projects, tmp_path):
    _, s, db, client = ls_projects
    xml = (ROOT / "schemas" / "financial_news.xml").read_text().replace('<Choice value="neutral"/>', '<Choice value="neutral"/><Choice value="mixed"/>')
    (tmp_path / "financial_news.xml").write_text(xml)
    schema = load_schema(tmp_path / "financial_news.xml")
    project, sync = ensure_project(client, schema, s, db)
    assert sync.config_updated and "mixed" in ls_client.get_project(client, project.id).label_config
    assert store.get_project(db, project.id)["config_hash"] == schema.config_hash
    # back to the repo's schema
    original = load_schema(ROOT / "schemas" / "financial_news.xml")
    _, sync = ensure_project(client, original, s, db)
    assert sync.config_updated


def test_schema_that_label_studio_rejects(ls_projects, tmp_path):
    _, s, db, client = ls_projects
    path = tmp_path / "clash.xml"
    path.write_text('<View><Text name="text" value="$text"/><Labels name="text" toName="text"><Label value="A"/></Labels></View>')
    with pytest.raises(ConfigError, match=r"Label Studio rejects schema .*clash.xml.*non-unique names"):
        ensure_project(client, load_schema(path), s, db)
    assert store.get_project_by_name(db, "clash") is None
