"""Fixtures for the ML backend: settings in a temp data dir, the app, a test client."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_backend import create_app
from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
DATA = ROOT / "tests" / "data"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", testing=True)


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


def schema_xml(name: str) -> str:
    return (SCHEMAS / f"{name}.xml").read_text()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
