"""server.schema_files: the repository's schema files, titles, unusable files, when a schema is pushed to Label Studio."""
from __future__ import annotations

import pytest

from server.errors import ConfigError
from server.schema_files import load_schema, load_schemas, needs_push


def test_repo_schemas_load_with_titles():
    schemas = {s.name: s for s in load_schemas()}
    assert set(schemas) >= {"contracts", "financial_news", "medical_records"}
    assert schemas["medical_records"].title == "Medical records — clinical entities"
    assert all(s.text_field == "text" and len(s.title) <= 50 for s in schemas.values())


def test_schema_without_title_uses_its_name(tmp_path):
    path = tmp_path / "tiny.xml"
    path.write_text('<View><Labels name="l" toName="t"><Label value="A"/></Labels><Text name="t" value="$body"/></View>')
    schema = load_schema(path)
    assert (schema.name, schema.title, schema.text_field) == ("tiny", "tiny", "body")


def test_unusable_schema_file_is_a_config_error(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<View><Text name='t' value='$text'/>")
    with pytest.raises(ConfigError, match="broken.xml"):
        load_schema(path)


def test_schema_is_pushed_only_when_its_file_changed_and_label_studio_differs():
    schema = load_schemas()[0]
    other = '<View><Choices name="c" toName="t"><Choice value="x"/></Choices><Text name="t" value="$text"/></View>'
    assert needs_push(schema, None, other)  # never synced here
    assert needs_push(schema, "an older hash", other)  # the file changed since the last sync
    assert not needs_push(schema, schema.config_hash, other)  # unchanged file: edits made in Label Studio stay
    assert not needs_push(schema, None, schema.xml)  # Label Studio already has it
