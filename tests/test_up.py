"""server.up against a real Label Studio (no ML backend): one project per schema, kept in step with its schema file."""
from __future__ import annotations

from pathlib import Path

import pytest

from server import ls_client, store
from server.errors import ConfigError
from server.schema_files import load_schema, load_schemas
from server.up import ensure_project

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]


def test_one_project_per_schema_idempotent(ls_projects):
    _, s, db, client = ls_projects
    before = {p["schema_name"]: p["id"] for p in store.list_projects(db)}
    assert set(before) >= {"contracts", "financial_news", "medical_records"}
    for schema in load_schemas():
        project, sync = ensure_project(client, schema, s, db)
        assert project.id == before[schema.name] and not sync.changed
        assert project.title == schema.title
        assert project.min_annotations_to_start_training == s.min_annotations_to_train
    assert len([p for p in ls_client.list_projects(client) if ls_client.schema_name_of(p)]) == len(before)


def test_changed_schema_updates_the_labeling_config(ls_projects, tmp_path):
    _, s, db, client = ls_projects
    xml = (ROOT / "schemas" / "financial_news.xml").read_text().replace('<Choice value="neutral"/>', '<Choice value="neutral"/><Choice value="mixed"/>')
    (tmp_path / "financial_news.xml").write_text(xml)
    schema = load_schema(tmp_path / "financial_news.xml")
    project, sync = ensure_project(client, schema, s, db)
    assert sync.config_updated and "mixed" in ls_client.get_project(client, project.id).label_config
    assert store.get_project(db, project.id)["config_hash"] == schema.config_hash
    # back to the repo's schema
    original = load_schema(ROOT / "schemas" / "financial_news.xml")
    _, sync = ensure_project(client, original, s, db)
    assert sync.config_updated


def test_schema_that_label_studio_rejects(ls_projects, tmp_path):
    _, s, db, client = ls_projects
    path = tmp_path / "clash.xml"
    path.write_text('<View><Text name="text" value="$text"/><Labels name="text" toName="text"><Label value="A"/></Labels></View>')
    with pytest.raises(ConfigError, match=r"Label Studio rejects schema .*clash.xml.*non-unique names"):
        ensure_project(client, load_schema(path), s, db)
    assert store.get_project_by_name(db, "clash") is None


# --- the Label Studio admin password ------------------------------------------------------------


def test_admin_password_is_generated_once_private_and_shown_once(tmp_path):
    import stat

    from server.config import Settings
    from server.up import admin_login

    settings = Settings(home=tmp_path / "home")
    settings.data_dir.ensure()
    _, first = admin_login(settings)
    path = settings.data_dir.admin_password_path
    password = path.read_text().strip()
    assert len(password) >= 20 and password != "goldloop-admin"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert password in first and "shown once" in first
    _, again = admin_login(settings)
    assert password not in again and str(path) in again
    assert settings.ls_admin_password() == password
    other = Settings(home=tmp_path / "other")
    other.data_dir.ensure()
    assert other.ls_admin_password() != password  # one per data dir, never a shared default


def test_admin_password_from_the_environment_wins_and_is_never_printed(tmp_path):
    from server.config import ENV_ADMIN_PASSWORD, ENV_HOME, Settings
    from server.up import admin_login

    settings = Settings.from_env({ENV_HOME: str(tmp_path / "home"), ENV_ADMIN_PASSWORD: "s3cret-from-env"})
    used, line = admin_login(settings)
    assert used.ls_admin_password() == "s3cret-from-env" and "s3cret-from-env" not in line and ENV_ADMIN_PASSWORD in line
    assert not settings.data_dir.admin_password_path.exists()


def test_data_dir_from_before_generated_passwords_gets_a_generated_password_and_the_reset_command(tmp_path):
    import shlex

    from server.config import Settings
    from server.up import admin_login

    settings = Settings(home=tmp_path / "home dir")
    settings.data_dir.ls_data.mkdir(parents=True)
    (settings.data_dir.ls_data / "label_studio.sqlite3").write_bytes(b"")  # a Label Studio that created its admin already
    used, line = admin_login(settings)
    path = settings.data_dir.admin_password_path
    generated = path.read_text().strip()
    assert len(generated) >= 20 and used.ls_admin_password() == generated  # random, never a fixed fallback
    other = Settings(home=tmp_path / "other")
    other.data_dir.ls_data.mkdir(parents=True)
    (other.data_dir.ls_data / "label_studio.sqlite3").write_bytes(b"")
    assert admin_login(other)[0].ls_admin_password() != generated
    assert "created with" in line and generated not in line  # the admin keeps its password: the generated one is no login
    command = line.split("run once: ", 1)[1]
    assert shlex.split(command)[:2] == ["label-studio", "reset_password"]
    assert f"--username {settings.admin_email}" in command and f"--data-dir {shlex.quote(str(settings.data_dir.ls_data))}" in command
    assert f'--password "$(cat {shlex.quote(str(path))})"' in command


def test_label_studio_starts_with_the_generated_password(label_studio):
    """The template's Label Studio admin logs in with the data dir's password, not with a default."""
    import requests

    s = label_studio.settings
    password = s.data_dir.admin_password_path.read_text().strip()
    session = requests.Session()
    page = session.get(f"{label_studio.url}/user/login/", timeout=30)
    csrf = session.cookies.get("csrftoken")
    for pw, ok in (("goldloop-admin", False), (password, True)):
        r = session.post(f"{label_studio.url}/user/login/", data={"email": s.admin_email, "password": pw, "csrfmiddlewaretoken": csrf},
                         headers={"Referer": page.url}, allow_redirects=False, timeout=30)
        assert (r.status_code == 302) is ok, (pw == password, r.status_code)
