"""The suspect-label check."""
from __future__ import annotations

from ml_backend.schema import parse_label_config
from ml_backend.splits import split_of
from server.export import ExportOptions, ProjectInfo, export_dataset
from tests.plugins.export import ann, span


def test_check_labels_without_choices_is_noted(tmp_path):
    xml = '<View><Labels name="ents" toName="t"><Label value="X"/></Labels><Text name="t" value="$body"/></View>'
    task = {"id": 1, "data": {"body": "X marks."}, "annotations": [ann(1, [span(0, 1, "X", "X", "ents")])]}
    r = export_dataset([task], parse_label_config(xml), ProjectInfo(1, "p", "P", xml),
                       ExportOptions(tmp_path, check_labels=True))
    assert not (r.version_dir / "suspect_labels.jsonl").exists()
    assert not (r.version_dir / "data.csv").exists()
    assert "no Choices control" in r.manifest["check_labels"][0]
    assert (r.version_dir / "conll" / f"{split_of(1)}.conll").read_text().count("B-X") == 1
