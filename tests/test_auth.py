"""ml_backend/auth.py through the real app and CLI: basic auth passwords, the allowed Host names, what /health shows
to whom, the --insecure warning."""
from __future__ import annotations

import base64
import dataclasses
import logging

import pytest
from click.testing import CliRunner

from ml_backend import auth, create_app
from ml_backend.errors import BackendConfigError
from ml_backend.routes import WORKER_HEADER
from server.cli import main
from server.config import ENV_ALLOWED_HOSTS, ENV_BASIC_AUTH_PASS, ENV_BASIC_AUTH_USER, Settings
from tests.plugins.backend import schema_xml

PASSWORD = "correct-horse-battery"  # over auth.MIN_PASSWORD_CHARS


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def auth_client(tiny_settings):
    return create_app(tiny_settings.with_overrides(basic_auth_user="ls", basic_auth_pass=PASSWORD)).test_client()


# --- passwords ------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", [None, "", "short", "x" * (auth.MIN_PASSWORD_CHARS - 1)])
def test_create_app_refuses_a_user_without_a_strong_enough_password(tiny_settings, password):
    with pytest.raises(BackendConfigError) as err:
        create_app(dataclasses.replace(tiny_settings, basic_auth_user="ls", basic_auth_pass=password))
    got = "unset or empty" if not password else f"{len(password)} characters"
    assert str(err.value) == f"basic_auth_user is set, so basic_auth_pass must hold at least {auth.MIN_PASSWORD_CHARS} characters, got {got}"


def test_create_app_refuses_a_password_without_a_user(tiny_settings):
    with pytest.raises(BackendConfigError, match="basic_auth_pass is set but basic_auth_user is not"):
        create_app(tiny_settings.with_overrides(basic_auth_pass=PASSWORD))


def test_the_right_credentials_pass_and_wrong_or_empty_ones_answer_401(auth_client):
    setup = {"project": "1.1", "schema": schema_xml("financial_news")}
    assert auth_client.post("/setup", json=setup, headers=basic("ls", PASSWORD)).status_code == 200
    assert auth_client.get("/versions", headers={"Authorization": "bAsIc " + basic("ls", PASSWORD)["Authorization"][6:]}).status_code == 200
    for headers in ({}, basic("ls", ""), basic("ls", "wrong-password-here"), basic("", PASSWORD), basic("other", PASSWORD),
                    basic("ls", PASSWORD + "x"), {"Authorization": "Basic !!!"}, {"Authorization": "Basic " + base64.b64encode(b"ls").decode()},
                    {"Authorization": "Bearer " + PASSWORD}):
        resp = auth_client.post("/setup", json=setup, headers=headers)
        assert resp.status_code == 401 and resp.json["error"] == "Unauthorized", headers
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="goldloop"' and WORKER_HEADER not in resp.headers


def test_an_empty_expected_password_never_matches():
    empty = base64.b64encode(b"ls:").decode()
    assert auth.basic_auth_failure(f"Basic {empty}", "ls", "") == "wrong basic auth credentials"
    assert auth.basic_auth_failure(f"Basic {empty}", "ls", None) == "wrong basic auth credentials"
    assert auth.basic_auth_failure(basic("ls", PASSWORD)["Authorization"], "ls", PASSWORD) is None


# --- /health --------------------------------------------------------------------------------------


def test_health_shows_projects_and_pid_only_to_authenticated_callers(auth_client):
    setup = {"project": "7", "schema": schema_xml("financial_news")}
    assert auth_client.post("/setup", json=setup, headers=basic("ls", PASSWORD)).status_code == 200
    auth_client.post("/predict", json={"project": "7", "tasks": [{"id": 1, "data": {"text": "Stocks fell."}}]}, headers=basic("ls", PASSWORD))
    for headers in ({}, basic("ls", "wrong-password-here"), {"Authorization": "Basic !!!"}):
        resp = auth_client.get("/health", headers=headers)  # liveness answers everyone, with less
        assert resp.status_code == 200 and resp.json["status"] == "UP"
        assert "loaded_projects" not in resp.json and "pid" not in resp.json and WORKER_HEADER not in resp.headers
    full = auth_client.get("/health", headers=basic("ls", PASSWORD))
    assert full.json["status"] == "UP" and full.json["loaded_projects"] == ["7"]
    assert full.json["pid"] == int(full.headers[WORKER_HEADER])


def test_health_without_auth_configured_shows_what_every_route_shows(tiny_client):
    body = tiny_client.get("/health").json  # no auth: /versions and /metrics are open to the same callers
    assert body["status"] == "UP" and body["loaded_projects"] == [] and isinstance(body["pid"], int)


# --- allowed hosts --------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "localhost:9090", "LOCALHOST.", "127.0.0.1:9090", "127.8.9.10", "[::1]:9090", "[::1]"])
def test_loopback_hosts_are_answered_by_default(tiny_settings, host):
    client = create_app(tiny_settings).test_client()
    assert client.get("/health", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9090", "localhost.evil.example", "10.0.0.5", "[::2]:9090", "",
                                  "[::1", "localhost:x"])
def test_another_host_header_answers_400_before_any_route_or_auth(tiny_settings, host):
    client = create_app(tiny_settings.with_overrides(basic_auth_user="ls", basic_auth_pass=PASSWORD)).test_client()
    for method, path in (("get", "/health"), ("post", "/setup"), ("get", "/versions")):
        resp = getattr(client, method)(path, headers={"Host": host, **basic("ls", PASSWORD)})
        assert resp.status_code == 400 and resp.is_json, (path, host)
        assert resp.json["error"] == "DisallowedHost" and "Host header" in resp.json["message"]


