"""Fine-tuning on real medical documents: the token classifier learns, and its spans are exact."""
from pathlib import Path

import pytest

from ml_backend.alignment import windows
from ml_backend.evaluation import evaluate_spans
from ml_backend.models import Examples, TokenClassifier, load_model
from ml_backend.schema import parse_label_config
from ml_backend.training import TrainOptions, evaluate_models, examples_for, gate, has_labels, train_control
from server.config import default_model
from tests.plugins.backend import DATA, read_jsonl

LABELS = ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"]


def ex(docs):
    return Examples([d["text"] for d in docs], [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in docs])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    train = read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:240]
    model = TokenClassifier(LABELS, model_name=default_model(), train_length=128, stride=32)
    info = model.fit(ex(train), epochs=4, lr=1e-4, batch_size=16, progress=False)
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
    """48-token windows: entities that straddle a window boundary survive the overlap merge.

    Short windows see less context, so some entities change anyway (inside a window as much as at its edge).
    What overlap + merging must guarantee: an entity cut by a naive chunk boundary is found about as often
    as one inside a chunk, far more often than with non-overlapping chunks, and never twice.
    """
    model, _, path = trained
    texts = [d["text"] for d in read_jsonl(DATA / "ncbi_disease" / "test.jsonl")]
    whole = [{s.key() for s in p.spans} for p in model.predict(texts)]
    ids, offsets = model.tokenize(texts)
    overlapped = load_model(path, max_length=48, stride=16).predict(texts)
    naive = [{s.key() for s in p.spans} for p in load_model(path, max_length=48, stride=0).predict(texts)]
    found = {"edge": [], "inner": [], "edge_naive": []}
    for d, (w, p) in enumerate(zip(whole, overlapped)):
        keys = [s.key() for s in p.spans]
        assert len(keys) == len(set(keys)), "an entity was reported twice"
        for a, b in zip(p.spans, p.spans[1:]):
            assert a.end <= b.start, "overlapping spans after merging windows"
        for s in p.spans:
            piece = texts[d][s.start : s.end]
            assert 0 <= s.start < s.end <= len(texts[d]) and piece == piece.strip()
        cuts = [a for a, _ in windows(len(ids[d]), 46, 0)][1:]  # where non-overlapping 48-token chunks cut
        for key in w:
            toks = [i for i, (a, b) in enumerate(offsets[d]) if a < key[1] and b > key[0]]
            edge = any(toks[0] < c <= toks[-1] for c in cuts)
            found["edge" if edge else "inner"].append(key in set(keys))
            if edge:
                found["edge_naive"].append(key in naive[d])
    rate = {k: sum(v) / len(v) for k, v in found.items()}
    assert len(found["edge"]) >= 15, found  # enough entities sit on a cut for the comparison to mean something
    assert rate["edge"] >= rate["inner"] - 0.2, rate  # measured 0.71 vs 0.75
    assert rate["edge"] >= rate["edge_naive"] + 0.3, rate  # non-overlapping chunks split them: measured 0.18
    assert sum(found["inner"]) / len(found["inner"]) > 0.5, rate


@pytest.mark.slow
def test_reduced_precision_serving_costs_little_entity_f1(trained):
    _, _, path = trained
    test = read_jsonl(DATA / "ncbi_disease" / "test.jsonl")
    gold = [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in test]
    texts = [d["text"] for d in test]

    def f1(quantize):
        return evaluate_spans(gold, [[s.key() for s in p.spans] for p in load_model(path, quantize=quantize).predict(texts)])["entity_f1"]

    fp32, bf16, int8, int8_torch = f1("none"), f1("bf16"), f1("int8"), f1("int8-torch")
    print(f"entity F1 fp32 {fp32:.4f} bf16 {bf16:.4f} int8 {int8:.4f} int8-torch {int8_torch:.4f}")
    assert bf16 > fp32 - 0.01, (fp32, bf16)
    assert int8 > fp32 - 0.015, (fp32, int8)  # ONNX Runtime, per-channel weights
    assert int8_torch > fp32 - 0.06, (fp32, int8_torch)  # PyTorch dynamic: measured ~3.5 points on this model


def test_domain_adaptive_mlm_learns_and_feeds_fine_tuning(tiny_model_dir, tmp_path):
    from ml_backend.training import domain_adapt

    texts = [d["text"] for d in read_jsonl(DATA / "ncbi_disease" / "test.jsonl")[:20]]
    info = domain_adapt(tiny_model_dir, texts, tmp_path / "adapted", steps=40, batch_size=8, lr=1e-3, progress=False)
    assert info["loss_last"] < info["loss_first"]
    model = TokenClassifier(LABELS, model_name=str(tmp_path / "adapted"), train_length=64)
    model.fit(ex(read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:6]), epochs=1, progress=False)
    assert len(model.predict(texts[:2])) == 2


