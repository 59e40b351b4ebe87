"""Shared pytest setup. Fixtures live in tests/plugins/, one module per area."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "tests.plugins.backend",
    "tests.plugins.export",
    "tests.plugins.label_studio",
    "tests.plugins.postgres",
]
