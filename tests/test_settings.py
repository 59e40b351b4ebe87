"""BackendSettings (ml_backend/settings.py): what the backend reads, filled by Settings.backend_settings()."""
from dataclasses import fields
from pathlib import Path

import pytest

from ml_backend import create_app
from ml_backend.settings import BackendSettings
from server.config import Settings


def test_server_settings_fill_every_backend_field(tmp_path):
    s = Settings(home=tmp_path, model_name="some/encoder", quantize="int8", threads=3, max_length=128, cache_size=7,
                 max_text_chars=99, basic_auth_user="ls", basic_auth_pass="pw")
    b = s.backend_settings()
    assert b == BackendSettings(model="some/encoder", models_dir=s.models_dir, quantize="int8", threads=3, max_length=128, cache_size=7,
                                max_text_chars=99, basic_auth_user="ls", basic_auth_pass="pw")
    assert Path(b.models_dir).parent == tmp_path and "pw" not in repr(b)
    assert Settings(home=tmp_path).backend_settings().model == Settings(home=tmp_path).model  # the default encoder, resolved


def test_with_overrides_ignores_unknown_names_and_none(tmp_path):
    b = Settings(home=tmp_path).backend_settings()
    c = b.with_overrides(quantize="bf16", threads=None, ls_url="http://x")
    assert c.quantize == "bf16" and c.threads == b.threads and {f.name for f in fields(c)} == {f.name for f in fields(b)}
    assert b.quantize == "none"  # a copy: the original stays


def test_create_app_takes_backend_settings_only(tmp_path):
    with pytest.raises(TypeError, match="BackendSettings"):
        create_app(Settings(home=tmp_path))
    app = create_app(Settings(home=tmp_path).backend_settings(), test_config={"max_text_chars": 5})
    assert app.extensions["goldloop"].settings.max_text_chars == 5
