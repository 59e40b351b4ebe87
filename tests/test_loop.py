"""server.loop without Label Studio: pool agreement, the stopping criterion, the queue order of margin and entropy
(the round itself: test_e2e_loop)."""
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


def _span_project(tiny_model_dir, with_choice=False):
    from ml_backend.models import Examples, TfidfClassifier, TokenClassifier
    from ml_backend.registry import ProjectModel
    from ml_backend.schema import parse_label_config
    from tests.plugins.backend import DATA, read_jsonl

    docs = read_jsonl(DATA / "ncbi_disease" / "train.jsonl")
    choice = '<Choices name="kind" toName="text"><Choice value="a"/><Choice value="b"/><Choice value="c"/></Choices>' if with_choice else ""
    spec = parse_label_config(f'<View><Text name="text" value="$text"/><Labels name="ents" toName="text"><Label value="Disease"/></Labels>{choice}</View>')
    import torch

    torch.manual_seed(0)  # the head is drawn at load: the same model whatever ran before in this process
    tok = TokenClassifier(["Disease"], model_name=tiny_model_dir, train_length=32, stride=8)
    tok.fit(Examples([d["text"] for d in docs[:6]], [[(s["start"], s["end"], "Disease") for s in d["spans"]] for d in docs[:6]]),
            lr=5e-3, epochs=2, batch_size=4, val_fraction=0, progress=False)
    models = {"ents": tok}
    texts = [d["text"][:300] for d in docs[20:44]]
    if with_choice:  # sure of the documents it was fitted on (many times over), unsure of the others
        tfidf = TfidfClassifier(["a", "b", "c"])
        tfidf.fit(Examples(texts[:9] * 10, [[("a", "b", "c")[i % 3]] for i in range(9)] * 10))
        models["kind"] = tfidf
    return ProjectModel(spec, "v1", models), {"text": texts}


def test_margin_orders_a_span_project_by_its_tokens_margin_not_by_its_confidence(tiny_model_dir):
    import numpy as np

    from ml_backend.sampling import span_uncertainty
    from server.loop import order_scores

    pm, texts = _span_project(tiny_model_dir)
    items = pm.to_results(texts)
    margin = span_uncertainty([p for _, p in pm.models["ents"].token_probs(texts["text"])], "margin")
    scores = np.array(order_scores("margin", items, pm, texts))
    # Label Studio serves the lowest score first: the queue is the documents by margin uncertainty, most uncertain first
    assert list(np.argsort(scores, kind="stable")) == list(np.argsort(-margin, kind="stable"))
    by_confidence = list(np.argsort(order_scores("least_confidence", items, pm, texts), kind="stable"))
    assert by_confidence != list(np.argsort(scores, kind="stable"))  # the two measures rank these documents differently
    # total_margin: the queue follows the summed margin of every token
    total = span_uncertainty([p for _, p in pm.models["ents"].token_probs(texts["text"])], "total_margin")
    by_total = list(np.argsort(order_scores("total_margin", items, pm, texts), kind="stable"))
    assert by_total == list(np.argsort(-total, kind="stable")) != list(np.argsort(scores, kind="stable"))


def test_margin_takes_the_most_uncertain_control_of_each_document(tiny_model_dir):
    import numpy as np

    from ml_backend.sampling import span_uncertainty, uncertainty
    from server.loop import strategy_uncertainty

    pm, texts = _span_project(tiny_model_dir, with_choice=True)
    spans = span_uncertainty([p for _, p in pm.models["ents"].token_probs(texts["text"])], "entropy")
    choice = uncertainty(np.array([[p.probs[x] for x in "abc"] for p in pm.models["kind"].predict(texts["text"])]), "entropy")
    combined = strategy_uncertainty("entropy", pm, texts)
    np.testing.assert_allclose(combined, np.maximum(spans, choice))
    assert (combined == spans).any() and (combined == choice).any()  # each control decides for some documents
