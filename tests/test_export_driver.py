"""export_dataset end to end: every file with its hash, nothing exported, a light import."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from server.errors import ExportError
from tests.plugins.export import ROOT, ann, simple_export


def test_every_format_written_with_hashes(exported):
    result, out, _, project = exported
    assert result.changed and result.version_dir is not None
    assert result.version_dir.parent == out / project.slug
    assert result.version_dir.name == result.version
    names = {p.relative_to(result.version_dir).as_posix() for p in result.version_dir.rglob("*") if p.is_file()}
    expected = {
        "data.jsonl", "data.csv", "manifest.json", "README.md", "conflicts.jsonl", "problems.jsonl",
        "suspect_labels.jsonl", "hf/README.md", *(f"conll/{s}.conll" for s in ("train", "dev", "test")),
        *(f"hf/{s}.parquet" for s in ("train", "dev", "test")),
    }
    assert names == expected
    manifest = json.loads((result.version_dir / "manifest.json").read_text())
    assert set(manifest["files"]) == expected - {"manifest.json"}
    for rel, info in manifest["files"].items():
        assert hashlib.sha256((result.version_dir / rel).read_bytes()).hexdigest() == info["sha256"], rel
    assert result.version.endswith(manifest["content_hash"][:8])
    assert not [p for p in (out / project.slug).iterdir() if p.name.startswith(".tmp-")]


def test_no_annotations_is_an_error_and_writes_nothing(tmp_path):
    tasks = [{"id": 1, "data": {"text": "x"}, "annotations": []},
             {"id": 2, "data": {"text": "y"}, "annotations": [dict(ann(2, []), was_cancelled=True)]}]
    with pytest.raises(ExportError, match="has no completed annotations; nothing exported"):
        simple_export(tmp_path, tasks)
    assert list((tmp_path / "simple").iterdir()) == []
    with pytest.raises(ExportError, match="nothing exported"):
        simple_export(tmp_path, [])


def test_export_is_importable_without_heavy_modules():
    code = "import sys, server.export; print(any(m in sys.modules for m in ('datasets', 'sklearn', 'cleanlab')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
