"""server.datadir: the data dir's layout, its admin token file, the writability check."""
from __future__ import annotations

import stat

import pytest

from server.config import Settings
from server.datadir import DataDir
from server.errors import StackError


def test_layout_is_under_home(tmp_path):
    d = Settings(home=tmp_path).data_dir
    assert d == DataDir(tmp_path)
    assert d.db_path == tmp_path / "goldloop.db" and d.token_path == tmp_path / "label_studio_token"
    assert d.ls_data == tmp_path / "label-studio" and d.log("backend") == tmp_path / "logs" / "backend.log"
    assert (d.models, d.datasets, d.encoders) == (tmp_path / "models", tmp_path / "datasets", tmp_path / "encoders")
    assert d.report_dir(3) == tmp_path / "reports" / "3"
    assert Settings(home=tmp_path).models_dir == d.models and Settings(home=tmp_path).db_path == d.db_path


def test_token_created_once_with_mode_0600(tmp_path):
    data_dir = DataDir(tmp_path)
    token = data_dir.read_or_create_token()
    assert len(token) == 40 and int(token, 16) >= 0
    assert stat.S_IMODE(data_dir.token_path.stat().st_mode) == 0o600
    assert data_dir.read_or_create_token() == token
    assert data_dir.read_token() == token


def test_corrupt_token_file_is_reported(tmp_path):
    data_dir = DataDir(tmp_path)
    data_dir.token_path.write_text("not-a-token")
    with pytest.raises(StackError, match="corrupt"):
        data_dir.read_or_create_token()


def test_missing_token_says_run_up(tmp_path):
    with pytest.raises(StackError, match="goldloop up"):
        DataDir(tmp_path).read_token()


def test_data_dir_not_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StackError, match="not writable.*--data-dir"):
        DataDir(blocker / "home").ensure()
