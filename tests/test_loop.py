"""server.loop without Label Studio: pool agreement and the stopping criterion (the round itself: test_e2e_loop)."""
import pytest

from server.loop import pool_agreement, stopping_report


def test_stopping_criterion():
    a = [{"result": [{"from_name": "s", "value": {"choices": ["x"]}}]}, {"result": []}]
    b = [{"result": [{"from_name": "s", "value": {"choices": ["y"]}}]}, {"result": []}]
    assert pool_agreement(a, a) == 1.0 and pool_agreement(a, b) == 0.5 and pool_agreement([], b) is None
    rows = [{"status": "promoted", "primary": 0.70, "labeled_docs": 100, "started_at": 1, "pool_agreement": None},
            {"status": "rejected", "primary": 0.50, "labeled_docs": 150, "started_at": 2},
            {"status": "promoted", "primary": 0.701, "labeled_docs": 200, "started_at": 3, "pool_agreement": 0.99}]
    rep = stopping_report(rows)
    assert rep["stop"] and rep["metric_gain_per_100_labels"] == pytest.approx(0.001)
    rows[-1]["primary"] = 0.80
    assert not stopping_report(rows)["stop"]
    assert not stopping_report(rows[:1])["stop"]


def test_a_burst_of_start_training_runs_one_round_and_queues_at_most_one(settings):
    """100 START_TRAINING webhooks at once: one job runs, one waits, the other 98 fold into the waiting one."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from ml_backend import create_app

    release, lock = threading.Event(), threading.Lock()
    calls, running, most = [], [0], [0]

    def trainer(project, event):  # the injected callback; a real round would run `goldloop train` here
        with lock:
            calls.append(project)
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(30)
        with lock:
            running[0] -= 1

    app = create_app(settings.backend_settings(), trainer=trainer)

    def post(_):
        r = app.test_client().post("/webhook", json={"action": "START_TRAINING", "project": {"id": 5}})
        return r.status_code, r.get_json()["training"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(100)))
    assert {code for code, _ in answers} == {201}
    said = [a for _, a in answers]
    assert said.count("started") == 1 and said.count("queued after the running job") == 99
    release.set()
    state = app.extensions["goldloop"]
    deadline = time.time() + 30
    while time.time() < deadline and state.training_running("5"):
        time.sleep(0.05)
    assert not state.training_running("5")
    assert calls == ["5", "5"] and most[0] == 1, (calls, most)
