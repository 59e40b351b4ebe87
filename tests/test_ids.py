"""Request identifiers: Label Studio ids and strict names pass, everything else is a 400 naming the field."""
import pytest

from ml_backend import ids
from ml_backend.errors import BadRequest


@pytest.mark.parametrize("raw, key", [
    (3, "3"), ("3", "3"), ("3.1795327106", "3"), ("120.1", "120"), (None, "default"), ("", "default"),
    ("medical_records", "medical_records"), ("financial-news2", "financial-news2"), (10**15 - 1, str(10**15 - 1)),
])
def test_label_studio_ids_and_names_pass(raw, key):
    assert ids.project_key(raw) == key
    assert ids.is_project_key(key)


@pytest.mark.parametrize("raw", [
    "/tmp/x", "../x", "1/../../x", "a\0b", "..", ".", "/", "0", "-1", 0, -3, True, 1.5, 10**15, 10**400, "1.x", "1..2",
    "a" * 65, "\ud800", "1\ud800", "medical records", "C:\\x", "x/", "_x", "1.2.3", [], {"id": 1}, "٣",
])
def test_anything_else_is_a_bad_request_naming_the_field(raw):
    with pytest.raises(BadRequest) as exc:
        ids.project_key(raw, field="project.id")
    message = str(exc.value)
    assert "'project.id'" in message and message.isascii() and "\0" not in message


def test_keys_are_idempotent_and_timestamps_are_not_keys():
    assert ids.project_key(ids.project_key("7.123")) == "7"
    assert not ids.is_project_key("7.123") and not ids.is_project_key("../7") and not ids.is_project_key(7)


@pytest.mark.parametrize("name, ok", [
    ("v20250101-120000-abc123", True), ("v-int8", True), ("coldstart-1a2b", True), ("..", False), ("a/b", False),
    ("v..1", False), ("", False), ("/abs", False), ("a\0", False), (5, False),
])
def test_version_names(name, ok):
    assert ids.is_version(name) is ok


@pytest.mark.parametrize("name, ok", [
    ("sentiment", True), ("risk level", True), ("ner_1", True), ("..", False), (".", False), ("a/b", False),
    ("a\\b", False), ("x.", False), ("", False), ("a\0b", False),
])
def test_control_names_safe_as_directory_names(name, ok):
    assert ids.is_safe_component(name) is ok


def test_shown_is_ascii_and_short():
    assert ids.shown("\ud800\0" + "x" * 500).isascii() and len(ids.shown("x" * 500)) == 60
    assert not ids.valid_unicode("a\udc80") and ids.valid_unicode("ü\0")
