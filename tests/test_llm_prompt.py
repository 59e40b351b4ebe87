"""server/llm/prompt.py: the prompt from the labeling config (hints, instructions, schema), TF-IDF few-shot gold,
the prompt hash; server/cli_llm.py's errors are one line."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ml_backend.schema import parse_label_config
from server.cli import main
from server.llm.evaluate import AnswerModel, model_version
from server.llm.prompt import FewShot, PromptBuilder, answer_schema
from server.llm.provider import LLMError

CONFIG = """<View><Text name="text" value="$text"/>
<Labels name="entities" toName="text"><Label value="Company" hint="a listed company"/><Label value="Person"/></Labels>
<Choices name="sentiment" toName="text" choice="multiple"><Choice value="Bullish" hint="good for the stock"/><Choice value="Bearish"/></Choices>
</View>"""
SPEC = parse_label_config(CONFIG)
TRAIN = [
    {"id": 1, "text": "Apple shares rise as Tim Cook unveils the iPhone", "choices": {"sentiment": ["Bullish"]},
     "spans": [{"start": 0, "end": 5, "label": "Company", "from_name": "entities"}, {"start": 21, "end": 29, "label": "Person", "from_name": "entities"}]},
    {"id": 2, "text": "Oil tanker collides off the coast", "choices": {"sentiment": ["Bearish"]}, "spans": []},
    {"id": 3, "text": "Central bank holds rates", "choices": {"sentiment": []}, "spans": []},
]


def test_schema_constrains_labels_and_choices():
    schema = answer_schema(SPEC)
    assert schema["required"] == ["entities", "sentiment"]
    assert schema["properties"]["entities"]["items"]["properties"]["label"]["enum"] == ["Company", "Person"]
    assert schema["properties"]["sentiment"] == {"type": "array", "items": {"type": "string", "enum": ["Bullish", "Bearish"]}}


def test_prompt_holds_hints_instructions_schema_and_similar_gold_examples():
    b = PromptBuilder.for_project(SPEC, CONFIG, TRAIN, k=1, expert_instruction="<p>Mark <b>listed</b> companies only.</p>")
    msgs = b.messages("Apple stock rises after the iPhone launch")
    system = msgs[0]["content"]
    assert "a listed company" in system and "good for the stock" in system  # Label Studio's hint attributes
    assert "Mark listed companies only." in system and "<b>" not in system  # the project's instructions, tags dropped
    assert json.dumps(b.schema, ensure_ascii=False) in system  # for servers that ignore response_format
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert "Apple shares rise" in msgs[1]["content"]  # the most similar gold document is the example
    assert json.loads(msgs[2]["content"]) == {"entities": [{"text": "Apple", "label": "Company"}, {"text": "Tim Cook", "label": "Person"}],
                                              "sentiment": ["Bullish"]}
    assert msgs[-1]["content"].endswith("Apple stock rises after the iPhone launch")


def test_few_shot_leaves_the_document_itself_out_and_k_zero_has_none():
    shots = FewShot(SPEC, TRAIN, k=2).pick(TRAIN[0]["text"])
    assert TRAIN[0] not in shots and len(shots) == 2
    assert len(PromptBuilder.for_project(SPEC, CONFIG, TRAIN, k=0).messages("x")) == 2


def test_prompt_hash_names_the_prompt_not_the_examples():
    a = PromptBuilder.for_project(SPEC, CONFIG, TRAIN, k=2)
    assert a.hash == PromptBuilder.for_project(SPEC, CONFIG, TRAIN[:1], k=2).hash  # new gold keeps cache and trust
    assert a.hash != PromptBuilder.for_project(SPEC, CONFIG, TRAIN, k=3).hash
    assert a.hash != PromptBuilder.for_project(SPEC, CONFIG, TRAIN, k=2, expert_instruction="Be strict.").hash
    assert model_version("org/Model:7b", a.hash) == f"llm-org-Model-7b-{a.hash[:8]}"


def test_a_config_reading_two_text_fields_is_refused():
    two = parse_label_config("""<View><Text name="a" value="$title"/><Text name="b" value="$body"/>
      <Choices name="c" toName="a"><Choice value="x"/></Choices><Labels name="l" toName="b"><Label value="y"/></Labels></View>""")
    with pytest.raises(LLMError, match="one text field"):
        PromptBuilder.for_project(two, "<View/>")


def test_answer_model_gives_evaluate_models_what_a_model_would():
    answers = {"t": {"entities": [(0, 1, "Company")], "sentiment": ["Bullish"]}}
    spans = AnswerModel(SPEC.control("entities"), answers).predict(["t", "unanswered"])
    assert [s.key() for s in spans[0].spans] == [(0, 1, "Company")] and spans[1].spans == []
    probs = AnswerModel(SPEC.control("sentiment"), answers).predict(["t"])[0].probs
    assert probs == {"Bullish": 1.0, "Bearish": 0.0}


def test_llm_commands_fail_in_one_line_without_a_server(tmp_path):
    env = {"GOLDLOOP_LLM_URL": "", "GOLDLOOP_LLM_MODEL": "", "GOLDLOOP_LLM_API_KEY": "sk-hidden"}
    for cmd in ("eval", "label"):
        res = CliRunner().invoke(main, ["llm", cmd, "1", "--data-dir", str(tmp_path)], env=env)
        lines = [ln for ln in res.output.strip().splitlines() if ln]
        assert res.exit_code == 1 and len(lines) == 1 and "GOLDLOOP_LLM_URL" in lines[0] and "Traceback" not in res.output
    help_text = CliRunner().invoke(main, ["llm", "label", "--help"]).output
    assert "--force" in help_text and "--few-shot" in help_text and "--token-budget" in help_text
