"""The Parquet export loads with `datasets`, typed ClassLabel features included."""
from __future__ import annotations

from server.export import bio_to_spans, read_jsonl


def test_hf_parquet_loads_with_classlabel_features(exported, tmp_path):
    import datasets

    result, _, spec, _ = exported
    hf = result.version_dir / "hf"
    ds = datasets.load_dataset(
        "parquet", data_files={s: str(hf / f"{s}.parquet") for s in ("train", "dev", "test")},
        cache_dir=str(tmp_path / "cache"),
    )
    feats = ds["train"].features
    assert isinstance(feats["ner_tags"].feature, datasets.ClassLabel)
    assert feats["ner_tags"].feature.names[0] == "O"
    assert "B-SpecificDisease" in feats["ner_tags"].feature.names
    assert isinstance(feats["topic"], datasets.ClassLabel) and feats["topic"].names == ["cancer", "hereditary", "other"]
    assert isinstance(feats["aspects"].feature, datasets.ClassLabel)
    assert sum(ds[s].num_rows for s in ds) == 15
    records = {r["id"]: r for r in read_jsonl(result.version_dir / "data.jsonl")}
    for row in ds["train"]:
        rec = records[row["id"]]
        tags = [feats["ner_tags"].feature.int2str(i) for i in row["ner_tags"]]
        assert bio_to_spans(row["tokens"], tags, row["text"]) == sorted((s["start"], s["end"], s["label"]) for s in rec["spans"])
        assert feats["topic"].int2str(row["topic"]) == rec["choices"]["topic"][0]
        assert [s["label"] for s in row["spans"]] == [s["label"] for s in rec["spans"]]
    assert "load_dataset" in (hf / "README.md").read_text()
