"""Gold dataset export: every format, round trips, idempotence, atomicity and bad input."""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ml_backend.schema import parse_label_config
from ml_backend.splits import split_of
from server.errors import ExportError
from server.export import (
    ProjectInfo,
    bio_to_spans,
    export_dataset,
    bio_names,
    layout_document,
    list_versions,
    read_conll,
    read_jsonl,
    read_jsonl_spans,
    select_non_overlapping,
    tokenize_for_conll,
)

DATA = Path(__file__).parent / "data" / "export"
ROOT = Path(__file__).resolve().parents[1]
JSONL_KEYS = {
    "id", "text", "data", "split", "spans", "choices", "annotators", "annotation_ids",
    "created_at", "updated_at", "origin", "model_version",
}
SIMPLE_XML = """<View>
  <Labels name="entities" toName="text"><Label value="Disease"/><Label value="Drug"/></Labels>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single"><Choice value="positive"/><Choice value="negative"/></Choices>
</View>"""


@pytest.fixture(scope="module")
def fixture_xml() -> str:
    return (DATA / "config.xml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def fixture_tasks() -> list[dict]:
    return json.loads((DATA / "tasks.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, fixture_xml, fixture_tasks):
    out = tmp_path_factory.mktemp("exports")
    spec = parse_label_config(fixture_xml)
    project = ProjectInfo(7, "medical-fixture", "Medical fixture", fixture_xml)
    result = export_dataset(iter(fixture_tasks), spec, project, out, check_labels=True, goldloop_version="0.1.0")
    return result, out, spec, project


def _simple(out: Path, tasks: list[dict], **kw):
    spec = parse_label_config(SIMPLE_XML)
    return export_dataset(tasks, spec, ProjectInfo(3, "simple", "Simple", SIMPLE_XML), out, **kw)


def _ann(aid: int, result: list[dict], who: int = 1, updated: str = "2026-11-22T05:58:28Z", **kw) -> dict:
    return {"id": aid, "completed_by": who, "result": result, "was_cancelled": False, "ground_truth": False,
            "created_at": updated, "updated_at": updated, "parent_prediction": None, **kw}


def _span(start: int, end: int, text: str, label: str = "Disease", name: str = "entities") -> dict:
    return {"from_name": name, "to_name": "text", "type": "labels",
            "value": {"start": start, "end": end, "text": text, "labels": [label]}}


def _latest(task: dict) -> dict:
    live = [a for a in task["annotations"] if not a["was_cancelled"]]
    return max(live, key=lambda a: (a["updated_at"], a["id"]))


# ------------------------------------------------------------------------------------------- layout
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


def test_manifest_counts_and_provenance(exported, fixture_tasks):
    result, _, spec, project = exported
    m = result.manifest
    assert m["project"]["id"] == project.id and m["label_config_hash"] == spec.config_hash
    assert m["counts"]["documents"] == 15
    assert sum(m["counts"]["per_split"].values()) == 15
    assert all(m["counts"]["per_split"][s] >= 3 for s in ("train", "dev", "test"))
    assert m["counts"]["annotations_cancelled"] == 1
    assert m["counts"]["annotations_counted"] == 30
    # every third task was pre-annotated: latest annotation accepted it on 3 tasks, changed it on 2
    assert m["counts"]["origin"] == {"prediction_accepted": 3, "human_changed": 2, "human": 10}
    assert m["model_versions"] == {"m-1": 3, "m-2": 2}
    assert {a["id"] for a in m["annotators"]} == {"1", "2"}
    assert m["resolution"]["policy"] == "majority"
    assert m["goldloop_version"] == "0.1.0"
    assert m["problems"] == [] and m["problem_counts"] == {}
    total = sum(len(_latest(t)["result"]) - 1 - (1 if any(r["from_name"] == "aspects" for r in _latest(t)["result"]) else 0)
                for t in fixture_tasks)
    assert sum(m["counts"]["spans_per_label"]["entities"].values()) == total


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
        latest = _latest(by_id[tid])  # two annotators: majority keeps agreed spans + the latest one's on ties
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


def test_conll_layout(exported):
    result, *_ = exported
    lines = (result.version_dir / "conll" / "train.conll").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "-DOCSTART- -X- -X- O" and lines[1] == ""
    for line in lines:
        if line and not line.startswith("-DOCSTART-"):
            parts = line.split(" ")
            assert len(parts) == 4 and parts[1:3] == ["-X-", "_"]
            assert parts[3] == "O" or parts[3][:2] in ("B-", "I-")


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


def test_csv_has_one_column_per_choice_control(exported):
    result, *_ = exported
    with open(result.version_dir / "data.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "text", "split", "topic", "aspects"]
    assert len(rows) == 15
    assert any("胸闷" in r["text"] for r in rows)


def test_conflicts_suspects_and_datasheet(exported):
    result, *_ = exported
    conflicts = list(read_jsonl(result.version_dir / "conflicts.jsonl"))
    assert len(conflicts) == result.manifest["counts"]["conflicts"] > 0
    assert {"id", "annotations", "resolved"} <= set(conflicts[0])
    assert len(conflicts[0]["annotations"]) == 2
    for row in read_jsonl(result.version_dir / "suspect_labels.jsonl"):
        assert {"id", "text", "given_label", "suggested_label", "confidence"} <= set(row)
    sheet = (result.version_dir / "README.md").read_text(encoding="utf-8")
    for needle in ("## Labels", "SpecificDisease", "## Splits", "## Agreement", "## Known limits", "longer"):
        assert needle in sheet


def test_two_annotator_kappa_hand_checked(exported):
    # topic labels of annotators 1 and 2 (tests/data/export/make_fixture.py): 12 of 15 agree -> p_o = 0.8;
    # marginals a: hereditary 7, cancer 4, other 4; b: hereditary 5, cancer 6, other 4
    # p_e = (7*5 + 4*6 + 4*4) / 225 = 1/3 -> kappa = (0.8 - 1/3) / (2/3) = 0.7
    result, *_ = exported
    topic = result.manifest["agreement"]["choices"]["topic"]
    assert topic["cohen_kappa"] == pytest.approx(0.7)
    assert topic["items"] == 15
    assert result.manifest["agreement"]["spans"]["entities"]["f1"] < 1.0


# ------------------------------------------------------------------------------------------ tokens
def test_her2_positive_boundary_inside_token():
    text = "HER2-positive breast cancer responds to trastuzumab."
    toks = tokenize_for_conll(text, [(0, 4)])
    assert toks[:3] == [("HER2", 0, 4), ("-positive", 4, 13), ("breast", 14, 20)]


def test_her2_positive_export(tmp_path):
    text = "HER2-positive breast cancer responds to trastuzumab."
    task = {"id": 1, "data": {"text": text},
            "annotations": [_ann(1, [_span(0, 4, "HER2"), _span(40, 51, "trastuzumab", "Drug")])]}
    r = _simple(tmp_path, [task])
    conll = (r.version_dir / "conll" / f"{split_of(1)}.conll").read_text().splitlines()
    assert conll[2:4] == ["HER2 -X- _ B-Disease", "-positive -X- _ O"]
    assert "trastuzumab -X- _ B-Drug" in conll and ". -X- _ O" in conll
    (tokens, tags), = read_conll(r.version_dir / "conll" / f"{split_of(1)}.conll")
    assert bio_to_spans(tokens, tags, text) == [(0, 4, "Disease"), (40, 51, "Drug")]


def test_cjk_characters_are_tokens():
    text = "患者因直肠癌入院，给予奥沙利铂化疗。"
    toks = [t for t, _, _ in tokenize_for_conll(text, [(3, 6), (11, 15)])]
    assert toks == list(text)
    assert [t for t, _, _ in tokenize_for_conll("iga肾病 test", [])] == ["iga", "肾", "病", "test"]


@pytest.mark.parametrize("text,spans", [
    ("Acme Inc. Ltd. sued. Then\tpeace\u00a0came.  End", [(0, 14, "A"), (26, 31, "B")]),
    ("患者因直肠癌入院，给予奥沙利铂化疗。iga肾病 ok. 下一句。", [(3, 6, "A"), (11, 15, "B"), (18, 23, "A")]),
    ("  leading and trailing  ", [(2, 9, "B")]),
    ("", []),
])
def test_layout_tokens_match_tokenizer_and_round_trip(text, spans):
    names = {"c": bio_names(["A", "B"])}
    lay = layout_document(text, {"c": spans}, {"c": {"A": 0, "B": 1}}, names)
    assert lay.tokens == [t for t, _, _ in tokenize_for_conll(text, spans)]
    tags = [names["c"][i] for i in lay.tag_ids["c"]]
    assert bio_to_spans(lay.tokens, tags, text) == sorted(spans)
    path_lines = [ln for ln in lay.conll["c"].split("\n")[2:] if ln]
    assert [ln.split(" ")[0] for ln in path_lines] == lay.tokens
    assert [ln.split(" ")[-1] for ln in path_lines] == tags


def test_sentences_never_split_inside_an_entity():
    text = "Acme Inc. Ltd. sued. Then peace."
    lay = layout_document(text, {"c": [(0, 14, "A")]}, {"c": {"A": 0}}, {"c": bio_names(["A"])})
    blocks = lay.conll["c"].split("\n\n")
    assert blocks[0] == "-DOCSTART- -X- -X- O"
    assert blocks[1].splitlines() == ["Acme -X- _ B-A", "Inc. -X- _ I-A", "Ltd. -X- _ I-A"]
    assert blocks[2:] == ["sued. -X- _ O", "Then -X- _ O\npeace. -X- _ O", ""]


def test_overlap_rule_longer_then_earlier():
    kept, dropped = select_non_overlapping([(0, 10, "A"), (2, 5, "B"), (8, 14, "C"), (20, 24, "D"), (22, 26, "E")])
    assert kept == [(0, 10, "A"), (20, 24, "D")] and dropped == 3


# ------------------------------------------------------------------------------------- idempotence
def test_second_export_is_no_change(exported, fixture_tasks):
    result, out, spec, project = exported
    again = export_dataset(fixture_tasks, spec, project, out, check_labels=True)
    assert not again.changed
    assert again.message == f"no change since {result.version}"
    assert again.version == result.version
    assert list_versions(out / project.slug) == [result.version]
    assert not [p for p in (out / project.slug).iterdir() if p.name.startswith(".tmp-")]


def test_changed_content_makes_new_version(tmp_path):
    task = {"id": 1, "data": {"text": "Gout and asthma."}, "annotations": [_ann(1, [_span(0, 4, "Gout")])]}
    first = _simple(tmp_path, [task])
    task2 = copy.deepcopy(task)
    task2["annotations"][0]["result"].append(_span(9, 15, "asthma"))
    second = _simple(tmp_path, [task2])
    assert second.changed and second.version != first.version
    assert list_versions(tmp_path / "simple") == sorted([first.version, second.version])


# --------------------------------------------------------------------------------------- atomicity
def test_killed_export_leaves_no_version(tmp_path):
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from ml_backend.schema import parse_label_config
        from server.export import ProjectInfo, export_dataset
        xml = {SIMPLE_XML!r}
        def slow():
            for i in range(1, 10_000):
                time.sleep(0.01)
                yield {{"id": i, "data": {{"text": "Gout again."}},
                       "annotations": [{{"id": i, "completed_by": 1, "result": []}}]}}
        export_dataset(slow(), parse_label_config(xml), ProjectInfo(3, "simple", "Simple", xml), Path({str(out)!r}),
                       formats=("jsonl", "conll", "csv"))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not list((out / "simple").glob(".tmp-*")):
            time.sleep(0.05)
        assert list((out / "simple").glob(".tmp-*")), "the export never started"
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list_versions(out / "simple") == []
    assert list((out / "simple").glob(".tmp-*"))  # the partial temp dir is ignored ...
    task = {"id": 1, "data": {"text": "Gout again."}, "annotations": [_ann(1, [_span(0, 4, "Gout")])]}
    r = _simple(out, [task], formats=("jsonl",))
    assert r.changed and list_versions(out / "simple") == [r.version]
    assert not list((out / "simple").glob(".tmp-*"))  # ... and cleaned by the next export


def _many(fixture_tasks: list[dict], n: int):
    """n tasks repeating the fixture's with new task ids (a project larger than the helper threshold)."""
    for i in range(n):
        t = copy.deepcopy(fixture_tasks[i % len(fixture_tasks)])
        t["id"] = 100_000 + i
        yield t


def test_helper_process_export_is_byte_identical(tmp_path, fixture_xml, fixture_tasks, monkeypatch):
    import server.export

    monkeypatch.setattr(server.export, "PARALLEL_MIN_DOCS", 600)  # the switch point, small enough for a test
    spec = parse_label_config(fixture_xml)
    project = ProjectInfo(7, "medical-fixture", "Medical fixture", fixture_xml)
    n = 750  # auto mode switches to the helper processes after PARALLEL_MIN_DOCS documents
    runs = {mode: export_dataset(_many(fixture_tasks, n), spec, project, tmp_path / str(mode), parallel=mode)
            for mode in (False, True, None)}
    def data_files(manifest: dict) -> dict:  # the datasheet (README.md) names the version, which has a timestamp
        return {k: v for k, v in manifest["files"].items() if k != "README.md"}

    serial = runs[False].manifest
    assert serial["counts"]["documents"] >= server.export.PARALLEL_MIN_DOCS
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

    import server.export

    monkeypatch.setattr(server.export, "PARALLEL_MIN_DOCS", 600)
    spec = parse_label_config(fixture_xml)
    project = ProjectInfo(7, "medical-fixture", "Medical fixture", fixture_xml)
    helpers_early: dict[str, bool] = {}

    def tasks(key: str):
        for i, t in enumerate(_many(fixture_tasks, 650)):
            if i == 10:
                helpers_early[key] = any(p.name == "goldloop-export-tokens" for p in multiprocessing.active_children())
            yield t

    known = export_dataset(tasks("known"), spec, project, tmp_path / "known", total=650)  # the CLI passes the task count
    unknown = export_dataset(tasks("unknown"), spec, project, tmp_path / "unknown")
    # a size known to be large: helpers from the first task (nothing buffered); unknown: wait for the threshold
    assert helpers_early == {"known": True, "unknown": False}
    assert known.manifest["content_hash"] == unknown.manifest["content_hash"]


def test_export_runs_ahead_of_a_stopped_helper_within_a_bound(tmp_path):
    import os
    import threading

    from server.export import _TokenWorker

    spec = parse_label_config(SIMPLE_XML)
    worker = _TokenWorker(tmp_path, spec, ("conll",), "text", ("train",))

    def rec(i: int) -> dict:  # distinct texts: a batch (256 x 2 KB) is larger than the pipe's own buffer
        return {"id": i, "text": f"Gout in the knee {i}. " * 100, "split": "train", "choices": {"sentiment": []},
                "spans": [{"start": 0, "end": 4, "label": "Disease", "text": "Gout", "from_name": "entities"}]}

    def feed(n: int) -> threading.Thread:
        th = threading.Thread(target=lambda: [worker.write(rec(i)) for i in range(n)], daemon=True)
        th.start()
        return th

    os.kill(worker.proc.pid, signal.SIGSTOP)  # a helper that reads nothing for a while
    try:
        ahead = feed(worker.QUEUE * worker.BATCH)
        ahead.join(timeout=30)
        assert not ahead.is_alive(), "the export waited for the helper instead of queueing"
        beyond = feed(3 * worker.BATCH)  # past the queue (and what the sender holds): waits, memory stays bounded
        beyond.join(timeout=2)
        assert beyond.is_alive()
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    beyond.join(timeout=60)
    assert not beyond.is_alive()
    worker.finish()
    result = worker.result()
    conll = (tmp_path / "conll" / "train.conll").read_text(encoding="utf-8")
    assert conll.count("-DOCSTART-") == (worker.QUEUE + 3) * worker.BATCH
    assert result["sizes"]["conll/train.conll"] == len(conll.encode("utf-8"))


def test_helper_process_killed_is_a_clear_error(tmp_path, fixture_xml, fixture_tasks):
    import multiprocessing

    spec = parse_label_config(fixture_xml)
    project = ProjectInfo(7, "medical-fixture", "Medical fixture", fixture_xml)

    def tasks():
        for i, t in enumerate(_many(fixture_tasks, 20_000)):
            if i == 1500:
                helpers = [p for p in multiprocessing.active_children() if p.name == "goldloop-export-tokens"]
                assert helpers, "no helper process running"
                for p in helpers:
                    p.kill()
                    p.join()
            yield t

    with pytest.raises(ExportError, match="export helper process"):
        export_dataset(tasks(), spec, project, tmp_path, parallel=True)
    assert list_versions(tmp_path / project.slug) == []
    assert not list((tmp_path / project.slug).glob(".tmp-*"))


# ---------------------------------------------------------------------------------------- bad input
def test_no_annotations_is_an_error_and_writes_nothing(tmp_path):
    tasks = [{"id": 1, "data": {"text": "x"}, "annotations": []},
             {"id": 2, "data": {"text": "y"}, "annotations": [dict(_ann(2, []), was_cancelled=True)]}]
    with pytest.raises(ExportError, match="has no completed annotations; nothing exported"):
        _simple(tmp_path, tasks)
    assert list((tmp_path / "simple").iterdir()) == []
    with pytest.raises(ExportError, match="nothing exported"):
        _simple(tmp_path, [])


def test_offset_mismatch_relocated_or_dropped(tmp_path):
    text = "Asthma. Later, asthma and gout."
    task = {"id": 1, "data": {"text": text}, "annotations": [_ann(1, [
        _span(16, 22, "asthma"),            # off by one: relocated to the nearest 'asthma' (15)
        _span(0, 5, "diabetes"),            # text not in the document: dropped
        _span(26, 80, "gout."),             # end outside the text: relocated to 26..31
        _span(40, 50, "x"),                 # outside, text absent: dropped
    ])]}
    r = _simple(tmp_path, [task])
    (rec,) = read_jsonl(r.version_dir / "data.jsonl")
    assert [(s["start"], s["end"], s["text"]) for s in rec["spans"]] == [(15, 21, "asthma"), (26, 31, "gout.")]
    counts = r.manifest["problem_counts"]
    assert counts == {"offset_relocated": 2, "offset_mismatch": 1, "offset_out_of_range": 1}
    problems = list(read_jsonl(r.version_dir / "problems.jsonl"))
    assert len(problems) == 4 and all(p["task_id"] == 1 and p["annotation_id"] == 1 for p in problems)


def test_unknown_labels_and_controls_dropped(tmp_path):
    task = {"id": 1, "data": {"text": "Gout and asthma."}, "annotations": [_ann(1, [
        _span(0, 4, "Gout", label="Gene"),
        _span(9, 15, "asthma"),
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["angry"]}},
        {"from_name": "mood", "to_name": "text", "type": "choices", "value": {"choices": ["x"]}},
    ])]}
    r = _simple(tmp_path, [task])
    (rec,) = read_jsonl(r.version_dir / "data.jsonl")
    assert [s["label"] for s in rec["spans"]] == ["Disease"]
    assert rec["choices"] == {"sentiment": []}
    assert r.manifest["problem_counts"] == {"unknown_control": 1, "unknown_label": 2}


def test_overlapping_spans_kept_in_jsonl_resolved_in_bio(tmp_path):
    text = "breast cancer gene"
    task = {"id": 1, "data": {"text": text}, "annotations": [_ann(1, [
        _span(0, 13, "breast cancer"), _span(7, 13, "cancer", "Drug"), _span(0, 6, "breast", "Drug")])]}
    r = _simple(tmp_path, [task])
    (rec,) = read_jsonl(r.version_dir / "data.jsonl")
    assert len(rec["spans"]) == 3
    (tokens, tags), = read_conll(r.version_dir / "conll" / f"{split_of(1)}.conll")
    assert bio_to_spans(tokens, tags, text) == [(0, 13, "Disease")]
    assert r.manifest["counts"]["overlaps_dropped_in_bio"] == {"entities": 2}


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    task = {"id": 1, "data": {"text": "Gout."}, "annotations": [_ann(1, [])]}
    with pytest.raises(ExportError, match="cannot write exports"):
        _simple(blocker / "exports", [task])


def test_bad_arguments_and_bad_tasks(tmp_path):
    task = {"id": 1, "data": {"text": "Gout."}, "annotations": [_ann(1, [_span(0, 4, "Gout")])]}
    with pytest.raises(ExportError, match="formats"):
        _simple(tmp_path, [task], formats=("xlsx",))
    with pytest.raises(ExportError, match="resolve"):
        _simple(tmp_path, [task], resolve="vote")
    bad = ["not a task", {"id": "x", "data": {"text": "a"}}, {"id": 2, "data": {}, "annotations": [_ann(2, [])]},
           {"id": 3, "data": {"text": "a"}, "annotations": [_ann(3, "oops")]}]
    r = _simple(tmp_path, [*bad, task])
    assert r.manifest["counts"]["documents"] == 1
    assert r.manifest["counts"]["skipped_tasks"] == {"bad_task": 2, "missing_text": 1, "no_usable_annotations": 1}


def test_unpaired_surrogates_skip_the_task_or_stay_escaped(tmp_path):
    # a JSON "\ud800" escape decodes to a str that no UTF-8 file can hold
    lone = json.loads('"\\ud800"')
    bad_text = {"id": 1, "data": {"text": f"Gout {lone}."}, "annotations": [_ann(1, [_span(0, 4, "Gout")])]}
    bad_meta = {"id": 2, "data": {"text": "Gout.", "note": f"x{lone}"}, "annotations": [_ann(2, [_span(0, 4, "Gout")])]}
    r = _simple(tmp_path, [bad_text, bad_meta])
    assert r.manifest["counts"]["skipped_tasks"] == {"invalid_text": 1}
    assert [(p["task_id"], p["kind"]) for p in r.manifest["problems"]] == [(1, "invalid_text")]
    (rec,) = read_jsonl(r.version_dir / "data.jsonl")
    assert rec["id"] == 2 and rec["data"]["note"] == f"x{lone}"  # written as a \u escape, read back the same


def test_jsonl_values_equal_the_standard_library():
    from server.export import _json_line

    values = [{"text": "Ünïcode 中文 \u2028 \"q\" \\ \n\t", "n": [0, -1, 2**63 - 1], "f": [0.1, 1e-05, 1e16, -0.0]},
              {"big": 2**70}, {1: "int key"}, [None, True, False, {}, []]]
    for v in values:
        line = _json_line(v)
        assert line.endswith(b"\n") and line.count(b"\n") == 1  # one record per line, whatever the text holds
        assert json.loads(line) == json.loads(json.dumps(v))


def test_whitespace_in_spans_is_trimmed(tmp_path):
    text = "Patient has gout today."
    task = {"id": 1, "data": {"text": text}, "annotations": [_ann(1, [_span(11, 17, " gout ")])]}
    r = _simple(tmp_path, [task])
    (rec,) = read_jsonl(r.version_dir / "data.jsonl")
    assert (rec["spans"][0]["start"], rec["spans"][0]["end"]) == (12, 16)
    assert r.manifest["counts"]["spans_whitespace_trimmed"] == 1


# ---------------------------------------------------------------------------------------- policies
def test_resolution_policies(tmp_path, fixture_xml, fixture_tasks):
    spec = parse_label_config(fixture_xml)
    project = ProjectInfo(7, "fx", "Fixture", fixture_xml)
    gt = export_dataset(fixture_tasks, spec, project, tmp_path, formats=("jsonl",), resolve="ground-truth")
    assert gt.manifest["resolution"]["ground_truth_fallbacks"] == 14
    assert gt.manifest["problem_counts"] == {"no_ground_truth": 14}
    gt_task = next(t for t in fixture_tasks if any(a["ground_truth"] for a in t["annotations"]))
    rec = next(r for r in read_jsonl(gt.version_dir / "data.jsonl") if r["id"] == gt_task["id"])
    marked = next(a for a in gt_task["annotations"] if a["ground_truth"])
    topic = next(r["value"]["choices"] for r in marked["result"] if r["from_name"] == "topic")
    assert rec["choices"]["topic"] == topic
    latest = export_dataset(fixture_tasks, spec, project, tmp_path, formats=("jsonl",), resolve="latest")
    for rec in read_jsonl(latest.version_dir / "data.jsonl"):
        task = next(t for t in fixture_tasks if t["id"] == rec["id"])
        want = next(r["value"]["choices"] for r in _latest(task)["result"] if r["from_name"] == "topic")
        assert rec["choices"]["topic"] == want


def test_only_reviewed(tmp_path):
    def task(i, **kw):
        return {"id": i, "data": {"text": "Gout."}, "annotations": [_ann(i, [_span(0, 4, "Gout")], **kw)]}

    tasks = [task(1, reviews=[{"accepted": True}]), task(2, reviews=[{"accepted": False}]),
             task(3, ground_truth=True), task(4)]
    r = _simple(tmp_path, tasks, only_reviewed=True, formats=("jsonl",))
    assert [rec["id"] for rec in read_jsonl(r.version_dir / "data.jsonl")] == [1, 3]
    assert r.manifest["counts"]["skipped_tasks"] == {"not_reviewed": 2}
    with pytest.raises(ExportError, match="no reviewed annotations"):
        _simple(tmp_path / "other", [task(2), task(4)], only_reviewed=True)


def test_check_labels_without_choices_is_noted(tmp_path):
    xml = '<View><Labels name="ents" toName="t"><Label value="X"/></Labels><Text name="t" value="$body"/></View>'
    task = {"id": 1, "data": {"body": "X marks."}, "annotations": [_ann(1, [_span(0, 1, "X", "X", "ents")])]}
    r = export_dataset([task], parse_label_config(xml), ProjectInfo(1, "p", "P", xml), tmp_path, check_labels=True)
    assert not (r.version_dir / "suspect_labels.jsonl").exists()
    assert not (r.version_dir / "data.csv").exists()
    assert "no Choices control" in r.manifest["check_labels"][0]
    assert (r.version_dir / "conll" / f"{split_of(1)}.conll").read_text().count("B-X") == 1


def test_multiple_span_controls_get_own_conll_dirs(tmp_path):
    xml = """<View><Labels name="ents" toName="t"><Label value="X"/></Labels>
      <Labels name="roles" toName="t"><Label value="R"/></Labels><Text name="t" value="$text"/></View>"""
    task = {"id": 1, "data": {"text": "X marks the spot."}, "annotations": [_ann(1, [
        _span(0, 1, "X", "X", "ents"), _span(0, 7, "X marks", "R", "roles")])]}
    r = export_dataset([task], parse_label_config(xml), ProjectInfo(1, "p", "P", xml), tmp_path)
    sp = split_of(1)
    for name, want in (("ents", [(0, 1, "X")]), ("roles", [(0, 7, "R")])):
        (tokens, tags), = read_conll(r.version_dir / "conll" / name / f"{sp}.conll")
        assert bio_to_spans(tokens, tags, "X marks the spot.") == want
    assert r.manifest["formats"]["conll"]["ents"][sp] == f"conll/ents/{sp}.conll"


def test_export_is_importable_without_heavy_modules():
    code = "import sys, server.export; print(any(m in sys.modules for m in ('datasets', 'sklearn', 'cleanlab')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
