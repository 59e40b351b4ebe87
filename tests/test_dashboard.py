"""The per-project dashboard: the snapshot the server writes (server/dashboard_data.py) and the page the backend
renders from it (ml_backend/dashboard/, GET /dashboard), in a test client and in a headless Chromium."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ml_backend import create_app
from ml_backend.dashboard import MAX_BUCKETS, MAX_SNAPSHOT_BYTES, MAX_VERSIONS, SNAPSHOT_FILE
from ml_backend.registry import Registry
from server import dashboard_data, effort, store
from server.loop import stopping_report
from tests.test_effort import SPEC, choice, span, task

PID = 7
PASSWORD = "a-long-enough-password"


def _metrics(primary: float) -> dict:
    return {"primary": primary, "n_docs": 40, "controls": {"entities": {"entity_f1": primary, "macro_f1": primary},
                                                          "urgency": {"macro_f1": primary - 0.05, "accuracy": primary}}}


def fill_project(db, registry: Registry, pid: int = PID, rounds: int = 4, annotations: int = 120, decision: str = "") -> list[dict]:
    """A project as rounds leave it: version rows in the store (every third round rejected), version.json records and
    serving.json in the models dir, effort rows read from Label Studio-shaped tasks (a share in the control group)."""
    store.upsert_project(db, id=pid, schema_name="medical_records", title="Medical records")
    t0 = 1_760_000_000.0
    promoted = []
    for i in range(rounds):
        version = f"v{i:03d}"
        status = "rejected" if i % 3 == 2 else "promoted"
        primary = 0.4 + 0.5 * (1 - 0.8 ** (i + 1))
        store.record_version(db, project_id=pid, version=version, trigger="webhook", status=status, started_at=t0 + 3600 * i,
                             labeled_docs=20 * (i + 1), pool_docs=500 - 20 * i, primary=primary - (0.05 if status == "rejected" else 0),
                             serving_primary=promoted[-1][1] if promoted else 0.3, strategy="least_confidence",
                             decision=decision or ("promoted: better" if status == "promoted" else "rejected: worse by 0.05"),
                             pool_agreement=min(1.0, 0.9 + 0.015 * i), metrics=json.dumps(_metrics(primary)), duration_s=30.0)
        if status == "promoted":
            vdir = registry.path(str(pid), version)
            vdir.mkdir(parents=True, exist_ok=True)
            (vdir / "version.json").write_text(json.dumps({"version": version, "promoted_at": t0 + 3600 * i + 30,
                                                           "metrics": _metrics(primary), "decision": "promoted: better"}))
            promoted.append((version, primary))
    registry.path(str(pid), file="serving.json").write_text(json.dumps({"version": promoted[-1][0]}))
    tasks = []
    for n in range(annotations):
        version = promoted[min(len(promoted) - 1, n * len(promoted) // annotations)][0]
        pred = {"id": 10_000 + n, "model_version": version, "score": 0.5, "result": [span(0, 5, "Disease"), choice("routine")]}
        result = [span(0, 5, "Disease")] + ([choice("urgent")] if n % 3 else [choice("routine")])
        tasks.append(task(n + 1, [{"id": 50_000 + n, "lead_time": 20.0 + n % 17, "parent_prediction": 10_000 + n, "completed_by": 1 + n % 3,
                                   "result": result, "updated_at": f"2026-01-01T{n // 60 % 24:02d}:{n % 60:02d}:00Z"}], [pred]))
    store.record_effort(db, effort.annotation_rows(pid, tasks, SPEC, control_share=0.2))
    return store.list_versions(db, pid)


@pytest.fixture
def home(tmp_path):
    db = store.open_db(tmp_path / "store.db")
    registry = Registry(create_app_settings(tmp_path))
    return db, registry, tmp_path


def create_app_settings(tmp_path, **kw):
    from ml_backend.settings import BackendSettings

    return BackendSettings(model="", models_dir=tmp_path / "models", **kw)


def _write(db, registry, tmp_path, **kw) -> Path:
    rows = store.list_versions(db, PID)
    log = tmp_path / "train-7.log"
    log.write_text("loading\n\nv003: promoted — better\n")
    return dashboard_data.write_snapshot(db, registry, PID, stopping=stopping_report(rows), log_path=log,
                                         starter={"status": "promoted", "version": "v000", "schema": "medical_records", "language": "en",
                                                  "decision": "starter set", "pid": 123}, **kw)


def test_the_snapshot_holds_the_reports_numbers_and_what_the_round_knows(home):
    db, registry, tmp_path = home
    fill_project(db, registry)
    path = _write(db, registry, tmp_path, queue_scores=[0.05, 0.1, 0.5, 0.95, 1.0])
    assert path == registry.path(str(PID), file=SNAPSHOT_FILE)
    snap = json.loads(path.read_text())
    rows = store.list_effort(db, PID)
    expected = effort.summary(rows)  # the report's computation, not a second one
    assert snap["effort"]["with_suggestions"]["seconds_mean"] == pytest.approx(expected["with_suggestions"]["seconds_mean"])
    assert snap["effort"]["control"]["annotations"] == expected["control"]["annotations"] > 0
    assert snap["effort"]["seconds_saved_per_doc"] == expected["seconds_saved_per_doc"]
    assert set(snap["effort"]["by_version"]) == set(expected["by_version"])
    assert snap["labels"] == {"annotations": 120, "completed": 120, "labeled_docs": 80, "pool_docs": 440}
    assert [v["version"] for v in snap["versions"]] == ["v000", "v001", "v002", "v003"] and snap["versions"][2]["status"] == "rejected"
    buckets = snap["effort_over_time"]
    assert 1 < len(buckets) <= MAX_BUCKETS and buckets[-1]["until"] == 120
    assert sum(b["with_suggestions"]["annotations"] + b["control"]["annotations"] for b in buckets) == 120
    assert snap["queue"]["tasks"] == 5 and sum(snap["queue"]["bins"]) == 5 and snap["queue"]["bins"][-1] == 2
    assert snap["stopping"]["reason"] and snap["last_round"]["line"].startswith("v003: promoted")
    assert snap["log_line"]["line"] == "v003: promoted — better" and "pid" not in snap["starter"]


def test_sections_the_caller_cannot_see_are_carried_over(home):
    db, registry, tmp_path = home
    fill_project(db, registry)
    _write(db, registry, tmp_path, queue_scores=[0.2, 0.3])
    path = dashboard_data.write_snapshot(db, registry, PID)  # the loop's call may hold neither queue nor starter
    snap = json.loads(path.read_text())
    assert snap["queue"]["tasks"] == 2 and snap["starter"]["status"] == "promoted" and snap["stopping"] is None
    assert not list(registry.path(str(PID)).glob(".dashboard-*"))  # the temp file was renamed


def test_the_snapshot_stays_within_its_bound_whatever_the_project_size(home):
    db, registry, tmp_path = home
    fill_project(db, registry, rounds=260, annotations=3000, decision="x" * 5000)
    path = dashboard_data.write_snapshot(db, registry, PID, queue_scores=[i / 10_000 for i in range(10_000)])
    snap = json.loads(path.read_text())
    assert path.stat().st_size <= MAX_SNAPSHOT_BYTES
    assert len(snap["versions"]) <= MAX_VERSIONS and snap["versions_total"] == 260
    assert len(snap["effort_over_time"]) <= MAX_BUCKETS and len(snap["effort"]["by_version"]) <= MAX_VERSIONS
    assert max(len(v["decision"]) for v in snap["versions"]) <= 240


def test_queue_scores_come_from_the_unlabeled_tasks_newest_predictions():
    tasks = [{"id": 1, "annotations": [], "predictions": [{"id": 1, "score": 0.9, "created_at": "2026-01-01"},
                                                           {"id": 2, "score": 0.2, "created_at": "2026-01-02"}]},
             {"id": 2, "annotations": [{"was_cancelled": False}], "predictions": [{"id": 3, "score": 0.1}]},
             {"id": 3, "annotations": [{"was_cancelled": True}], "predictions": [{"id": 4, "score": 0.4}]},
             {"id": 4, "annotations": [], "predictions": []}]
    assert dashboard_data.queue_scores_of(tasks) == [0.2, 0.4]


def svgs_of(html: str) -> list[ET.Element]:
    """Every inline chart, parsed as standalone XML (AssertionError when one is not well-formed)."""
    found = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    return [ET.fromstring(s) for s in found]


@pytest.fixture
def client_and_home(home):
    db, registry, tmp_path = home
    app = create_app(create_app_settings(tmp_path))
    return app.test_client(), db, registry, tmp_path


def test_the_page_shows_numbers_and_well_formed_charts(client_and_home):
    client, db, registry, tmp_path = client_and_home
    fill_project(db, registry)
    _write(db, registry, tmp_path, queue_scores=[0.1, 0.3, 0.35])
    resp = client.get(f"/dashboard?project={PID}")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert "script-src" not in resp.headers["Content-Security-Policy"] and "default-src 'none'" in resp.headers["Content-Security-Policy"]
    html = resp.get_data(as_text=True)
    charts = svgs_of(html)
    assert len(charts) == 5  # learning curve, seconds and edits over time, seconds by group/version, queue
    assert all(c.tag == "{http://www.w3.org/2000/svg}svg" for c in charts)
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # loads nothing
    for text in ("Medical records", "v003", "rejected: worse by 0.05", "Time saved by suggestions", "Stop labeling",
                 "v003: promoted — better", "3</b> unlabeled task(s)", "entities", "urgency"):
        assert text in html, text
    saved = effort.summary(store.list_effort(db, PID))["seconds_saved_per_doc"]
    assert f"{saved['mean']:.1f} s" in html


def test_without_a_snapshot_the_page_shows_the_registry_and_says_what_is_missing(client_and_home):
    client, db, registry, tmp_path = client_and_home
    fill_project(db, registry)
    html = client.get(f"/dashboard?project={PID}").get_data(as_text=True)
    assert 'id="missing"' in html and "no dashboard snapshot yet" in html
    assert "v003" in html and "v002" not in html  # the registry knows promoted versions only
    assert len(svgs_of(html)) == 1 and "Test metric by promoted version" in html
    registry.path(str(PID), file=SNAPSHOT_FILE).write_text("{not json")
    html = client.get(f"/dashboard?project={PID}").get_data(as_text=True)
    assert "unreadable" in html and "v003" in html


def test_unknown_project_is_a_json_404_and_a_bad_key_a_400(client_and_home):
    client, db, registry, _ = client_and_home
    fill_project(db, registry)
    resp = client.get("/dashboard?project=999")
    assert resp.status_code == 404 and resp.json["error"] == "NotFound" and "999" in resp.json["message"]
    assert client.get("/dashboard?project=../etc").status_code == 400
    index = client.get("/dashboard").get_data(as_text=True)
    assert f'href="/dashboard?project={PID}"' in index and "Medical records" not in index  # no snapshot yet: the key


def test_the_dashboard_needs_the_backends_basic_auth(home):
    db, registry, tmp_path = home
    fill_project(db, registry)
    _write(db, registry, tmp_path)
    client = create_app(create_app_settings(tmp_path, basic_auth_user="ls", basic_auth_pass=PASSWORD)).test_client()
    for url in ("/dashboard", f"/dashboard?project={PID}", "/dashboard?project=999"):
        resp = client.get(url)
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Basic") and "Medical" not in resp.get_data(as_text=True)
    auth = {"Authorization": "Basic " + base64.b64encode(f"ls:{PASSWORD}".encode()).decode()}
    assert client.get(f"/dashboard?project={PID}", headers=auth).status_code == 200
    assert "Medical records" in client.get("/dashboard", headers=auth).get_data(as_text=True)


# --- in a real browser -----------------------------------------------------------------------------------------


def _chromium() -> tuple[str, str] | None:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def test_the_page_in_headless_chromium(home, tmp_path):
    found = _chromium()
    if found is None:
        pytest.skip("chromium or chromedriver not found (make browser installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[test]')")
    from selenium.webdriver.common.by import By
    from werkzeug.serving import make_server

    db, registry, home_dir = home
    fill_project(db, registry, rounds=7, annotations=400)
    _write(db, registry, home_dir, queue_scores=[(i % 50) / 50 for i in range(300)])
    app = create_app(create_app_settings(home_dir))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,2400"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=found[1]), options=opts)
    try:
        driver.get(f"http://127.0.0.1:{server.server_port}/dashboard?project={PID}")
        assert driver.title == "goldloop · Medical records"
        charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) == 5 and all(c.size["width"] > 300 and c.size["height"] > 100 for c in charts)
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart polyline")) >= 3  # curves drawn, not empty charts
        assert driver.find_element(By.ID, "card-labels").text.startswith("140")
        assert driver.find_element(By.ID, "card-versions").text.startswith("5 / 7")
        assert "s a document" in driver.find_element(By.ID, "time-saved").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#versions tbody tr")) == 7
        shots = [tmp_path / "dashboard.png"]
        if os.environ.get("GOLDLOOP_ARTIFACTS"):
            shots.append(Path(os.environ["GOLDLOOP_ARTIFACTS"]) / "dashboard.png")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, max(800, int(height) + 160))  # the window's frame takes some of its height
        time.sleep(0.2)
        for shot in shots:
            shot.parent.mkdir(parents=True, exist_ok=True)
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
        server.shutdown()
        thread.join(5)


def test_goldloop_report_writes_the_snapshot_too(home, settings):
    from types import SimpleNamespace

    from server.project import ProjectContext
    from server.report import write_report

    db, registry, tmp_path = home
    rows = fill_project(db, registry)
    spent = effort.summary(store.list_effort(db, PID))
    ctx = ProjectContext(settings, db, None, SimpleNamespace(id=PID, title="Medical records"), SPEC, registry)
    write_report(rows, tmp_path / "report", "Medical records", stopping_report(rows), spent, ctx=ctx)
    snap = json.loads(registry.path(str(PID), file=SNAPSHOT_FILE).read_text())
    assert (tmp_path / "report" / "report.md").exists() and snap["title"] == "Medical records"
    assert snap["effort"]["seconds_saved_per_doc"] == spent["seconds_saved_per_doc"] and snap["stopping"]["reason"]
    blocked = registry.path(str(PID), file=SNAPSHOT_FILE)
    blocked.unlink()
    (blocked / "x").mkdir(parents=True)  # a snapshot that cannot be replaced: a job or report goes on without it
    assert dashboard_data.write_snapshot_quietly(ctx, read_queue=False) is None
    assert not list(registry.path(str(PID)).glob(".dashboard-*"))


def test_the_label_studio_description_links_the_dashboard_and_keeps_the_schema_marker():
    from types import SimpleNamespace

    from server import ls_client

    desc = ls_client.project_description("medical_records", "http://127.0.0.1:9090/", 12)
    assert desc.splitlines() == ["goldloop schema: medical_records", "Dashboard: http://127.0.0.1:9090/dashboard?project=12"]
    assert ls_client.schema_name_of(SimpleNamespace(description=desc)) == "medical_records"
    assert ls_client.schema_name_of(SimpleNamespace(description="goldloop schema: contracts")) == "contracts"


def test_numbers_stored_as_text_are_numbers_in_the_snapshot():
    rows = dashboard_data.version_rows([{"version": "v1", "started_at": "5.0", "primary": "0.5", "serving_primary": None, "labeled_docs": "40"}])
    assert rows == [{"version": "v1", "started_at": 5.0, "primary": 0.5, "labeled_docs": 40, "decision": None}]
