"""server.store: goldloop's own tables (processes, projects, imports)."""
from __future__ import annotations

from server import store


def test_store_round_trip(tmp_path):
    db = store.open_db(tmp_path / "g.db")
    store.upsert_project(db, id=4, schema_name="contracts", title="C", config_hash="h", text_field="text", mask_pii=False)
    store.upsert_project(db, id=7, schema_name="contracts", title="C", config_hash="h2", text_field="text", mask_pii=True)
    assert [p["id"] for p in store.list_projects(db)] == [7]  # one project per schema name
    assert store.get_project_by_name(db, "contracts")["mask_pii"] == 1
    iid = store.record_import(db, project_id=7, schema_name="contracts", paths=["a.jsonl"], status="ok", task_ids=[1, 2], report={"read": 2})
    store.update_import(db, iid, pre_annotated=2)
    (row,) = store.list_imports(db, 7)
    assert row["task_ids"] == [1, 2] and row["report"] == {"read": 2} and row["pre_annotated"] == 2
