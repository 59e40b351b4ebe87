"""server/starters: what `goldloop status` tells a person to run, what an import does for a missing or failed starter,
and a starter published before its project has any task (the whole sequence on a real stack: test_e2e_pretrain)."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from server import starters, stack, store
from server.config import DEFAULT_HOME, Settings
from tests.plugins.label_studio import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
NCBI = ROOT / "server" / "starters" / "medical_records" / "ncbi_disease.jsonl"
FAILED = "LoopError: the project has no documents to pre-annotate: import some first (goldloop import)"  # what `up` left before


def _projects(db) -> None:
    for pid, schema in ((1, "contracts"), (3, "medical_records"), (4, "financial_news")):
        store.upsert_project(db, id=pid, schema_name=schema, title=schema)


def _row(db, project_id: int, schema: str, status: str, **kw) -> None:
    db[starters.TABLE].create(starters.COLUMNS, pk="project_id", if_not_exists=True)
    db[starters.TABLE].upsert({"project_id": project_id, "schema": schema, "status": status, "started_at": time.time(), **kw}, pk="project_id",
                              alter=True)


def test_status_says_what_to_run_for_a_missing_failed_interrupted_or_switched_off_starter(settings):
    db = store.open_db(settings.data_dir.db_path)
    run = starters.run_command(settings)
    assert run == f"goldloop pretrain --starters --data-dir {settings.home}"  # not the default data dir: named
    assert starters.run_command(Settings(home=DEFAULT_HOME)) == "goldloop pretrain --starters"
    assert starters.status_line(db, 3, "medical_records", run) == f"starter not trained; run: {run}"
    assert starters.status_line(db, 1, "contracts", run) is None  # no starter set
    _row(db, 3, "medical_records", "failed", decision=FAILED, duration_s=0.4)
    assert starters.status_line(db, 3, "medical_records", run) == f"starter failed in 0 s — {FAILED}; run: {run}"
    _row(db, 3, "medical_records", "training", pid=2**22 + 12345)  # its process is gone
    assert starters.status_line(db, 3, "medical_records", run) == f"starter training was interrupted; run: {run}"
    _row(db, 3, "medical_records", "off", pid=None, decision=starters.OFF)
    assert starters.status_line(db, 3, "medical_records", run) == f"starter off ({starters.OFF}); run: {run}"
    # a trained version serves the project (its own labels): nothing to run, the starter would be skipped
    store.record_version(db, project_id=3, version="v9", status="promoted", started_at=time.time())
    _row(db, 3, "medical_records", "failed", decision=FAILED, duration_s=0.4)
    assert starters.status_line(db, 3, "medical_records", run) == f"starter failed in 0 s — {FAILED}"
    db[starters.TABLE].delete(3)
    assert starters.status_line(db, 3, "medical_records", run) is None


def test_up_with_the_starters_off_records_them_off_and_an_import_then_starts_nothing(settings):
    db = store.open_db(settings.data_dir.db_path)
    _projects(db)
    off = Settings(home=settings.home, starters=False)
    assert starters.start(off, db, [("contracts", 1), ("medical_records", 3)]) == "off"
    assert starters.state(db, 3)["status"] == "off" and starters.state(db, 1) is None
    assert starters.after_import(settings, db, 3) == ""  # the person switched them off: no process, no nagging
    assert starters.needed(settings, db, "medical_records", 3)  # `goldloop up` without --no-starters trains it
    assert store.list_processes(db, store.STARTERS) == []


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def running_stack(settings, tmp_path):
    """The data dir's stack as the store records it: a "Label Studio" answering /health and a "backend", both live."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    db = store.open_db(settings.data_dir.db_path)
    children = [stack.spawn([sys.executable, "-c", "import time; time.sleep(120)"], dict(os.environ), tmp_path / f"{n}.log", tmp_path)
                for n in ("ls", "be", "starters")]
    url = f"http://127.0.0.1:{server.server_address[1]}"
    store.record_process(db, store.LABEL_STUDIO, children[0].pid, server.server_address[1], url, str(tmp_path / "ls.log"), "ls")
    store.record_process(db, store.BACKEND, children[1].pid, 1, "http://127.0.0.1:1", str(tmp_path / "be.log"), "be")
    try:
        yield {"db": db, "server": server, "starters_pid": children[2].pid}
    finally:
        server.shutdown()
        for child in children:
            stack.stop_pid(child.pid)


