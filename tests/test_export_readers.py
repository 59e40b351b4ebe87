"""Reading an export back: data.jsonl records and spans, CoNLL round trips."""
from __future__ import annotations

import pytest

from ml_backend.splits import split_of
from server.export import bio_to_spans, read_conll, read_jsonl, read_jsonl_spans
from tests.plugins.export import latest_annotation

JSONL_KEYS = {
    "id", "text", "data", "split", "spans", "choices", "annotators", "annotation_ids",
    "created_at", "updated_at", "origin", "model_version",
}


def test_jsonl_keys_and_span_round_trip(exported, fixture_tasks):
    result, *_ = exported
    by_id = {t["id"]: t for t in fixture_tasks}
    records = list(read_jsonl(result.version_dir / "data.jsonl"))
    assert [r["id"] for r in records] == [t["id"] for t in fixture_tasks]
    for rec in records:
        assert set(rec) == JSONL_KEYS
        assert rec["split"] == split_of(rec["id"])
        assert rec["origin"] in ("prediction_accepted", "human_changed", "human")
        for s in rec["spans"]:
            assert rec["text"][s["start"]:s["end"]] == s["text"]
    for tid, text, spans in read_jsonl_spans(result.version_dir / "data.jsonl"):
        latest = latest_annotation(by_id[tid])  # two annotators: majority keeps agreed spans + the latest one's on ties
        want = sorted((r["value"]["start"], r["value"]["end"], r["value"]["labels"][0])
                      for r in latest["result"] if r["from_name"] == "entities")
        assert spans == want, tid


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_conll_round_trip_including_chinese(exported, split):
    result, *_ = exported
    records = [r for r in read_jsonl(result.version_dir / "data.jsonl") if r["split"] == split]
    docs = list(read_conll(result.version_dir / "conll" / f"{split}.conll"))
    assert len(docs) == len(records)
    for rec, (tokens, tags) in zip(records, docs):
        want = sorted((s["start"], s["end"], s["label"]) for s in rec["spans"])
        assert bio_to_spans(tokens, tags, rec["text"]) == want, rec["id"]
        if any("\u4e00" <= ch <= "\u9fff" for ch in rec["text"]):
            assert all(len(t) == 1 for t in tokens if "\u4e00" <= t[0] <= "\u9fff")
