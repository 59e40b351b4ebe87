"""server/llm/provider.py against a scripted server: the failure modes a real model will not produce on demand."""
from __future__ import annotations

import logging

import pytest

from server.config import ENV_LLM_API_KEY, ENV_LLM_MODEL, ENV_LLM_URL
from server.llm.provider import LLMConfig, LLMError, Provider

SECRET = "sk-test-secret-value-1234"
MESSAGES = [{"role": "user", "content": "hi"}]


def provider(fake, **kw):
    kw.setdefault("backoff", 0.01)
    return Provider(LLMConfig(url=fake.url, model="m", api_key=SECRET, **kw))


def test_config_from_env_needs_url_and_model_and_hides_the_key():
    with pytest.raises(LLMError, match=ENV_LLM_URL):
        LLMConfig.from_env({})
    with pytest.raises(LLMError, match=ENV_LLM_MODEL):
        LLMConfig.from_env({ENV_LLM_URL: "http://x/v1"})
    cfg = LLMConfig.from_env({ENV_LLM_URL: "http://x/v1/", ENV_LLM_MODEL: "m", ENV_LLM_API_KEY: SECRET}, concurrency=2)
    assert cfg.url == "http://x/v1" and cfg.api_key == SECRET and cfg.concurrency == 2
    assert SECRET not in repr(cfg) and SECRET not in repr(Provider(cfg))


def test_answer_sends_the_schema_and_the_key_as_a_bearer_token(fake_llm):
    fake_llm.script = [{"content": '```json\n{"sentiment": "Bullish"}\n```'}]
    p = provider(fake_llm)
    assert p.ask(MESSAGES, {"type": "object"}) == {"sentiment": "Bullish"}
    body = fake_llm.requests[0]
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"} and body["temperature"] == 0
    assert fake_llm.auth[0] == f"Bearer {SECRET}"
    assert p.stats.to_dict()["answered"] == 1 and p.stats.prompt_tokens == 10 and p.stats.completion_tokens == 5


def test_malformed_json_is_retried_once_then_dropped_with_a_reason(fake_llm):
    fake_llm.script = [{"content": "not json"}, {"content": '{"a": 1}'}]
    p = provider(fake_llm)
    assert p.ask(MESSAGES) == {"a": 1}
    fake_llm.script, fake_llm.requests = [{"content": "still {not json"}], []
    assert p.ask(MESSAGES) is None
    s = p.stats.to_dict()
    assert len(fake_llm.requests) == 2  # once, and once more
    assert (s["asked"], s["answered"], s["malformed"], s["dropped"], s["dropped_reasons"]) == (2, 1, 3, 1, {"malformed": 1})


def test_429_and_5xx_back_off_within_bounds_then_drop(fake_llm):
    waits = []
    fake_llm.script = [{"status": 429, "headers": {"Retry-After": "100"}}, {"status": 503}, {"content": '{"ok": true}'}]
    p = Provider(LLMConfig(url=fake_llm.url, model="m", retries=3, backoff=0.5, backoff_max=2.0), sleep=waits.append)
    assert p.ask(MESSAGES) == {"ok": True}
    assert waits == [2.0, 1.0]  # Retry-After capped at backoff_max; then the exponential step of the second try
    fake_llm.script, fake_llm.requests = [{"status": 500}], []
    assert p.ask(MESSAGES) is None and len(fake_llm.requests) == 4  # 1 + retries
    assert p.stats.reasons == {"http_500": 1}


def test_timeout_is_dropped_and_counted(fake_llm):
    fake_llm.script = [{"sleep": 1.5, "content": "{}"}]
    p = provider(fake_llm, timeout=0.3, retries=1)
    assert p.ask(MESSAGES) is None
    assert p.stats.reasons == {"timeout": 1} and p.stats.requests == 2


def test_a_refused_key_stops_the_run_without_showing_the_key(fake_llm, caplog):
    fake_llm.script = [{"status": 401}]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LLMError) as exc:
        provider(fake_llm).ask(MESSAGES)
    assert "401" in str(exc.value) and ENV_LLM_API_KEY in str(exc.value)
    assert SECRET not in str(exc.value) and SECRET not in caplog.text


def test_a_server_without_json_schema_gets_the_schema_in_the_prompt_only(fake_llm):
    fake_llm.script = [{"status": 400}, {"content": '{"x": 1}'}]
    p = provider(fake_llm)
    assert p.ask(MESSAGES, {"type": "object"}) == {"x": 1}
    assert "response_format" in fake_llm.requests[0] and "response_format" not in fake_llm.requests[1]
    p.ask(MESSAGES, {"type": "object"})
    assert "response_format" not in fake_llm.requests[2]  # remembered for the rest of the run


def test_token_budget_and_concurrency_bound_a_run(fake_llm):
    fake_llm.script = [{"content": '{"a": 1}', "prompt_tokens": 40}]
    p = provider(fake_llm, token_budget=100, concurrency=1)
    got = p.ask_many([(i, MESSAGES) for i in range(5)])
    s = p.stats.to_dict()
    assert sum(v is not None for v in got.values()) == 3 and s["dropped_reasons"] == {"token_budget": 2}
    assert s["asked"] == 5 and s["answered"] + s["dropped"] == s["asked"] and s["seconds"] >= 0
    seen = []
    p2 = provider(fake_llm, concurrency=3)
    p2.ask_many([(i, MESSAGES) for i in range(4)], on_answer=lambda k, a: seen.append(k))
    assert seen == [0, 1, 2, 3]  # answers handed back in order, each as it is ready


def test_unreachable_server_is_dropped_not_raised():
    p = Provider(LLMConfig(url="http://127.0.0.1:9/v1", model="m", retries=1, backoff=0.01, timeout=2))
    assert p.ask(MESSAGES) is None and p.stats.reasons == {"unreachable": 1}
    with pytest.raises(LLMError, match="not reachable"):
        p.models()