def test_configured_hosts_and_star(tiny_settings):
    named = create_app(tiny_settings.with_overrides(allowed_hosts=("LS.Example.org.", "10.0.0.5"))).test_client()
    for host in ("ls.example.org", "ls.example.org:9090", "10.0.0.5:9090", "localhost"):
        assert named.get("/health", headers={"Host": host}).status_code == 200, host
    assert named.get("/health", headers={"Host": "other.example.org"}).status_code == 400
    anyone = create_app(tiny_settings.with_overrides(allowed_hosts=("*",))).test_client()
    assert anyone.get("/health", headers={"Host": "anything.example"}).json["status"] == "UP"


def test_allowed_hosts_come_from_the_environment_and_the_bound_host(tmp_path):
    s = Settings.from_env({"GOLDLOOP_HOME": str(tmp_path), ENV_ALLOWED_HOSTS: " ls.example.org, [fd00::5]:9090 ,"})
    assert s.allowed_hosts == ("fd00::5", "ls.example.org")
    assert s.backend_settings().allowed_hosts == ("fd00::5", "ls.example.org")
    assert s.with_overrides(host="192.168.1.5").backend_settings().allowed_hosts == ("192.168.1.5", "fd00::5", "ls.example.org")
    for wildcard in ("0.0.0.0", "::", "127.0.0.1", "localhost"):  # no one name / already allowed
        assert s.with_overrides(host=wildcard).backend_settings().allowed_hosts == ("fd00::5", "ls.example.org")
    with pytest.raises(ValueError, match=f"{ENV_ALLOWED_HOSTS}: .*got 'http://ls.example.org'"):
        Settings.from_env({ENV_ALLOWED_HOSTS: "http://ls.example.org"})


def test_the_up_stack_urls_are_allowed_hosts(tmp_path):
    """`goldloop up` starts the backend on 127.0.0.1 and connects Label Studio to that URL: it stays answered."""
    from urllib.parse import urlsplit

    from server import stack

    settings = Settings(home=tmp_path)
    be_url = stack.local_url(settings.backend_port)
    command = stack.backend_command(settings)
    bound = command[command.index("--host") + 1]
    allowed = settings.with_overrides(host=bound).backend_settings().allowed_hosts
    assert auth.host_allowed(urlsplit(be_url).netloc, allowed)


# --- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch):
    """waitress.serve records its call instead of serving."""
    import waitress

    calls = []
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: calls.append((app, kw)))
    return calls


def run_backend(tmp_path, tiny_model_dir, *args, **env):
    base = {ENV_BASIC_AUTH_USER: None, ENV_BASIC_AUTH_PASS: None, ENV_ALLOWED_HOSTS: None, "LABEL_STUDIO_URL": None,
            "LABEL_STUDIO_API_KEY": None, "GOLDLOOP_BACKEND_WORKERS": None}
    return CliRunner().invoke(main, ["backend", "--data-dir", str(tmp_path), "--model", tiny_model_dir, "--port", "1", *args],
                              env={**base, **env})


@pytest.mark.parametrize("password", ["", "short-pass"])
def test_backend_refuses_an_empty_or_short_password_in_one_line(tmp_path, tiny_model_dir, served, password):
    result = run_backend(tmp_path, tiny_model_dir, **{ENV_BASIC_AUTH_USER: "ls", ENV_BASIC_AUTH_PASS: password})
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1 and not served and "Traceback" not in result.output
    got = "unset or empty" if not password else f"{len(password)} characters"
    assert lines == [f"Error: {ENV_BASIC_AUTH_USER} is set, so {ENV_BASIC_AUTH_PASS} must hold at least "
                     f"{auth.MIN_PASSWORD_CHARS} characters, got {got}"]


def test_backend_with_a_strong_password_serves_behind_it(tmp_path, tiny_model_dir, served):
    result = run_backend(tmp_path, tiny_model_dir, "--host", "0.0.0.0", **{ENV_BASIC_AUTH_USER: "ls", ENV_BASIC_AUTH_PASS: PASSWORD})
    assert result.exit_code == 0, result.output
    (app, kw), = served
    assert kw["host"] == "0.0.0.0" and "WARNING" not in result.output
    assert f"set {ENV_ALLOWED_HOSTS}" in result.stderr  # a wildcard bind names no host: it says how to add the names
    client = app.test_client()
    assert client.get("/versions").status_code == 401 and client.get("/versions", headers=basic("ls", PASSWORD)).status_code == 200


def test_insecure_on_a_public_host_warns_loudly(tmp_path, tiny_model_dir, served, caplog):
    with caplog.at_level(logging.WARNING, logger="server.serving"):
        result = run_backend(tmp_path, tiny_model_dir, "--host", "192.168.1.5", "--insecure")
    assert result.exit_code == 0 and len(served) == 1, result.output
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "server.serving"]
    assert len(warned) == 1 and "no authentication" in warned[0].getMessage() and "192.168.1.5" in warned[0].getMessage()
    assert "WARNING: --insecure" in result.stderr and "reachable from other machines" in result.stderr
    app = served[0][0]  # the address it binds to is an allowed host; other names are not
    assert app.test_client().get("/health", headers={"Host": "192.168.1.5:1"}).status_code == 200
    assert app.test_client().get("/health", headers={"Host": "rebound.example:1"}).status_code == 400


def test_insecure_on_loopback_says_nothing(tmp_path, tiny_model_dir, served, caplog):
    with caplog.at_level(logging.WARNING, logger="server.serving"):
        result = run_backend(tmp_path, tiny_model_dir, "--insecure")
    assert result.exit_code == 0, result.output
    assert not [r for r in caplog.records if r.name == "server.serving"] and not result.stderr.strip()
