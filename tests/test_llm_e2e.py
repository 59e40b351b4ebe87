"""End to end against a real Label Studio: `goldloop llm eval` exports the project, scores a (scripted) LLM on the test
split, gates it and records the decision; `goldloop llm label` then writes the pool's predictions, and a rerun asks
and posts nothing again. The server's key shows up nowhere."""
from __future__ import annotations

import json

import pytest

from ml_backend.splits import split_of
from server import ls_client, store
from tests.plugins.label_studio import goldloop

pytestmark = pytest.mark.e2e
SECRET = "sk-e2e-never-shown"
CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text"><Choice value="Bullish" hint="good for the stock"/><Choice value="Bearish"/></Choices></View>"""
COMPANIES = ["Apple", "Nike", "Intel", "Boeing", "Tesla", "Nvidia", "Oracle", "Pfizer", "Ford", "Visa", "Sony", "Shell",
             "Adobe", "Cisco", "Gap", "Uber", "Lyft", "Zoom", "Snap", "Etsy", "Ebay", "Dell", "Xerox", "Macy's"]


def labeled_docs() -> dict[str, str]:
    docs = {}
    for i, c in enumerate(COMPANIES):
        docs[f"{c} shares {'jump' if i % 2 else 'slump'} after results"] = "Bullish" if i % 2 else "Bearish"
        docs[f"{c} {'raises' if i % 2 else 'cuts'} its outlook"] = "Bullish" if i % 2 else "Bearish"
    return docs


def test_llm_eval_then_label_a_real_project(label_studio, fake_llm):
    client = label_studio.client()
    project = client.projects.create(title="LLM trust", label_config=CONFIG, expert_instruction="<p>Judge the stock.</p>")
    pid = int(project.id)
    gold = labeled_docs()
    pool = ["Walmart shares jump after results", "Kraft cuts its outlook"]
    client.projects.import_tasks(id=pid, request=[{"text": t} for t in [*gold, *pool]])
    for t in ls_client.iter_tasks(client, pid):
        text = t["data"]["text"]
        if text in gold:
            ls_client.create_annotation(client, t["id"], [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                           "value": {"choices": [gold[text]]}}])

    def respond(body):  # a perfect model: the right label of the document it is asked about
        text = body["messages"][-1]["content"].split("Document:\n", 1)[1]
        return json.dumps({"sentiment": gold.get(text, "Bullish" if "jump" in text else "Bearish")})

    fake_llm.respond = respond
    env = {"GOLDLOOP_LLM_URL": fake_llm.url, "GOLDLOOP_LLM_MODEL": "fake-7b", "GOLDLOOP_LLM_API_KEY": SECRET}
    home = label_studio.settings.home
    out = goldloop("llm", "eval", str(pid), "--few-shot", "2", home=home, env=env)
    assert "trusted" in out.stdout and "trusted as a suggestion source" in out.stdout, out.stdout
    asked_for_eval = len(fake_llm.requests)
    assert 0 < asked_for_eval < len(gold)  # the test split only
    assert "Judge the stock." in fake_llm.requests[0]["messages"][0]["content"] and fake_llm.auth[0] == f"Bearer {SECRET}"
    assert [m["role"] for m in fake_llm.requests[0]["messages"]] == ["system", "user", "assistant", "user", "assistant", "user"]

    out = goldloop("llm", "label", str(pid), "--few-shot", "2", home=home, env=env)
    assert "2 predictions written" in out.stdout, out.stdout
    assert len(fake_llm.requests) == asked_for_eval + len(pool)
    preds = {t["data"]["text"]: t["predictions"] for t in ls_client.iter_tasks(client, pid) if t["data"]["text"] in pool}
    for text, [pred] in preds.items():
        assert pred["model_version"].startswith("llm-fake-7b-")
        assert pred["result"][0]["value"]["choices"] == ["Bullish" if "jump" in text else "Bearish"]

    again = goldloop("llm", "label", str(pid), "--few-shot", "2", home=home, env=env)
    assert "0 predictions written" in again.stdout and len(fake_llm.requests) == asked_for_eval + len(pool)
    db = store.open_db(label_studio.settings.data_dir.db_path)
    rows = store.list_versions(db, pid)
    assert [r["trigger"] for r in rows] == ["llm-eval"] and rows[0]["llm_model"] == "fake-7b"

    # a round teaches the small model the trusted LLM's cached pool answers too, without asking the server again
    trained = goldloop("train", str(pid), "--silver-weight", "0.5", home=home, env=env)
    rnd = store.list_versions(db, pid)[-1]
    silver = json.loads(rnd["silver"])
    assert silver["llm_model"] == "fake-7b" and silver["answered"] == 2 and silver["docs"] == {"sentiment": 2} and silver["weight"] == 0.5
    n_train = sum(1 for t in ls_client.iter_tasks(client, pid) if t["data"]["text"] in gold and split_of(t["id"]) == "train")
    assert json.loads(rnd["models"])[0]["train_docs"] == n_train + 2, rnd["models"]
    assert len(fake_llm.requests) == asked_for_eval + len(pool)
    rows = store.list_versions(db, pid)
    for text in (out.stdout, out.stderr, again.stdout, again.stderr, trained.stdout, json.dumps(rows, default=str),
                 label_studio.settings.data_dir.llm_cache_path.read_bytes().decode("utf-8", "replace")):
        assert SECRET not in text
