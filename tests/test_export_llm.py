"""The LLM formats: chat, instruction and preference files, their answers, templates, chunks and the manifest."""
from __future__ import annotations

import json

import pytest

from ml_backend.schema import parse_label_config
from server.errors import ExportError
from server.export import ExportOptions, ProjectInfo, build_prompt, export_dataset
from server.export.prompts import DEFAULT_TEMPLATES, task_kind
from tests.plugins.export import SIMPLE_XML, ann, simple_export, span

LLM = ("chat", "instruction", "preference")
TEXT_EN = "Aspirin treats migraine. Migraine is common. Aspirin again."
TEXT_ZH = "阿司匹林可以治疗偏头痛。偏头痛很常见。"


def choice(label: str) -> dict:
    return {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}


def tasks() -> list[dict]:
    """Three documents: a human one (English), an accepted pre-annotation (Chinese), a changed one (English)."""
    gold_en = [span(0, 7, "Aspirin", "Drug"), span(15, 23, "migraine"), span(25, 33, "Migraine"), choice("positive")]
    pred_changed = [span(0, 7, "Aspirin", "Disease"), choice("negative")]
    gold_zh = [span(0, 4, "阿司匹林", "Drug"), span(7, 10, "偏头痛"), choice("negative")]
    return [
        {"id": 1, "data": {"text": TEXT_EN}, "annotations": [ann(11, gold_en)], "predictions": []},
        {"id": 2, "data": {"text": TEXT_ZH}, "annotations": [ann(12, gold_zh, parent_prediction=52)],
         "predictions": [{"id": 52, "model_version": "v1", "result": gold_zh}]},
        {"id": 3, "data": {"text": TEXT_EN}, "annotations": [ann(13, gold_en, parent_prediction=53)],
         "predictions": [{"id": 53, "model_version": "v1", "result": pred_changed}]},
    ]


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_lines(version_dir, kind: str) -> list[dict]:
    return [r for sp in ("train", "dev", "test") for r in read_lines(version_dir / kind / f"{sp}.jsonl")]


@pytest.fixture
def llm_export(tmp_path):
    return simple_export(tmp_path, tasks(), formats=["jsonl", *LLM])


def test_chat_instruction_and_preference_files(llm_export):
    d = llm_export.version_dir
    chat = {r["id"]: r for r in all_lines(d, "chat")}
    assert set(chat) == {1, 2, 3}
    answer = {"entities": [{"text": "Aspirin", "label": "Drug"}, {"text": "migraine", "label": "Disease"},
                           {"text": "Migraine", "label": "Disease"}], "sentiment": "positive"}
    for r in chat.values():
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
        assert r["messages"][1]["content"].endswith("Document:\n" + (TEXT_ZH if r["id"] == 2 else TEXT_EN))
    assert json.loads(chat[1]["messages"][2]["content"]) == answer
    assert json.loads(chat[2]["messages"][2]["content"]) == {
        "entities": [{"text": "阿司匹林", "label": "Drug"}, {"text": "偏头痛", "label": "Disease"}], "sentiment": "negative"}
    assert "阿司匹林" in (d / "chat" / f"{chat[2]['split']}.jsonl").read_text(encoding="utf-8")  # UTF-8, not \u escapes
    inst = {r["id"]: r for r in all_lines(d, "instruction")}
    for i, r in inst.items():
        assert r["output"] == chat[i]["messages"][2]["content"]
        assert chat[i]["messages"][1]["content"] == f"{r['instruction']}\n\nDocument:\n{r['input']}"
    [pref] = all_lines(d, "preference")  # only the document whose annotator changed the pre-annotation
    assert pref["id"] == 3 and pref["model_version"] == "v1" and pref["prompt"] == chat[3]["messages"][1]["content"]
    assert json.loads(pref["chosen"]) == answer
    assert json.loads(pref["rejected"]) == {"entities": [{"text": "Aspirin", "label": "Disease"}], "sentiment": "negative"}


