"""Shared pytest setup. Fixtures live in tests/plugins/, one module per area."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# no control group in the commands the tests start: they check that tasks carry predictions; tests/test_effort.py
# sets a share where it tests the control group itself
os.environ.setdefault("GOLDLOOP_CONTROL_SHARE", "0")

pytest_plugins = [
    "tests.plugins.backend",
    "tests.plugins.export",
    "tests.plugins.label_studio",
    "tests.plugins.llm",
    "tests.plugins.postgres",
]