def test_an_import_into_a_project_whose_starter_failed_or_is_missing_starts_the_training(settings, running_stack, monkeypatch):
    db = running_stack["db"]
    _projects(db)
    _row(db, 3, "medical_records", "failed", decision=FAILED, duration_s=0.4)  # what `up --no-samples` left before
    started = []
    monkeypatch.setattr(starters, "start_background", lambda s: started.append(s.home) or running_stack["starters_pid"])
    pid = running_stack["starters_pid"]
    line = starters.after_import(settings, db, 3)
    assert line == f"training financial_news, medical_records in the background (pid {pid}; goldloop status shows progress)"
    assert started == [settings.home] and [r["pid"] for r in store.list_processes(db, store.STARTERS)] == [pid]
    # the next imports while it trains start no second process: their tasks get the starter's predictions once promoted
    training = f"training in the background (pid {pid}; goldloop status shows progress): the new tasks get its pre-annotations once it is promoted"
    assert starters.after_import(settings, db, 4) == training
    _row(db, 3, "medical_records", "training", pid=pid)
    assert starters.after_import(settings, db, 3) == training
    assert len(started) == 1
    # done: a promoted starter (this key) or a project without a starter set needs nothing
    _row(db, 3, "medical_records", "promoted", pid=None, version="v1", key=starters.key("medical_records", settings.model))
    assert starters.after_import(settings, db, 3) == "" and starters.after_import(settings, db, 1) == ""
    # GOLDLOOP_STARTERS=0: nothing
    assert starters.after_import(Settings(home=settings.home, starters=False), db, 4) == ""


def test_an_import_without_the_running_stack_says_what_to_run(settings, running_stack, monkeypatch):
    db = running_stack["db"]
    _projects(db)
    monkeypatch.setattr(starters, "start_background", lambda s: pytest.fail("started without the stack it publishes to"))
    running_stack["server"].shutdown()  # Label Studio stops answering
    running_stack["server"].server_close()
    assert starters.after_import(settings, db, 4) == f"financial_news has no trained starter (missing); run: {starters.run_command(settings)}"
    _row(db, 4, "financial_news", "failed", decision=FAILED)
    assert "(failed); run: goldloop pretrain --starters" in starters.after_import(settings, db, 4)


@pytest.mark.e2e
def test_a_starter_is_published_into_a_project_without_tasks_and_reaches_the_tasks_imported_later(ls_projects, tmp_path):
    """No task, no error: the version is promoted (the registry serves it), and once documents arrive the tasks
    without its predictions get them (what the background process does after a promotion) and Label Studio names it."""
    from ml_backend.registry import Registry
    from ml_backend.training import TrainOptions
    from server import ls_client
    from server.importer import import_files
    from server.pretrain import pretrain

    _, s, db, client = ls_projects
    pid = store.get_project_by_name(db, "medical_records")["id"]
    assert ls_client.get_project(client, pid).task_number == 0
    maps = ["SpecificDisease=Disease", "DiseaseClass=Disease", "CompositeMention=Disease"]
    # the string matcher (below the fine-tuning threshold): the path is the one the real starter takes
    rec = pretrain(s, pid, [(NCBI, "entities")], maps, options=TrainOptions(cold_start_labels=10**6), limit=40, progress=False,
                   client=client)
    assert rec["status"] == "promoted" and rec["pool_docs"] == 0, rec
    assert "before the project had tasks" in rec["decision"]
    version = rec["version"]
    assert Registry(s.backend_settings()).current_version(str(pid)) == version

    docs = [json.loads(line) for line in NCBI.read_text(encoding="utf-8").splitlines()[100:106]]
    path = write_jsonl(tmp_path / "docs.jsonl", [{"text": d["text"]} for d in docs])
    outcome = import_files(client, s, db, pid, [path], mask_pii=False, pre_annotate=False, progress=False)
    assert len(outcome.task_ids) == len(docs)
    assert starters.pre_annotate_new(s, client, pid) == f"{len(docs)} task(s) imported meanwhile pre-annotated with {version}"
    tasks = list(ls_client.iter_tasks(client, pid))
    assert all([p["model_version"] for p in t["predictions"]] == [version] for t in tasks)
    assert any(p["result"] for t in tasks for p in t["predictions"])  # the matcher found diseases
    assert ls_client.get_project(client, pid).model_version == version
    assert starters.pre_annotate_new(s, client, pid).startswith("0 task(s)")  # never twice


ZH = ROOT / "server" / "starters" / "medical_records" / "zh"
CMEDQANER = Path("/work/shared/data/zh_cmedqaner")