def test_manifest_counts_template_and_tokens(llm_export):
    m = llm_export.manifest
    llm = m["llm"]
    assert llm["template"]["source"] == "default:spans+choices" and len(llm["template"]["sha256"]) == 64
    assert llm["max_tokens"] == 2048 and llm["tokenizer"]
    assert sum(c["examples"] for c in llm["per_split"].values()) == 3
    assert sum(c["preference_pairs"] for c in llm["per_split"].values()) == 1
    assert all(c["tokens"] > 0 for c in llm["per_split"].values() if c["examples"])
    assert m["formats"]["chat"] == {sp: f"chat/{sp}.jsonl" for sp in ("train", "dev", "test")}
    for sp in ("train", "dev", "test"):
        assert f"chat/{sp}.jsonl" in m["files"] and f"gold/{sp}.jsonl" in m["files"]
    sheet = (llm_export.version_dir / "README.md").read_text(encoding="utf-8")
    assert "## LLM fine-tuning files" in sheet and llm["template"]["sha256"] in sheet


def test_existing_formats_keep_their_bytes(tmp_path, llm_export):
    plain = simple_export(tmp_path / "plain", tasks(), formats=["jsonl"])
    assert (plain.version_dir / "data.jsonl").read_bytes() == (llm_export.version_dir / "data.jsonl").read_bytes()
    assert "llm" not in plain.manifest and "chat" not in plain.manifest["formats"]
    assert set(plain.manifest["options"]) == {"formats", "resolve", "only_reviewed", "check_labels"}


def test_long_documents_become_chunks_with_their_own_answers(tmp_path):
    text = " ".join(f"Patient {i} took aspirin for migraine." for i in range(40))
    spans = [span(text.index(f"Patient {i} "), text.index(f"Patient {i} ") + len(f"Patient {i}"), f"Patient {i}", "Drug")
             for i in range(40)]
    r = simple_export(tmp_path, [{"id": 9, "data": {"text": text}, "annotations": [ann(1, spans)]}], formats=["chat"],
                      max_tokens=64)
    chat = all_lines(r.version_dir, "chat")
    assert len(chat) > 3 and [c["id"] for c in chat] == [f"9-{n}" for n in range(len(chat))]
    got = [e["text"] for c in chat for e in json.loads(c["messages"][2]["content"])["entities"]]
    assert got == [f"Patient {i}" for i in range(40)]
    counts = r.manifest["llm"]["per_split"]
    assert sum(c["chunked_documents"] for c in counts.values()) == 1
    assert sum(c["examples"] for c in counts.values()) == len(chat)


def test_default_template_per_kind_and_a_template_file(tmp_path):
    xml = """<View><Labels name="ner" toName="t" hint="Mark clinical terms."><Label value="Drug" hint="a medicine"/>
      <Label value="Disease" alias="Dx"/></Labels><Text name="t" value="$text"/></View>"""
    spec = parse_label_config(xml)
    assert task_kind(spec) == "spans" and set(DEFAULT_TEMPLATES) == {"spans", "choices", "spans+choices"}
    p = build_prompt(spec, xml)
    assert p.source == "default:spans" and "Mark clinical terms." in p.instruction
    assert "- Drug: a medicine" in p.instruction and "- Disease (also: Dx)" in p.instruction
    tpl = tmp_path / "custom.prompt.md"
    tpl.write_text("Find {% for c in span_controls %}{{ c.labels | map(attribute='value') | join('/') }}{% endfor %}.")
    custom = build_prompt(spec, xml, tpl)
    assert custom.instruction == "Find Drug/Disease." and custom.source == "custom.prompt.md" and custom.sha256 != p.sha256
    r = export_dataset(tasks()[:1], parse_label_config(SIMPLE_XML), ProjectInfo(3, "simple", "Simple", SIMPLE_XML),
                       ExportOptions(tmp_path / "out", formats=["instruction"], template=tpl))
    assert {row["instruction"] for row in all_lines(r.version_dir, "instruction")} == {"Find Disease/Drug."}  # its labels
    assert r.manifest["llm"]["template"]["source"] == "custom.prompt.md"


def test_bad_template_and_options_are_export_errors(tmp_path):
    bad = tmp_path / "bad.prompt.md"
    bad.write_text("{{ nothing_like_this }}")
    with pytest.raises(ExportError, match="does not render"):
        simple_export(tmp_path, tasks(), formats=["chat"], template=bad)
    with pytest.raises(ExportError, match="max-tokens"):
        simple_export(tmp_path, tasks(), formats=["chat"], max_tokens=2)
    with pytest.raises(ExportError, match="tokenizer"):
        simple_export(tmp_path, tasks(), formats=["chat"], tokenizer=str(tmp_path / "no-such-tokenizer"))