def test_mlm_head_warm_up_trains_the_new_head_alone(tiny_model_dir, tmp_path):
    """The encoder has no MLM head: the new head trains first with the encoder frozen, then everything trains."""
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM

    from ml_backend.training import domain_adapt

    texts = [d["text"] for d in read_jsonl(DATA / "ncbi_disease" / "test.jsonl")[:20]]
    base = AutoModel.from_pretrained(tiny_model_dir).state_dict()
    warm = domain_adapt(tiny_model_dir, texts, tmp_path / "warm", steps=0, head_warmup=30, batch_size=8, progress=False)
    assert warm["head_warmup"] == 30 and warm["head_loss_last"] < warm["head_loss_first"]
    adapted = AutoModelForMaskedLM.from_pretrained(tmp_path / "warm")
    encoder = adapted.base_model.state_dict()
    assert all(torch.equal(encoder[k], v) for k, v in base.items() if k in encoder)  # encoder untouched
    head = AutoModelForMaskedLM.from_pretrained(tiny_model_dir).cls.predictions.transform.dense.weight
    assert not torch.equal(adapted.cls.predictions.transform.dense.weight, head)  # (fresh heads share the seed)
    both = domain_adapt(tiny_model_dir, texts, tmp_path / "both", steps=5, batch_size=8, progress=False)
    assert both["head_warmup"] == 5  # default: as many head steps as encoder steps when the head is new
    encoder = AutoModelForMaskedLM.from_pretrained(tmp_path / "both").base_model.state_dict()
    assert not torch.equal(encoder["embeddings.word_embeddings.weight"], base["embeddings.word_embeddings.weight"])
    again = domain_adapt(str(tmp_path / "both"), texts, tmp_path / "again", steps=2, batch_size=8, progress=False)
    assert again["head_warmup"] == 0  # the saved model has its head now


def test_adapted_encoder_is_reused_while_the_pool_shrinks(tiny_model_dir, tmp_path):
    """Rounds label pool documents away: the encoder adapted on the larger pool serves the smaller one."""
    from ml_backend.training import MLM_REUSE_COVERAGE, adapted_encoder

    texts = [d["text"] for d in read_jsonl(DATA / "ncbi_disease" / "test.jsonl")[:20]]
    opts = TrainOptions(mlm_steps=2, work_dir=str(tmp_path / "enc"), model_name=tiny_model_dir, progress=False)
    first, rec = adapted_encoder(opts, texts)
    assert rec["steps"] == 2 and "reused" not in rec and Path(first, "config.json").exists()
    # 4 documents labeled: the rest of the pool is still covered in full
    again, rec = adapted_encoder(opts, texts[4:])
    assert again == first and rec == {"reused": first, "coverage": 1.0}
    # 1 new document among 19 known ones: 18/19 covered, above the reuse line
    mixed = texts[1:19] + ["A new report of familial adenomatous polyposis."]
    assert 18 / 19 >= MLM_REUSE_COVERAGE and adapted_encoder(opts, mixed)[0] == first
    # mostly new documents, another step count or another base model: a new adaptation
    fresh = [d["text"] for d in read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:10]] + texts[:2]
    other, rec = adapted_encoder(opts, fresh)
    assert other != first and "reused" not in rec
    longer, rec = adapted_encoder(TrainOptions(**{**opts.__dict__, "mlm_steps": 3}), texts)
    assert longer not in (first, other) and rec["steps"] == 3
    # a record that cannot be read is not trusted
    Path(first, "adapted_on.json").write_text("{not json", encoding="utf-8")
    rebuilt, rec = adapted_encoder(opts, texts[4:])
    assert "reused" not in rec and Path(rebuilt, "adapted_on.json").exists()


def test_a_seed_gives_the_same_model_whatever_ran_before(tiny_model_dir):
    """The new classification head is drawn when the model loads: the loop seeds it, so one seed gives one model."""
    import torch

    spec = parse_label_config("""<View><Labels name="ents" toName="text"><Label value="SpecificDisease"/>
      <Label value="DiseaseClass"/><Label value="Modifier"/><Label value="CompositeMention"/></Labels>
      <Text name="text" value="$text"/></View>""")
    control = spec.controls[0]
    recs = [{"id": d["id"], "text": d["text"], "spans": d["spans"]} for d in read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:6]]
    opts = TrainOptions(cold_start_labels=2, model_name=tiny_model_dir, min_steps=2, epochs=1, train_length=32, progress=False)

    def weights():
        model, info = train_control(control, examples_for(control, recs[:4]), examples_for(control, recs[4:]), opts)
        assert info["kind"] == "token_classifier"
        return model.model.state_dict()

    first = weights()
    torch.rand(1000)  # other work in the process draws random numbers in between
    second = weights()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_gate_refuses_a_worse_candidate_and_accepts_within_tolerance():
    ok, why = gate({"primary": 0.60}, {"primary": 0.70}, 0.005)
    assert not ok and "worse than serving" in why
    assert gate({"primary": 0.698}, {"primary": 0.70}, 0.005)[0]
    assert not gate({"primary": None}, {"primary": 0.7}, 0.005)[0]