def test_the_chinese_medical_starter_maps_cmedqaner_onto_the_schema_and_holds_train_questions_only():
    from ml_backend.schema import parse_label_config

    assert starters.languages("medical_records") == ["en", "zh"]
    man = starters.manifest("medical_records", "zh")
    assert man["language"] == "zh" and [s["split"] for s in man["sets"]] == ["train"]
    assert "Apache License" in (ZH / man["sets"][0]["licence_file"]).read_text()
    from server.records import build_records, parse_mapping

    spec = parse_label_config((ROOT / "schemas" / "medical_records.xml").read_text())
    labels = {lbl for c in spec.controls for lbl in c.labels}
    sources, maps = starters.inputs("medical_records", "zh")
    data = build_records(sources, spec, parse_mapping(maps, spec))  # what the background process trains on
    assert all(data.by_split[s] for s in ("train", "dev", "test")) and sum(map(len, data.by_split.values())) == 200
    assert sources == [(ZH / "zh_cmedqaner.jsonl", "entities")]
    assert maps == ["disease=Disease", "drug=Medication", "symptom=Symptom", "treatment=Procedure"]
    assert {m.split("=")[1] for m in maps} <= labels
    rows = [json.loads(line) for line in sources[0][0].read_text(encoding="utf-8").splitlines()]
    assert len(rows) == man["sets"][0]["documents"] == 200
    assert all(r["id"].startswith("zh_cmedqaner:cMedQANER_train_") for r in rows)  # never a test or dev question
    assert all(0 <= s["start"] < s["end"] <= len(r["text"]) for r in rows for s in r["spans"])
    assert {"disease", "symptom", "drug", "treatment"} <= {s["label"] for r in rows for s in r["spans"]}
    # adding a language leaves the English starter's key (its cached versions) as it was
    assert starters.key("medical_records", "m") != starters.key("medical_records", "m", "zh")
    if (CMEDQANER / "test.jsonl").is_file():
        held_out = {json.loads(line)["text"] for name in ("test.jsonl", "dev.jsonl")
                    for line in (CMEDQANER / name).read_text(encoding="utf-8").splitlines() if line.strip()}
        assert not held_out & {r["text"] for r in rows}


FIN_ZH = ROOT / "server" / "starters" / "financial_news" / "zh"
GSDSIMP = ROOT / "bench" / "data" / "zh_gsdsimp"


def test_the_chinese_financial_starter_maps_gsdsimp_onto_the_entities_labels_from_train_sentences_only():
    from ml_backend.schema import parse_label_config

    assert starters.languages("financial_news") == ["en", "zh"]
    man = starters.manifest("financial_news", "zh")
    assert man["language"] == "zh" and [(s["name"], s["split"], s["control"]) for s in man["sets"]] == [("zh_gsdsimp", "train", "entities")]
    spec = parse_label_config((ROOT / "schemas" / "financial_news.xml").read_text())
    assert set(man["sets"][0]["map"].values()) <= set(spec.control("entities").labels)  # Company, Person, Location
    licence = FIN_ZH / man["sets"][0]["licence_file"]
    assert licence.is_file() and "Attribution-ShareAlike 4.0" in licence.read_text() and "CC BY-SA 4.0" in man["sets"][0]["licence"]
    sources, maps = starters.inputs("financial_news", "zh")
    assert sources == [(FIN_ZH / "zh_gsdsimp.jsonl", "entities")] and maps == ["LOC=Location", "ORG=Company", "PER=Person"]
    rows = [json.loads(line) for line in sources[0][0].read_text(encoding="utf-8").splitlines()]
    assert len(rows) == man["sets"][0]["documents"] == 400 and all(r["id"].startswith("zh_gsdsimp:train-") for r in rows)
    assert all(0 <= s["start"] < s["end"] <= len(r["text"]) for r in rows for s in r["spans"])
    assert {s["label"] for r in rows for s in r["spans"]} == set(man["sets"][0]["map"])
    held_out = {json.loads(line)["text"] for line in (GSDSIMP / "test.jsonl").read_text(encoding="utf-8").splitlines()}
    assert not held_out & {r["text"] for r in rows}  # the benchmark's test sentences are never trained on


NOTE = "患者三天前出现发热、咳嗽，诊断为肺炎，给予阿莫西林口服。"


