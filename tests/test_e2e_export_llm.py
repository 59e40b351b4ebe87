"""End to end: a real Label Studio project (English and Chinese spans, a Choices control, a human-changed
pre-annotation) exported to the chat, instruction and preference formats, and scored back with `goldloop score`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from server import ls_client
from tests.plugins.label_studio import goldloop, write_jsonl

pytestmark = pytest.mark.e2e
CONFIG = """<View>
  <Labels name="entities" toName="text"><Label value="Drug"/><Label value="Disease" hint="an illness"/></Labels>
  <Text name="text" value="$text"/>
  <Choices name="urgency" toName="text" choice="single"><Choice value="routine"/><Choice value="urgent"/></Choices>
</View>"""
EN = [("aspirin", "migraine"), ("ibuprofen", "arthritis"), ("metformin", "diabetes"), ("insulin", "diabetes"),
      ("warfarin", "thrombosis"), ("amoxicillin", "pneumonia"), ("heparin", "embolism"), ("codeine", "cough"),
      ("salbutamol", "asthma"), ("lisinopril", "hypertension")]
ZH = [("阿司匹林", "偏头痛"), ("布洛芬", "关节炎"), ("二甲双胍", "糖尿病"), ("胰岛素", "糖尿病"), ("华法林", "血栓"),
      ("阿莫西林", "肺炎")]


def documents() -> list[tuple[str, list[tuple[int, int, str]], str]]:
    docs = []
    for i, (drug, disease) in enumerate(EN):
        text = f"Patient {i} with {disease} was given {drug}. The {disease} improved within a week."
        a, b = text.index(disease), text.index(drug)
        docs.append((text, [(a, a + len(disease), "Disease"), (b, b + len(drug), "Drug")], "urgent" if i % 3 == 0 else "routine"))
    for i, (drug, disease) in enumerate(ZH):
        text = f"患者{i}患有{disease}，服用{drug}后好转。{disease}未复发。"
        a, b = text.index(disease), text.index(drug)
        docs.append((text, [(a, a + len(disease), "Disease"), (b, b + len(drug), "Drug")], "urgent" if i % 2 else "routine"))
    return docs


def result(text: str, spans, urgency: str) -> list[dict]:
    items = [{"from_name": "entities", "to_name": "text", "type": "labels",
              "value": {"start": a, "end": b, "text": text[a:b], "labels": [lbl]}} for a, b, lbl in spans]
    return items + [{"from_name": "urgency", "to_name": "text", "type": "choices", "value": {"choices": [urgency]}}]


def lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines()]


def test_llm_exports_of_a_real_project_score_back(label_studio, tmp_path):
    client = label_studio.client()
    project = client.projects.create(title="LLM gold", label_config=CONFIG)
    pid = int(project.id)
    docs = documents()
    client.projects.import_tasks(id=pid, request=[{"text": t} for t, _, _ in docs])
    tasks = sorted(ls_client.iter_tasks(client, pid), key=lambda t: t["id"])
    assert len(tasks) == len(docs)
    by_text = {t: (s, u) for t, s, u in docs}
    # the model pre-annotated the first English document and labeled the drug a disease; the annotator fixed it
    changed = tasks[0]
    changed_text = changed["data"]["text"]
    spans, urgency = by_text[changed_text]
    wrong = [(a, b, "Disease") for a, b, _ in spans]
    [pred_id] = ls_client.create_predictions(client, [{"task": changed["id"], "result": result(changed_text, wrong, "routine"),
                                                        "score": 0.4, "model_version": "model-v1"}])
    client.annotations.create(id=changed["id"], result=result(changed_text, spans, urgency), parent_prediction=pred_id)
    for t in tasks[1:]:
        ls_client.create_annotation(client, t["id"], result(t["data"]["text"], *by_text[t["data"]["text"]]))

    out = goldloop("export", str(pid), "--format", "jsonl,chat,instruction,preference", "--out", str(tmp_path / "exports"),
                   home=label_studio.settings.home)
    version_dir = Path(next(ln.split("version: ", 1)[1] for ln in out.stdout.splitlines() if ln.startswith("version: ")))
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["counts"]["origin"]["human_changed"] == 1 and manifest["counts"]["documents"] == len(docs)

    chat = {r["id"]: r for sp in ("train", "dev", "test") for r in lines(version_dir / "chat" / f"{sp}.jsonl")}
    inst = {r["id"]: r for sp in ("train", "dev", "test") for r in lines(version_dir / "instruction" / f"{sp}.jsonl")}
    prefs = [r for sp in ("train", "dev", "test") for r in lines(version_dir / "preference" / f"{sp}.jsonl")]
    assert set(chat) == set(inst) == {t["id"] for t in tasks}
    for t in tasks:
        text = t["data"]["text"]
        spans, urgency = by_text[text]
        answer = json.loads(chat[t["id"]]["messages"][2]["content"])
        assert answer == {"entities": [{"text": text[a:b], "label": lbl} for a, b, lbl in sorted(spans)], "urgency": urgency}
        assert inst[t["id"]]["input"] == text and json.loads(inst[t["id"]]["output"]) == answer
        assert chat[t["id"]]["messages"][1]["content"].endswith(text)
    assert "an illness" in manifest["llm"]["instruction"]  # the label's hint from the labeling config
    [pref] = prefs
    assert pref["id"] == changed["id"] and pref["model_version"] == "model-v1"
    assert json.loads(pref["chosen"]) == json.loads(chat[changed["id"]]["messages"][2]["content"])
    assert json.loads(pref["rejected"])["entities"] == [{"text": changed_text[a:b], "label": "Disease"} for a, b, _ in sorted(wrong)]

    scored = {}
    for sp in ("train", "dev", "test"):
        answers = [{"id": r["id"], "output": r["messages"][2]["content"]} for r in lines(version_dir / "chat" / f"{sp}.jsonl")]
        if not answers:
            continue
        path = write_jsonl(tmp_path / f"{sp}.jsonl", answers)
        res = json.loads(goldloop("score", str(version_dir), str(path), "--split", sp, "--json", home=label_studio.settings.home,
                                  ).stdout)
        assert res["spans"]["entities"]["entity_f1"] == 1.0 and res["choices"]["urgency"]["accuracy"] == 1.0
        assert res["choices"]["urgency"]["macro_f1"] == 1.0
        scored[sp] = answers
    # a perturbed predictions file on the largest split: exact counts
    sp, answers = max(scored.items(), key=lambda kv: len(kv[1]))
    assert len(answers) >= 4
    gold = [json.loads(a["output"]) for a in answers]
    dropped, swapped, _, invented = (json.loads(a["output"]) for a in answers[:4])
    dropped["entities"].pop(0)
    swapped["entities"][0]["label"] = "Drug" if swapped["entities"][0]["label"] == "Disease" else "Disease"
    invented["entities"].append({"text": "no such drug", "label": "Drug"})
    perturbed = [{"id": answers[0]["id"], "output": json.dumps(dropped, ensure_ascii=False)},
                 {"id": answers[1]["id"], "output": "```json\n" + json.dumps(swapped, ensure_ascii=False) + "\n```"},
                 "this line is not JSON",
                 {"id": answers[3]["id"], "output": json.dumps(invented, ensure_ascii=False)}, *answers[4:]]
    path = write_jsonl(tmp_path / "perturbed.jsonl", perturbed)
    res = json.loads(goldloop("score", str(version_dir), str(path), "--split", sp, "--json", home=label_studio.settings.home).stdout)
    c, m = res["counts"], res["spans"]["entities"]
    n_gold, lost = sum(len(g["entities"]) for g in gold), len(gold[2]["entities"])
    assert (c["unparseable_lines"], c["missing"], c["entities_not_found"]) == (1, 1, 1)
    assert (m["n_gold"], m["n_correct"], m["n_pred"]) == (n_gold, n_gold - 2 - lost, n_gold - lost)
    assert res["choices"]["urgency"]["accuracy"] == pytest.approx((len(answers) - 1) / len(answers))
