"""Fine-tuning on real medical documents: the token classifier learns, and its spans are exact."""
import numpy as np
import pytest

from ml_backend.evaluation import evaluate_spans
from ml_backend.models import Examples, TokenClassifier, load_model
from ml_backend.schema import parse_label_config
from ml_backend.training import TrainOptions, evaluate_models, examples_for, gate, train_control
from server.config import default_model
from tests.plugins.backend import DATA, read_jsonl

LABELS = ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"]


def ex(docs):
    return Examples([d["text"] for d in docs], [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in docs])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    train = read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:240]
    model = TokenClassifier(LABELS, model_name=default_model(), train_length=128, stride=32)
    info = model.fit(ex(train), epochs=2, lr=1e-4, batch_size=16, progress=False)
    path = tmp_path_factory.mktemp("ncbi-model")
    model.save(path)
    return model, info, path


@pytest.mark.slow
def test_fine_tuned_token_classifier_finds_diseases_in_held_out_abstracts(trained):
    model, info, _ = trained
    assert info["steps"] > 0 and info["history"][-1]["train_loss"] < info["history"][0]["train_loss"] * 1.5
    test = read_jsonl(DATA / "ncbi_disease" / "test.jsonl")
    preds = model.predict([d["text"] for d in test])
    for d, p in zip(test, preds):
        for s in p.spans:
            assert 0 <= s.start < s.end <= len(d["text"]) and s.label in LABELS
    m = evaluate_spans([[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in test], [[s.key() for s in p.spans] for p in preds])
    assert m["entity_f1"] > 0.3, m


@pytest.mark.slow
def test_small_windows_lose_and_duplicate_nothing_at_boundaries(trained):
    model, _, path = trained
    test = read_jsonl(DATA / "ncbi_disease" / "test.jsonl")[:30]
    texts = [d["text"] for d in test]
    whole = [{s.key() for s in p.spans} for p in model.predict(texts)]
    small = load_model(path, max_length=48, stride=16)
    windowed = small.predict(texts)
    agree, total = 0, 0
    for w, p in zip(whole, windowed):
        keys = [s.key() for s in p.spans]
        assert len(keys) == len(set(keys)), "an entity was reported twice"
        for a, b in zip(p.spans, p.spans[1:]):
            assert a.end <= b.start, "overlapping spans after merging windows"
        agree += len(w & set(keys))
        total += len(w)
    assert total and agree / total > 0.8  # 48-token windows see less context, yet keep most entities


@pytest.mark.slow
def test_int8_costs_little_entity_f1(trained):
    _, _, path = trained
    test = read_jsonl(DATA / "ncbi_disease" / "test.jsonl")
    gold = [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in test]
    texts = [d["text"] for d in test]
    fp32 = evaluate_spans(gold, [[s.key() for s in p.spans] for p in load_model(path).predict(texts)])["entity_f1"]
    int8 = evaluate_spans(gold, [[s.key() for s in p.spans] for p in load_model(path, quantize="int8").predict(texts)])["entity_f1"]
    assert int8 > fp32 - 0.03, (fp32, int8)
