"""server/llm/evaluate.py with a scripted server: a right answer set is trusted, a server that answers nothing is not,
and the newest decision is the one `goldloop llm label` reads."""
from __future__ import annotations

import json

import pytest

from server.llm.evaluate import run_llm_eval
from server.llm.trust import trusted
from server.llm.provider import LLMConfig, Provider
from server.project import Gold
from tests.plugins.llm import offline_project

CONFIG = """<View><Text name="text" value="$text"/>
<Labels name="entities" toName="text"><Label value="Company"/></Labels></View>"""
TEST = [("Apple and Google rose", [(0, 5), (10, 16)]), ("Shares of Nvidia fell", [(10, 16)])]


@pytest.fixture
def ctx(tmp_path):
    return offline_project(tmp_path, CONFIG)


def gold():
    test = [{"id": i, "text": t, "split": "test", "choices": {},
             "spans": [{"start": s, "end": e, "label": "Company", "from_name": "entities"} for s, e in spans]}
            for i, (t, spans) in enumerate(TEST)]
    return Gold({"train": [], "dev": [], "test": test}, "v1")


def test_right_answers_are_trusted_and_a_silent_server_is_not(ctx, fake_llm):
    fake_llm.script = [{"content": json.dumps({"entities": [{"text": "Apple", "label": "Company"}, {"text": "Google", "label": "company"}]})},
                       {"content": json.dumps({"entities": [{"text": "Nvidia", "label": "Company"}]})}]
    p = Provider(LLMConfig(url=fake_llm.url, model="fake", concurrency=1))
    rec = run_llm_eval(ctx, p, k=0, gold=gold(), progress=False)
    assert rec["status"] == "trusted" and rec["primary"] == 1.0 and rec["decision"].startswith("trusted as a suggestion source")
    assert json.loads(rec["metrics"])["controls"]["entities"]["n_correct"] == 3
    assert trusted(ctx.db, ctx.pid, "fake", rec["prompt_hash"])["version"] == rec["version"]

    fake_llm.script, fake_llm.requests = [{"content": "no json here"}], []
    rec2 = run_llm_eval(ctx, Provider(LLMConfig(url=fake_llm.url, model="fake", concurrency=1)), k=0, gold=gold(), progress=False)
    assert rec2["status"] == "not trusted" and "answered none of 2" in rec2["decision"]
    assert json.loads(rec2["llm_stats"])["dropped_reasons"] == {"malformed": 2}
    assert trusted(ctx.db, ctx.pid, "fake", rec2["prompt_hash"]) is None  # the newest decision counts


def test_a_test_split_without_labels_fails_the_record_with_the_reason(ctx, fake_llm):
    p = Provider(LLMConfig(url=fake_llm.url, model="fake"))
    rec = run_llm_eval(ctx, p, k=0, gold=Gold({"train": [], "dev": [], "test": []}, "v0"), progress=False)
    assert rec["status"] == "failed" and "no labeled documents" in rec["decision"] and not fake_llm.requests
