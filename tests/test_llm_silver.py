"""Silver labels (server/llm/silver.py): the trusted LLM's cached pool answers become weighted training examples; an
untrusted or never-evaluated LLM teaches nothing and the round says what to run."""
from __future__ import annotations

import json

import pytest

from server import store
from server.errors import LoopError
from server.llm.cache import AnswerCache
from server.llm.silver import silver_examples
from server.llm.trust import TRIGGER
from tests.plugins.llm import offline_project

CONFIG = """<View><Text name="text" value="$text"/><Labels name="entities" toName="text"><Label value="Company"/></Labels>
<Choices name="mood" toName="text"><Choice value="up"/><Choice value="down"/></Choices></View>"""


@pytest.fixture
def ctx(tmp_path):
    return offline_project(tmp_path, CONFIG)


def _eval(ctx, version: str, model: str, status: str) -> None:
    store.record_version(ctx.db, project_id=ctx.pid, version=version, trigger=TRIGGER, llm_model=model, status=status,
                         started_at=float(len(version)))


def test_the_trusted_llms_cached_answers_become_weighted_examples(ctx):
    pool = ["Apple rose", "Nothing to see", "Intel fell", "Apple rose", "never asked"]
    with pytest.raises(LoopError, match="trusts no LLM: run `goldloop llm eval 3`"):
        silver_examples(ctx, {"text": pool}, 0.3)
    cache = AnswerCache(ctx.settings.data_dir.llm_cache_path)
    cache.put("Apple rose", "p1", "big", {"entities": [{"text": "Apple", "label": "Company"}], "mood": "up"})
    cache.put("Nothing to see", "p1", "big", {"entities": [], "mood": "sideways"})  # no entity; a label the config lacks
    cache.put("Intel fell", "p1", "big", {"entities": [{"text": "Intel", "label": "Company"}], "mood": "down"})
    cache.put("Intel fell", "p2", "big", {"entities": [], "mood": "down"})  # a newer prompt's answer wins
    cache.put("Apple rose", "p1", "small", {"entities": [], "mood": "down"})  # another model's answers never count

    _eval(ctx, "e1", "big", "trusted")
    got, info = silver_examples(ctx, {"text": pool}, 0.3)
    spans, mood = got["entities"], got["mood"]
    assert spans.texts == ["Apple rose", "Nothing to see", "Intel fell"]  # once per text, only answered ones
    assert spans.targets == [[(0, 5, "Company")], [], []] and spans.weights == [0.3] * 3
    assert mood.texts == ["Apple rose", "Intel fell"] and mood.targets == [["up"], ["down"]]  # no label chosen: no example
    assert info["answered"] == 3 and info["docs"] == {"entities": 3, "mood": 2} and info["llm_model"] == "big"
    assert info["alignment"].get("unknown_choices") == 1

    capped, capped_info = silver_examples(ctx, {"text": pool}, 0.3, limit=2)  # the bound: answered documents read
    assert capped["entities"].texts == ["Apple rose", "Nothing to see"] and capped_info["answered"] == 2

    _eval(ctx, "e22", "big", "not trusted")  # the newest evaluation decides
    with pytest.raises(LoopError, match="trusts no LLM"):
        silver_examples(ctx, {"text": pool}, 0.3)
    json.dumps(info)  # recorded with the version as JSON
