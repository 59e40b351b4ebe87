"""Pretraining from outside labeled data: label mapping, which control each file teaches, the gate between a
starter and a later round, and the shipped starter sets (the round on a real project: test_e2e_pretrain)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ml_backend.models import Examples, SpanMatcher
from ml_backend.registry import ProjectModel, Registry
from ml_backend.schema import parse_label_config
from ml_backend.training import examples_for, gate
from server import starters
from server.errors import ConfigError
from server.loop import evaluate_labeled, of_control
from server.records import build_records, parse_mapping
from tests.plugins.label_studio import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
MEDICAL = parse_label_config((ROOT / "schemas" / "medical_records.xml").read_text())
NEWS = parse_label_config((ROOT / "schemas" / "financial_news.xml").read_text())
TEXT = "Cystic fibrosis patients received tobramycin; ataxia was seen."


def _spans_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "gold.jsonl", [
        {"id": "a", "text": TEXT, "spans": [{"start": 0, "end": 15, "label": "SpecificDisease"},
                                            {"start": 34, "end": 44, "label": "Chemical"},
                                            {"start": 46, "end": 52, "label": "Symptom"},  # a project label: kept as it is
                                            {"start": 9, "end": 15, "label": "Modifier"}]},
        {"id": "b", "text": "Only Modifier here: fibrosis.", "spans": [{"start": 20, "end": 28, "label": "Modifier"}]},
    ])


def test_mapping_applied_identity_kept_unmapped_dropped_and_counted(tmp_path):
    mapping = parse_mapping(["SpecificDisease=Disease", "Chemical=Medication"], MEDICAL)
    data = build_records([(_spans_file(tmp_path), None)], MEDICAL, mapping)
    recs = {r["id"]: r for split in data.by_split.values() for r in split}
    assert sorted((s["start"], s["end"], s["label"], s["from_name"]) for s in recs["a"]["spans"]) == [
        (0, 15, "Disease", "entities"), (34, 44, "Medication", "entities"), (46, 52, "Symptom", "entities")]
    assert recs["b"]["spans"] == []  # its only span had no project label: the document stays, as one without entities
    report = json.loads(data.record["pretrain"])
    assert report["dropped_labels"] == {"Modifier": 2}
    assert report["mapping"] == {"SpecificDisease": "Disease", "Chemical": "Medication"}
    # the loop's stable split, by the record's id
    from ml_backend.splits import split_of

    assert {rid: r["split"] for rid, r in recs.items()} == {"a": split_of("a"), "b": split_of("b")}
    # the data hash covers the mapping: another mapping, another hash; the same inputs, the same hash
    again = build_records([(tmp_path / "gold.jsonl", None)], MEDICAL, mapping)
    other = build_records([(tmp_path / "gold.jsonl", None)], MEDICAL, {"SpecificDisease": "Disease"})
    assert again.data_hash == data.data_hash != other.data_hash


def test_a_map_target_that_is_no_project_label_is_a_one_line_error_naming_it():
    with pytest.raises(ConfigError) as err:
        parse_mapping(["Chemical=Drug"], MEDICAL)
    msg = str(err.value)
    assert "'Drug'" in msg and "\n" not in msg
    assert all(lbl in msg for lbl in ("Disease", "Medication", "Symptom", "Procedure", "Dosage"))
    with pytest.raises(ConfigError, match="SOURCE=TARGET"):
        parse_mapping(["Chemical"], MEDICAL)


def test_a_document_label_file_teaches_sentiment_only(tmp_path):
    tweets = write_jsonl(tmp_path / "tweets.jsonl", [
        {"id": "t1", "text": "$XYZ - Acme shares jump 10% on results", "label": "Bullish"},
        {"id": "t2", "text": "$XYZ - Acme cuts outlook", "label": "Bearish"},
        {"id": "t3", "text": "$XYZ - Acme to report on Tuesday", "label": "Unknown"}])
    names = write_jsonl(tmp_path / "names.jsonl", [{"id": "n1", "text": "Acme Corp hired John Smith in Boston.",
                                                     "spans": [{"start": 0, "end": 9, "label": "ORG"}, {"start": 16, "end": 26, "label": "PER"}]}])
    data = build_records([(tweets, None), (names, None)], NEWS, parse_mapping(
        ["Bullish=positive", "Bearish=negative", "ORG=Company", "PER=Person"], NEWS))
    recs = [r for split in data.by_split.values() for r in split]
    entities, sentiment = NEWS.control("entities"), NEWS.control("sentiment")
    # a tweet says nothing about entities: it is no "document without entities" for the span model
    assert [r["id"] for r in of_control(recs, entities)] == ["n1"]
    assert sorted(r["id"] for r in of_control(recs, sentiment)) == ["t1", "t2"]
    assert examples_for(entities, of_control(recs, entities)).targets == [[(0, 9, "Company"), (16, 26, "Person")]]
    report = json.loads(data.record["pretrain"])
    assert report["dropped_labels"] == {"Unknown": 1} and report["dropped_documents"] == 1
    # each control is scored on the documents that label it only
    matcher = SpanMatcher(entities.labels)
    matcher.fit(examples_for(entities, of_control(recs, entities)))
    from ml_backend.models import TfidfClassifier

    clf = TfidfClassifier(sentiment.labels)
    clf.fit(Examples(["up up", "down down", "up", "down"], [["positive"], ["negative"], ["positive"], ["negative"]]))
    m = evaluate_labeled(NEWS, {"entities": matcher, "sentiment": clf}, recs, {"entities", "sentiment"})
    assert set(m["controls"]) == {"entities", "sentiment"} and m["controls"]["sentiment"]["n"] == 2
    assert m["controls"]["entities"]["n"] == 1 and m["n_docs"] == 3


def _matcher(records) -> SpanMatcher:
    model = SpanMatcher(MEDICAL.control("entities").labels)
    model.fit(examples_for(MEDICAL.control("entities"), records))
    return model


def test_the_gate_keeps_a_starter_against_a_worse_round_and_yields_to_a_better_one(settings):
    diseases = ["cystic fibrosis", "ataxia", "hemophilia", "breast cancer", "gout", "asthma"]
    recs = [{"id": f"d{i}", "text": f"Patients with {d} were studied.", "spans": [{"start": 14, "end": 14 + len(d), "label": "Disease"}]}
            for i, d in enumerate(diseases)]
    starter_train, test = recs[:3], recs
    registry = Registry(settings.backend_settings())
    registry.promote("7", ProjectModel(MEDICAL, "starter-v1", {"entities": _matcher(starter_train)}, {"cold_start": []}))
    serving = registry.get("7", MEDICAL)
    # a version that serves every control with a trained model: the loop's gate applies (not "first trained version")
    assert serving.version == "starter-v1" and serving.meta["cold_start"] == []
    old = evaluate_labeled(MEDICAL, serving.models, test, {"entities"})
    flipped = [{**r, "spans": [{**s, "label": "Medication"} for s in r["spans"]]} for r in recs[3:]]
    worse = evaluate_labeled(MEDICAL, {"entities": _matcher(flipped)}, test, {"entities"})
    better = evaluate_labeled(MEDICAL, {"entities": _matcher(recs[1:])}, test, {"entities"})
    assert worse["primary"] < old["primary"] < better["primary"]
    promote, why = gate(worse, old, 0.005)
    assert not promote and "worse than serving" in why
    assert gate(better, old, 0.005)[0]


@pytest.mark.parametrize("schema", starters.available())
def test_shipped_starters_are_permissive_complete_and_map_onto_the_schema(schema):
    man = starters.manifest(schema)
    spec = parse_label_config((ROOT / "schemas" / f"{schema}.xml").read_text())
    for s in man["sets"]:
        folder = Path(starters.__file__).parent / schema
        assert (folder / s["file"]).is_file() and (folder / s["licence_file"]).read_text().strip()
        assert "NC" not in s["licence"] and "non-commercial" not in s["licence"].lower() and s["source"]
        assert set(s["map"].values()) <= set(spec.control(s["control"]).labels)
    sources, maps = starters.inputs(schema)
    data = build_records(sources, spec, parse_mapping(maps, spec))
    assert sum(map(len, data.by_split.values())) == sum(s["documents"] for s in man["sets"])
    assert all(data.by_split[s] for s in ("train", "dev", "test"))
    assert build_records(sources, spec, parse_mapping(maps, spec)).data_hash == data.data_hash
    assert sum(f.stat().st_size for f in (Path(starters.__file__).parent / schema).glob("*")) < 2_000_000


def test_status_line_after_a_real_training_record(settings, tmp_path):
    """The background run records a training row (no duration yet), then the outcome: status reads both."""
    from server import store

    db = store.open_db(settings.data_dir.db_path)
    starters._record(db, 4, schema="financial_news", key="k", status="training", started_at=time.time(), pid=os.getpid(),
                     version=None, decision=None, duration_s=None)
    assert starters.status_line(db, 4).startswith("starter training since")
    starters._record(db, 4, status="promoted", version="v2", decision="first trained version", duration_s=356.2, pid=None)
    assert starters.status_line(db, 4) == "starter promoted v2 in 356 s — first trained version"
    # a data dir whose table an older version made, every column guessed as text
    old = store.open_db(tmp_path / "old.db")
    old.execute("CREATE TABLE starters (project_id INTEGER PRIMARY KEY, status TEXT, version TEXT, decision TEXT, duration_s TEXT)")
    old.execute("INSERT INTO starters VALUES (5, 'promoted', 'v3', 'ok', '12.4')")
    assert starters.status_line(old, 5) == "starter promoted v3 in 12 s — ok"


def test_up_trains_a_starter_once_per_key_and_status_says_where_it_stands(settings):
    from server import store

    db = store.open_db(settings.data_dir.db_path)
    assert starters.needed(settings, db, "medical_records", 3) and not starters.needed(settings, db, "contracts", 1)
    k = starters.key("medical_records", settings.model)
    db[starters.TABLE].upsert({"project_id": 3, "key": k, "status": "promoted", "version": "v1", "duration_s": 42.0,
                               "decision": "first trained version"}, pk="project_id", alter=True)
    assert not starters.needed(settings, db, "medical_records", 3)  # trained with this key: cached
    assert starters.status_line(db, 3) == "starter promoted v1 in 42 s — first trained version"
    assert k != starters.key("medical_records", "another-encoder")
    db[starters.TABLE].upsert({"project_id": 3, "key": "old", "status": "promoted"}, pk="project_id")
    assert starters.needed(settings, db, "medical_records", 3)  # the files or the encoder changed: trained again
    db[starters.TABLE].upsert({"project_id": 3, "status": "training", "pid": 2**22 + 12345, "started_at": 0.0}, pk="project_id", alter=True)
    assert "interrupted" in starters.status_line(db, 3) and starters.needed(settings, db, "medical_records", 3)