def test_the_starter_a_project_gets_is_chosen_by_its_documents_language(settings):
    db = store.open_db(settings.data_dir.db_path)
    _projects(db)
    assert starters.language_of("medical_records", [NOTE, "Aspirin 100 mg"]) == "zh"
    assert starters.language_of("medical_records", ["Patient presented with fever; started amoxicillin."]) == "en"
    assert starters.language_of("medical_records", []) == "en"  # no documents yet: the English starter
    assert starters.language_of("financial_news", [NOTE]) == "zh"  # its Chinese set (UniversalNER GSDSIMP)
    assert starters.language_of("contracts", [NOTE]) == "en"  # no starter set in any language
    # the English starter trained and promoted: cached for English documents, to be trained for Chinese ones
    _row(db, 3, "medical_records", "promoted", pid=None, version="v1", language="en",
         key=starters.key("medical_records", settings.model, "en"))
    assert starters.skip_reason(settings, db, "medical_records", 3, language="en") == "cached (promoted v1)"
    assert starters.skip_reason(settings, db, "medical_records", 3) == "cached (promoted v1)"  # as last trained
    assert starters.skip_reason(settings, db, "medical_records", 3, language="zh") == ""
    _row(db, 3, "medical_records", "promoted", pid=None, version="v2", language="zh",
         key=starters.key("medical_records", settings.model, "zh"))
    assert starters.skip_reason(settings, db, "medical_records", 3) == "cached (promoted v2)"  # `goldloop up` again: nothing
    assert starters.status_line(db, 3).startswith("starter promoted v2 (zh set)")
    assert starters.skip_reason(settings, db, "medical_records", 3, language="en") == ""


def test_chinese_notes_imported_into_a_project_with_the_english_starter_start_the_chinese_one(settings, running_stack, monkeypatch):
    db = running_stack["db"]
    _projects(db)
    for pid, schema in ((3, "medical_records"), (4, "financial_news")):
        _row(db, pid, schema, "promoted", pid=None, version="v1", language="en", key=starters.key(schema, settings.model, "en"))
    started = []
    monkeypatch.setattr(starters, "start_background", lambda s: started.append(s.home) or running_stack["starters_pid"])
    docs = {3: ["Patient presented with fever."]}
    monkeypatch.setattr(starters, "project_texts", lambda client, pid: docs[pid])  # what Label Studio holds
    assert starters.after_import(settings, db, 3, client=object()) == "" and started == []
    docs[3] = [NOTE] * 3
    line = starters.after_import(settings, db, 3, client=object())
    assert line == f"training medical_records in the background (pid {running_stack['starters_pid']}; goldloop status shows progress)"
    assert started == [settings.home]


def test_a_project_its_starter_served_rehearses_the_starters_training_documents_and_no_other_does(settings):
    from ml_backend.schema import parse_label_config

    db = store.open_db(settings.data_dir.db_path)
    _projects(db)
    spec = parse_label_config((ROOT / "schemas" / "financial_news.xml").read_text())
    assert starters.rehearsal_sets(db, 4, spec) == ({}, "no starter served this project")  # never trained
    _row(db, 4, "financial_news", "rejected", language="en")
    assert starters.rehearsal_sets(db, 4, spec)[0] == {}  # the project had a better model: the starter's data is not its own
    _row(db, 4, "financial_news", "promoted", language="en")
    sets, source = starters.rehearsal_sets(db, 4, spec)
    assert source == "starter financial_news (en)" and set(sets) == {"sentiment", "entities"}
    sources, maps = starters.inputs("financial_news")
    from server.records import build_records, parse_mapping

    train = build_records(sources, spec, parse_mapping(maps, spec)).by_split["train"]
    tweets = {r["text"] for r in train if "sentiment" in r["controls"]}
    assert set(sets["sentiment"].texts) == tweets and len(tweets) > 1000  # the train split only, every tweet of it
    assert {lbl for t in sets["sentiment"].targets for lbl in t} == {"positive", "negative", "neutral"}
    assert sets["entities"].texts and not set(sets["entities"].texts) & tweets  # each control its own documents
    _row(db, 4, "financial_news", "promoted", language="zh")
    assert set(starters.rehearsal_sets(db, 4, spec)[0]) == {"entities"}  # the Chinese set labels entities only
    shrunk = parse_label_config("""<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">
      <Choice value="positive"/><Choice value="negative"/></Choices></View>""")  # a schema edited since: no neutral
    sets, why = starters.rehearsal_sets(db, 4, shrunk)
    assert sets == {} and "does not fit the project's labels" in why
