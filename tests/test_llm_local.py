"""The LLM path against a real model (SmolLM2-135M-Instruct behind server/llm/local_server.py): prompt → JSON →
alignment → scoring and the gate → the version record; pre-labelling with its cache across a killed run.

Kept to a handful of short documents: each answer costs seconds on 2 CPU cores."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import requests

from ml_backend.registry import Registry
from ml_backend.schema import parse_label_config
from server import store
from server.config import Settings
from server.llm.cache import AnswerCache
from server.llm.evaluate import model_version, run_llm_eval
from server.llm.trust import KIND, TRIGGER, trusted
from server.llm.label import label_pool
from server.llm.provider import LLMConfig, LLMError, Provider
from server.project import Gold, ProjectContext
from tests.plugins.llm import LOCAL_MODEL_ID

pytestmark = pytest.mark.slow

SECRET = "sk-local-never-recorded"
CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text">
  <Choice value="Bearish" hint="bad news for the stock"/><Choice value="Bullish" hint="good news for the stock"/>
  <Choice value="Neutral" hint="neither good nor bad"/>
</Choices></View>"""
TRAIN = [("Apple shares soar after record iPhone sales", "Bullish"), ("Boeing stock plunges after new safety probe", "Bearish"),
         ("Fed keeps rates unchanged, as expected", "Neutral"), ("Tesla beats delivery estimates, stock jumps", "Bullish")]
TEST = [("Nike shares surge on strong quarterly profit", "Bullish"), ("Intel cuts outlook, shares slump", "Bearish"),
        ("Walmart to hold annual meeting on June 5", "Neutral")]
POOL = ["Amazon stock climbs after upbeat forecast", "Oil prices fall as demand weakens"]


def records(rows, split):
    return [{"id": f"{split}{i}", "text": t, "split": split, "spans": [], "choices": {"sentiment": [lbl]}} for i, (t, lbl) in enumerate(rows)]


@pytest.fixture
def ctx(tmp_path):
    settings = Settings(home=tmp_path / "home")
    db = store.open_db(settings.data_dir.db_path)
    project = SimpleNamespace(id=7, title="tweets", label_config=CONFIG, expert_instruction="<p>Judge the <b>stock</b>, not the company.</p>")
    return ProjectContext(settings, db, None, project, parse_label_config(CONFIG), Registry(settings.backend_settings()))


def provider(url, **kw):
    return Provider(LLMConfig(url=url, model=LOCAL_MODEL_ID, api_key=SECRET, max_tokens=16, concurrency=1, **kw))


def test_local_server_speaks_the_openai_protocol(local_llm):
    assert [m["id"] for m in requests.get(f"{local_llm}/models", timeout=10).json()["data"]] == [LOCAL_MODEL_ID]
    out = requests.post(f"{local_llm}/chat/completions", timeout=120, json={
        "model": LOCAL_MODEL_ID, "max_tokens": 4, "messages": [{"role": "user", "content": "Say hi"}]}).json()
    assert isinstance(out["choices"][0]["message"]["content"], str)
    assert out["usage"]["completion_tokens"] <= 4 and out["usage"]["prompt_tokens"] > 0
    assert requests.post(f"{local_llm}/chat/completions", json={"messages": "x"}, timeout=10).status_code == 400


def test_eval_scores_the_llm_like_a_version_gates_it_and_records_no_key(ctx, local_llm):
    gold = Gold({"train": records(TRAIN, "train"), "dev": [], "test": records(TEST, "test")}, "v-test")
    p = provider(local_llm)
    rec = run_llm_eval(ctx, p, k=1, gold=gold, progress=False)
    assert rec["kind"] == KIND and rec["trigger"] == TRIGGER and rec["status"] in ("trusted", "not trusted")
    assert rec["llm_model"] == LOCAL_MODEL_ID and len(rec["prompt_hash"]) == 64
    assert rec["model_version_name"] == model_version(LOCAL_MODEL_ID, rec["prompt_hash"])
    metrics = json.loads(rec["metrics"])
    assert metrics["controls"]["sentiment"]["n"] == len(TEST)  # scored by evaluate_models, like a version
    assert rec["primary"] == metrics["primary"] and rec["serving_primary"] is not None  # the serving version, same split
    stats = json.loads(rec["llm_stats"])
    assert stats["asked"] == len(TEST) and stats["answered"] + stats["dropped"] == stats["asked"]
    assert stats["prompt_tokens"] > 0
    assert SECRET not in json.dumps(store.list_versions(ctx.db, ctx.pid), default=str)
    assert (trusted(ctx.db, ctx.pid, LOCAL_MODEL_ID, rec["prompt_hash"]) is not None) == (rec["status"] == "trusted")
    assert trusted(ctx.db, ctx.pid, "another-model", rec["prompt_hash"]) is None


def test_label_needs_trust_and_a_killed_run_loses_no_answer(ctx, local_llm):
    pool = list(zip((101, 102), POOL))
    with pytest.raises(LLMError, match="does not trust"):
        label_pool(ctx, provider(local_llm), k=1, train=records(TRAIN, "train"), pool=pool, post=lambda items: len(items))

    def killed(items):  # the process dies while posting: after the answers were asked and cached
        raise KeyboardInterrupt

    first = provider(local_llm)
    with pytest.raises(KeyboardInterrupt):
        label_pool(ctx, first, k=1, force=True, train=records(TRAIN, "train"), pool=pool, post=killed, progress=False)
    assert first.stats.asked == len(POOL)
    cached = len(AnswerCache(ctx.settings.data_dir.llm_cache_path))
    assert cached == first.stats.answered

    posted: list[dict] = []
    second = provider(local_llm)
    out = label_pool(ctx, second, k=1, force=True, train=records(TRAIN, "train"), pool=pool, post=posted.extend, progress=False)
    assert second.stats.asked == len(POOL) - cached  # the cached documents are not asked again
    assert out["counts"]["cached"] == cached and out["forced"] is True
    assert out["model_version"].startswith(f"llm-{LOCAL_MODEL_ID}-") and len(out["model_version"].rsplit("-", 1)[1]) == 8
    for item in posted:
        assert item["model_version"] == out["model_version"] and item["task"] in (101, 102)
        assert all(r["from_name"] == "sentiment" and r["value"]["choices"][0] in ("Bearish", "Bullish", "Neutral") for r in item["result"])

    third = provider(local_llm)
    again = label_pool(ctx, third, k=1, force=True, train=records(TRAIN, "train"), pool=pool, post=posted.extend, progress=False)
    assert again["counts"]["already_posted"] == len(posted)
    assert third.stats.asked == len(POOL) - len(posted)  # only documents that never got an answer are asked again
