"""Fixtures for the ML backend: settings in a temp data dir, the app, a test client."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_backend import create_app
from ml_backend.settings import BackendSettings
from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
DATA = ROOT / "tests" / "data"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", testing=True)


@pytest.fixture
def app(settings):
    return create_app(settings.backend_settings())


@pytest.fixture
def client(app):
    return app.test_client()


def schema_xml(name: str) -> str:
    return (SCHEMAS / f"{name}.xml").read_text()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").split("\n") if line.strip()]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny randomly initialised BERT with the real MiniLM tokenizer: fast unit tests of the model code."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from server.config import default_model

    path = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(default_model())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(0)  # the same tiny model in every session
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture
def tiny_settings(settings, tiny_model_dir) -> BackendSettings:
    """Backend settings whose encoder is the tiny BERT (for protocol tests that need no real weights)."""
    return settings.backend_settings().with_overrides(model=tiny_model_dir)


@pytest.fixture
def tiny_client(tiny_settings):
    return create_app(tiny_settings).test_client()
