"""Property-based fuzzing of every backend route (a fast subset; bench/fuzz_backend.py runs 10,000 cases).

The property: never a 5xx, always a JSON answer (Prometheus text from /metrics), the app healthy afterwards,
and no file written outside the data dir.
"""
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from bench.fuzz_backend import RAW_BODIES, STRANGE_CONFIGS, assert_healthy, check, fuzz, requests
from ml_backend import create_app


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory, tiny_model_dir):
    from server.config import Settings

    home = tmp_path_factory.mktemp("fuzz") / "home"
    backend = Settings(home=home, testing=True).backend_settings().with_overrides(model=tiny_model_dir)
    client = create_app(backend, trainer=lambda project, event: None).test_client()
    client.home = home
    return client


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(req=requests())
def test_no_request_gets_a_5xx_or_a_non_json_answer(fuzz_client, req):
    check(fuzz_client, req)


@pytest.mark.parametrize("body", RAW_BODIES, ids=lambda b: f"{len(b)}-bytes")
@pytest.mark.parametrize("path", ["/setup", "/predict", "/webhook"])
def test_raw_bodies_on_every_post_route(fuzz_client, path, body):
    status = check(fuzz_client, {"method": "POST", "path": path, "query": b"", "body": body, "ctype": "application/json"})
    assert status == 413 if len(body) > 8 * 1024 * 1024 else status < 500


@pytest.mark.parametrize("config", STRANGE_CONFIGS, ids=range(len(STRANGE_CONFIGS)))
def test_strange_configs_on_setup_and_predict(fuzz_client, config):
    import json

    for path, key in (("/setup", "schema"), ("/predict", "label_config")):
        body = json.dumps({"project": "4.1", key: config, "tasks": [{"data": {"text": "Acme shares rose.", "title": "a", "body": "b"}}]}).encode()
        check(fuzz_client, {"method": "POST", "path": path, "query": b"", "body": body, "ctype": "application/json"})


def test_the_app_is_healthy_after_the_fuzzing_and_wrote_nothing_outside_its_data_dir(fuzz_client):
    fuzz(fuzz_client, 50, random_seed=1)
    assert_healthy(fuzz_client)
    root = Path(fuzz_client.home).parent
    assert {p.name for p in root.iterdir()} <= {"home"}
