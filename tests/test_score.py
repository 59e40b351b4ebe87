"""`goldloop score`: lenient parsing, alignment by text, the loop's metrics, exact counts on a perturbed file."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from server.cli import main
from server.errors import ScoreError
from server.score import align_entities, parse_answer, score_predictions
from tests.plugins.export import ann, simple_export, span
from tests.plugins.label_studio import one_line_error, write_jsonl

WORDS = ["asthma", "aspirin", "flu", "ibuprofen", "gout"]


def task(i: int) -> dict:
    text = f"Case {i}: {WORDS[i % 5]} and {WORDS[(i + 1) % 5]} seen. {WORDS[i % 5]} again."
    a, b = text.index(WORDS[i % 5]), text.index(WORDS[(i + 1) % 5], text.index(" and "))
    result = [span(a, a + len(WORDS[i % 5]), WORDS[i % 5], "Drug" if i % 2 else "Disease"),
              span(b, b + len(WORDS[(i + 1) % 5]), WORDS[(i + 1) % 5], "Disease"),
              {"from_name": "sentiment", "to_name": "text", "type": "choices",
               "value": {"choices": ["positive" if i % 3 else "negative"]}}]
    return {"id": i, "data": {"text": text}, "annotations": [ann(100 + i, result)]}


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return simple_export(tmp_path_factory.mktemp("score"), [task(i) for i in range(1, 41)], formats=["chat"]).version_dir


def answers(export_dir, split="test") -> list[dict]:
    rows = [json.loads(ln) for ln in (export_dir / "chat" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    return [{"id": r["id"], "output": r["messages"][2]["content"]} for r in rows]


def test_parse_answer_is_lenient():
    obj = {"entities": [{"text": "x", "label": "Drug"}], "sentiment": "positive"}
    raw = json.dumps(obj)
    assert parse_answer(raw) == obj and parse_answer(obj) == obj
    assert parse_answer(f"Here you go:\n```json\n{raw}\n```\nAnything else?") == obj
    assert parse_answer(f"The answer is {raw} as asked.") == obj
    assert parse_answer("{not json} then " + raw) == obj
    assert parse_answer("no JSON here") is None and parse_answer("[1, 2]") is None and parse_answer(None) is None


def test_alignment_takes_the_first_unused_occurrence():
    counts: Counter = Counter()
    text = "flu, then flu, then gout"
    got = align_entities(text, [{"text": "flu", "label": "A"}, {"text": "flu", "label": "A"}, {"text": "cold", "label": "A"},
                                {"text": 3}, "flu"], counts)
    assert got[:2] == [(0, 3, "A"), (10, 13, "A")] and got[2][0] < 0
    assert counts == {"entities_not_found": 1, "malformed_entities": 2}


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_gold_answers_score_one_everywhere(export_dir, tmp_path, split):
    res = score_predictions(export_dir, write_jsonl(tmp_path / "p.jsonl", answers(export_dir, split)), split)
    assert res["counts"]["examples"] > 0 and res["counts"]["missing"] == 0
    m = res["spans"]["entities"]
    assert m["entity_f1"] == m["precision"] == m["recall"] == m["macro_f1"] == 1.0
    assert all(v["f1"] == 1.0 for v in m["per_label"].values())
    c = res["choices"]["sentiment"]
    assert c["accuracy"] == c["macro_f1"] == 1.0
    # the gold answer names "asthma" etc. twice in some texts but labels the first: alignment keeps the offsets
    assert res["counts"]["gold_entities_realigned"] == 0


def test_perturbed_predictions_give_the_expected_counts(export_dir, tmp_path):
    preds = answers(export_dir)
    assert len(preds) >= 4
    gold = [json.loads(p["output"]) for p in preds]
    n_gold = sum(len(g["entities"]) for g in gold)
    dropped, swapped, broken, invented = (json.loads(p["output"]) for p in preds[:4])
    dropped["entities"].pop()
    ent = swapped["entities"][0]
    ent["label"] = "Drug" if ent["label"] == "Disease" else "Disease"
    invented["entities"].append({"text": "not in the document", "label": "Drug"})
    lines = [{"id": preds[0]["id"], "output": f"```json\n{json.dumps(dropped)}\n```"},
             {"id": preds[1]["id"], "output": "Sure! " + json.dumps(swapped)},
             '{"id": ' + json.dumps(preds[2]["id"]) + ', "output": "unterminated',  # an unparseable line
             {"id": preds[3]["id"], "output": json.dumps(invented)}, *preds[4:]]
    res = score_predictions(export_dir, write_jsonl(tmp_path / "p.jsonl", lines), "test")
    c = res["counts"]
    assert (c["unparseable_lines"], c["missing"], c["entities_not_found"], c["unparseable_outputs"]) == (1, 1, 1, 0)
    assert c["predictions"] == len(preds) - 1 and c["examples"] == len(preds)
    m = res["spans"]["entities"]
    lost = len(gold[2]["entities"])
    assert m["n_gold"] == n_gold
    assert m["n_correct"] == n_gold - 1 - 1 - lost  # dropped, swapped, the unparseable document's
    assert m["n_pred"] == n_gold - 1 - lost + 1  # less the dropped and the lost ones, plus the invented one
    assert res["choices"]["sentiment"]["accuracy"] == pytest.approx((len(preds) - 1) / len(preds))


def test_cli_json_markdown_and_errors(export_dir, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", answers(export_dir))
    out = CliRunner().invoke(main, ["score", str(export_dir), str(path), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["spans"]["entities"]["entity_f1"] == 1.0
    md = CliRunner().invoke(main, ["score", str(export_dir), str(path), "--split", "test"])
    assert md.exit_code == 0 and "| **micro** | 1.000 | 1.000 | 1.000 |" in md.output
    assert "not a goldloop export" in one_line_error(CliRunner().invoke(main, ["score", str(tmp_path), str(path)]))
    plain = simple_export(tmp_path / "plain", [task(1)], formats=["jsonl"]).version_dir
    assert "--format chat" in one_line_error(CliRunner().invoke(main, ["score", str(plain), str(path), "--split", "train"]))
    with pytest.raises(ScoreError):
        score_predictions(export_dir, tmp_path / "missing.jsonl")
