"""Per-format writers: CSV columns, byte-identical files with helper processes, when helpers start."""
from __future__ import annotations

import csv

from ml_backend.schema import parse_label_config
from server.export import ExportOptions, ProjectInfo, export_dataset, writers  # writers: its PARALLEL_MIN_DOCS
from tests.plugins.export import many_tasks


def test_csv_has_one_column_per_choice_control(exported):
    result, *_ = exported
    with open(result.version_dir / "data.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "text", "split", "topic", "aspects"]
    assert len(rows) == 15
    assert any("胸闷" in r["text"] for r in rows)


def test_helper_process_export_is_byte_identical(tmp_path, fixture_xml, fixture_tasks, monkeypatch):
    monkeypatch.setattr(writers, "PARALLEL_MIN_DOCS", 600)  # the switch point, small enough for a test
    spec = parse_label_config(fixture_xml)
    project = ProjectInfo(7, "medical-fixture", "Medical fixture", fixture_xml)
    n = 750  # auto mode switches to the helper processes after PARALLEL_MIN_DOCS documents
    runs = {
        mode: export_dataset(many_tasks(fixture_tasks, n), spec, project, ExportOptions(tmp_path / str(mode), parallel=mode))
        for mode in (False, True, None)
    }
    def data_files(manifest: dict) -> dict:  # the datasheet (README.md) names the version, which has a timestamp
        return {k: v for k, v in manifest["files"].items() if k != "README.md"}

    serial = runs[False].manifest
    assert serial["counts"]["documents"] >= writers.PARALLEL_MIN_DOCS
    assert any(serial["files"][f"conll/{sp}.conll"]["bytes"] > 0 for sp in ("train", "dev", "test"))
    for mode in (True, None):
        m = runs[mode].manifest
        assert data_files(m) == data_files(serial), mode  # every file, Parquet and CoNLL included, has the same sha256
        assert m["content_hash"] == serial["content_hash"]
        assert m["counts"]["overlaps_dropped_in_bio"] == serial["counts"]["overlaps_dropped_in_bio"]
    card = (runs[True].version_dir / "hf" / "README.md").read_text(encoding="utf-8")
    assert f"- train: {serial['counts']['per_split']['train']}" in card


def test_known_large_export_starts_its_helpers_at_once(tmp_path, fixture_xml, fixture_tasks, monkeypatch):
    import multiprocessing

    monkeypatch.setattr(writers, "PARALLEL_MIN_DOCS", 600)
    spec = parse_label_config(fixture_xml)
    project = ProjectInfo(7, "medical-fixture", "Medical fixture", fixture_xml)
    helpers_early: dict[str, bool] = {}

    def tasks(key: str):
        for i, t in enumerate(many_tasks(fixture_tasks, 650)):
            if i == 10:
                helpers_early[key] = any(p.name == "goldloop-export-tokens" for p in multiprocessing.active_children())
            yield t

    # the CLI passes the task count as total
    known = export_dataset(tasks("known"), spec, project, ExportOptions(tmp_path / "known", total=650))
    unknown = export_dataset(tasks("unknown"), spec, project, ExportOptions(tmp_path / "unknown"))
    # a size known to be large: helpers from the first task (nothing buffered); unknown: wait for the threshold
    assert helpers_early == {"known": True, "unknown": False}
    assert known.manifest["content_hash"] == unknown.manifest["content_hash"]