def test_round_training_on_real_tweets_beats_chance_and_self_training_adds_pseudo_labels():
    spec = parse_label_config("""<View><Text name="text" value="$text"/><Choices name="s" toName="text">
      <Choice value="Bearish"/><Choice value="Bullish"/><Choice value="Neutral"/></Choices></View>""")
    rows = read_jsonl(DATA / "twitter_financial_news" / "train.jsonl")
    recs = [{"id": r["id"], "text": r["text"], "choices": {"s": [r["label"]]}} for r in rows]
    train, test, pool = recs[::2], recs[1::4], [r["text"] for r in recs[3::4]]
    control = spec.controls[0]
    opts = TrainOptions(cold_start_labels=10_000, self_training=True, pseudo_threshold=0.5, progress=False)
    model, info = train_control(control, examples_for(control, train), examples_for(control, []), opts, pool)
    assert info["kind"] == "tfidf_lr" and info["pseudo_labels"] > 0
    m = evaluate_models(spec, {"s": model}, test)
    assert m["primary"] > 0.45 and m["controls"]["s"]["n"] == len(test)


def test_controls_nobody_labeled_are_not_trained_or_scored():
    spec = parse_label_config("""<View><Text name="text" value="$text"/>
      <Choices name="s" toName="text"><Choice value="up"/><Choice value="down"/></Choices>
      <Labels name="ents" toName="text"><Label value="Company"/></Labels></View>""")
    s, ents = spec.controls if spec.controls[0].name == "s" else spec.controls[::-1]
    recs = [{"id": i, "text": f"Acme shares {'rise' if i % 2 else 'fall'}", "choices": {"s": ["up" if i % 2 else "down"]}, "spans": []}
            for i in range(6)]
    assert has_labels(s, recs) and not has_labels(ents, recs)
    recs[0]["spans"] = [{"start": 0, "end": 4, "label": "Company", "from_name": "ents"}]
    assert has_labels(ents, recs)
    recs[0]["spans"][0]["label"] = "Person"  # not in the config: still unlabeled
    assert not has_labels(ents, recs)
    models = {"s": train_control(s, examples_for(s, recs), examples_for(s, []), TrainOptions(progress=False))[0]}
    m = evaluate_models(spec, models, recs, {"s"})
    assert set(m["controls"]) == {"s"} and m["primary"] == m["controls"]["s"]["macro_f1"]


def test_stopping_criterion():
    from server.loop import pool_agreement, stopping_report

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


def test_self_training_of_a_document_classifier_trains_a_fresh_student(tiny_model_dir):
    spec = parse_label_config("""<View><Text name="text" value="$text"/><Choices name="s" toName="text">
      <Choice value="Bearish"/><Choice value="Bullish"/><Choice value="Neutral"/></Choices></View>""")
    rows = read_jsonl(DATA / "twitter_financial_news" / "train.jsonl")
    recs = [{"id": r["id"], "text": r["text"], "choices": {"s": [r["label"]]}} for r in rows]
    control = spec.controls[0]
    train, dev, pool = recs[0:180:3], recs[1:46:3], [r["text"] for r in recs[2:182:3]]
    opts = TrainOptions(cold_start_labels=10, self_training=True, pseudo_threshold=0.0, pseudo_weight=0.5, progress=False,
                        model_name=tiny_model_dir, min_steps=8, train_length=32)
    model, info = train_control(control, examples_for(control, train), examples_for(control, dev), opts, pool)
    assert info["kind"] == "sequence_classifier" and info["pseudo_labels"] == len(pool)  # threshold 0: every pool text
    teacher_fit, student_fit = info["fit"], info["self_training_fit"]
    # the student starts again from the base encoder: its own linear probe and a full schedule on gold + pseudo
    assert student_fit["examples"] == len(train) + len(pool)
    assert student_fit["linear_probe"]["examples"] == len(train) + len(pool) and student_fit["steps"] >= 8
    assert teacher_fit["examples"] == len(train) and model.pooling == "mean"
    assert len(model.predict(["shares fall"])) == 1
