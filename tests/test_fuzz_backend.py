"""Property-based fuzzing of every backend route (a fast subset; bench/fuzz_backend.py runs 10,000 cases).

The property: never a 5xx, always a JSON answer (Prometheus text from /metrics), the app healthy afterwards,
and no file written outside the data dir.
"""
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from bench import fuzz_probe
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


def probe_client(home: Path, **overrides):
    from server.config import Settings

    backend = Settings(home=home, testing=True).backend_settings().with_overrides(**overrides)
    return create_app(backend, trainer=lambda project, event: None).test_client()


def test_the_outside_probe_corpus_gets_no_5xx_and_predict_stays_up(tmp_path, tiny_model_dir):
    """Long spans by webhook, nested prefixes, configs past the limits, new project ids past the limit: every
    request answers below 500 and the project's next /predict answers 200 (tiny encoder: statuses only)."""
    client = probe_client(tmp_path / "home", model=tiny_model_dir, max_projects=40)
    rows, summary = fuzz_probe.run(client, project_ids=60, nested=60)
    assert summary["5xx"] == 0 and summary["broken_follow_ups"] == 0, summary
    status = {r.name: r.status for r in rows}
    assert all(status[n] == 200 for n in status if n.startswith("webhook:") and "span" in n or "nested" in n)
    assert status["predict: 32 controls x 20 choices"] == 200 and status["predict: 1 controls x 500 choices"] == 200
    assert status["predict: 33 controls x 2 choices"] == status["predict: 500 controls x 2 choices"] == 400
    assert status["predict: 1 controls x 3000 choices"] == 400 and status["webhook: 60 new project ids"] == 400
    assert_healthy(client, project=101)  # a project the corpus used: every new id is refused by now


PROBE_RSS_GROWTH_MB = 400  # docs/security.md: what the whole probe corpus may add to a backend on MiniLM
PROBE_SLOWEST_S = 15.0  # the first /predict of a 32-control config embeds 640 label names: 2-10 s on 2 busy cores


@pytest.mark.slow
def test_the_outside_probe_corpus_on_the_real_encoder_holds_the_rss_and_latency_bounds(tmp_path):
    client = probe_client(tmp_path / "home")
    rows, summary = fuzz_probe.run(client)
    assert summary["5xx"] == 0 and summary["broken_follow_ups"] == 0, summary
    assert summary["rss_end_mb"] - summary["rss_start_mb"] < PROBE_RSS_GROWTH_MB, fuzz_probe.table(rows, summary)
    assert summary["slowest_s"] < PROBE_SLOWEST_S, fuzz_probe.table(rows, summary)
