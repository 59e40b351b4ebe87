"""Contract tests over every model kind, plus the behaviour specific to each."""
import numpy as np
import pytest

from ml_backend.models import MODEL_KINDS, Examples, SpanMatcher, TfidfClassifier, TokenClassifier, load_model, model_class

SPAN_EXAMPLES = Examples(
    ["Patients with breast cancer and Breast Cancer relapse.", "No sign of cancer in the colon.", "Ataxia-telangiectasia is rare."],
    [[(14, 27, "Disease")], [(11, 17, "Disease")], [(0, 21, "Disease")]],
)
CHOICE_EXAMPLES = Examples(
    ["profits soared to a record", "shares jumped after strong sales", "the company cut its forecast", "losses widened and shares fell",
     "results were in line with guidance", "the board meets on tuesday"],
    [["positive"], ["positive"], ["negative"], ["negative"], ["neutral"], ["neutral"]],
)
LABELS = {"spans": ["Disease"], "choices": ["positive", "neutral", "negative"]}


def make(kind, tiny_model_dir):
    cls = model_class(kind)
    kw = {"model_name": tiny_model_dir, "max_length": 32, "stride": 8} if kind in ("token_classifier", "sequence_classifier", "prototype") else {}
    return cls(LABELS[cls.task], **kw)


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_contract_fit_predict_save_load(kind, tiny_model_dir, tmp_path):
    model = make(kind, tiny_model_dir)
    examples = SPAN_EXAMPLES if model.task == "spans" else CHOICE_EXAMPLES
    fit_opts = {"epochs": 1, "progress": False} if kind in ("token_classifier", "sequence_classifier") else {}
    info = model.fit(examples, **fit_opts)
    assert isinstance(info, dict)
    texts = examples.texts + ["", "x " * 200]
    preds = model.predict(texts)
    assert len(preds) == len(texts)
    for text, p in zip(texts, preds):
        assert 0.0 <= p.confidence <= 1.0
        if model.task == "spans":
            assert p.probs is None
            for s in p.spans:
                assert 0 <= s.start < s.end <= len(text) and s.label in LABELS["spans"] and 0 <= s.score <= 1
        else:
            assert set(p.probs) == set(LABELS["choices"]) and abs(sum(p.probs.values()) - 1) < 1e-4
    model.save(tmp_path / kind)
    again = load_model(tmp_path / kind)
    assert type(again) is type(model)
    for a, b in zip(preds, again.predict(texts)):
        assert [s.key() for s in a.spans] == [s.key() for s in b.spans]
        if a.probs:
            assert np.allclose(list(a.probs.values()), list(b.probs.values()), atol=1e-5)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown model kind"):
        model_class("nope")


def test_matcher_case_insensitive_whole_word_longest_first():
    m = SpanMatcher(["Disease", "Organ"])
    m.fit(Examples(["breast cancer; cancer; colon"], [[(0, 13, "Disease"), (15, 21, "Disease"), (23, 28, "Organ")]]))
    text = "Breast Cancer spreads. Cancers differ. The colon and semicolon."
    spans = [(text[s.start:s.end], s.label) for s in m.predict([text])[0].spans]
    assert spans == [("Breast Cancer", "Disease"), ("colon", "Organ")]  # not "Cancers", not "semicolon", no nested "Cancer"


def test_matcher_chinese_has_no_word_boundaries():
    m = SpanMatcher(["symptom"])
    m.add("呼吸困难", "symptom")
    (p,) = m.predict(["胸闷呼吸困难是怎么回事"])
    assert [(s.start, s.end) for s in p.spans] == [(2, 6)]


def test_matcher_label_by_majority_with_share_as_score():
    m = SpanMatcher(["A", "B"])
    for lbl in ["A", "A", "B"]:
        m.add("term", lbl)
    (s,) = m.predict(["a term here"])[0].spans
    assert s.label == "A" and s.score == pytest.approx(2 / 3)


def test_tfidf_needs_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        TfidfClassifier(["a", "b"]).fit(Examples(["x", "y"], [["a"], ["a"]]))


def test_tfidf_learns_and_multilabel():
    m = TfidfClassifier(LABELS["choices"])
    m.fit(CHOICE_EXAMPLES)
    assert m.predict(["profits soared"])[0].probs["positive"] > 1 / 3
    multi = TfidfClassifier(["x", "y"], multi=True)
    multi.fit(Examples(["alpha", "beta", "alpha beta", "gamma"], [["x"], ["y"], ["x", "y"], []]))
    p = multi.predict(["alpha beta"])[0].probs
    assert set(p) == {"x", "y"}


def test_token_classifier_windows_long_documents(tiny_model_dir):
    m = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=16, stride=4)
    text = "the patient had a mild fever and then recovered fully. " * 30
    ids, offs = m.tokenize([text])
    (probs_offs, probs) = m.token_probs([text])[0]
    assert probs.shape == (len(ids[0]), 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    for s in m.predict([text])[0].spans:
        assert text[s.start:s.end].strip() == text[s.start:s.end]


def test_serving_overlap_is_independent_of_training_windows(tiny_model_dir, tmp_path):
    from ml_backend.alignment import SERVE_OVERLAP, windows

    text = "the patient had a mild fever and then recovered fully. " * 30
    default = TokenClassifier(["Disease"], model_name=tiny_model_dir, train_length=64)
    wide = TokenClassifier(["Disease"], model_name=tiny_model_dir, train_length=64, stride=28)
    assert default.stride == SERVE_OVERLAP
    n = len(default.tokenize([text])[0][0])
    # training windows overlap by a quarter of their length, whatever the serving overlap
    feats = default.features([text], [[(22, 32, "Disease")]])
    assert feats == wide.features([text], [[(22, 32, "Disease")]])
    assert len(feats) == len(windows(n, 62, 16))
    # serving windows follow the model's overlap, which is saved with it
    assert len(windows(n, default.max_length - 2, default.stride)) < len(windows(n, wide.max_length - 2, wide.stride))
    wide.save(tmp_path / "m")
    assert TokenClassifier.load(tmp_path / "m").stride == 28


def test_int8_quantized_model_serves(tiny_model_dir):
    fp = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32)
    q = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32, _model=fp.model, _tokenizer=fp.tokenizer, quantize="int8")
    from ml_backend.models.onnx_int8 import OrtModel

    assert isinstance(q.serving, OrtModel)
    texts = ["fever and cough", "the patient had a mild fever and then recovered fully " * 3]
    for a, b in zip(fp.token_probs(texts), q.token_probs(texts)):
        assert a[1].shape == b[1].shape and np.abs(a[1] - b[1]).max() < 0.1


def test_int8_graph_is_fused_quantized_and_keeps_head_fp32(tiny_model_dir, tmp_path):
    import onnx

    from ml_backend.models.onnx_int8 import build_int8

    fp = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32)
    build_int8(fp.model, tmp_path / "m.onnx")
    nodes = onnx.load(str(tmp_path / "m.onnx")).graph.node
    ops = {n.op_type for n in nodes}
    assert {"QAttention", "MatMulInteger", "EmbedLayerNormalization"} <= ops, ops  # fused, int8, embeddings fp32
    assert [n.op_type for n in nodes if "classifier" in n.name] == ["MatMul", "Add"]  # the head stays fp32
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temp files left behind


def test_int8_graph_cached_with_a_saved_model_and_rebuilt_for_new_weights(tiny_model_dir, tmp_path):
    import torch

    fp = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32)
    fp.save(tmp_path / "v1")
    first = TokenClassifier.load(tmp_path / "v1", quantize="int8")
    (cached,) = (tmp_path / "v1" / "onnx").iterdir()
    stamp = cached.stat().st_mtime_ns
    again = TokenClassifier.load(tmp_path / "v1", quantize="int8")
    assert list((tmp_path / "v1" / "onnx").iterdir()) == [cached] and cached.stat().st_mtime_ns == stamp
    assert np.allclose(first.token_probs(["fever"])[0][1], again.token_probs(["fever"])[0][1])
    with torch.no_grad():
        fp.model.classifier.bias[0] += 2.0
    fp.save(tmp_path / "v2")
    changed = TokenClassifier.load(tmp_path / "v2", quantize="int8")
    (other,) = (tmp_path / "v2" / "onnx").iterdir()
    assert other.name != cached.name
    assert not np.allclose(first.token_probs(["fever"])[0][1], changed.token_probs(["fever"])[0][1])


def test_int8_cache_key_follows_the_build_recipe(tiny_model_dir, monkeypatch):
    from ml_backend.models import onnx_int8

    fp = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32)
    before = onnx_int8.weights_fingerprint(fp.model)
    assert onnx_int8.weights_fingerprint(fp.model) == before
    monkeypatch.setattr(onnx_int8, "RECIPE", onnx_int8.RECIPE + "-changed")
    assert onnx_int8.weights_fingerprint(fp.model) != before  # an older graph is never reused by a new recipe


def test_int8_torch_dynamic_quantization_serves(tiny_model_dir):
    fp = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32)
    q = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32, _model=fp.model, _tokenizer=fp.tokenizer, quantize="int8-torch")
    import torch

    assert any(isinstance(mod, torch.ao.nn.quantized.dynamic.Linear) for mod in q.serving.modules())
    a, b = fp.token_probs(["fever and cough"])[0][1], q.token_probs(["fever and cough"])[0][1]
    assert a.shape == b.shape and np.abs(a - b).max() < 0.1


def test_bf16_serving_copy_leaves_the_fp32_model_alone(tiny_model_dir):
    import torch

    fp = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32)
    bf = TokenClassifier(["Disease"], model_name=tiny_model_dir, max_length=32, _model=fp.model, _tokenizer=fp.tokenizer, quantize="bf16")
    assert next(bf.serving.parameters()).dtype == torch.bfloat16 and next(fp.model.parameters()).dtype == torch.float32
    a, b = fp.token_probs(["fever and cough"])[0][1], bf.token_probs(["fever and cough"])[0][1]
    assert np.abs(a - b).max() < 0.05


def test_unknown_quantize_mode(tiny_model_dir):
    with pytest.raises(ValueError, match="quantize must be one of"):
        TokenClassifier(["Disease"], model_name=tiny_model_dir, quantize="fp8")


def test_task_score_ignores_cold_start_controls_once_others_are_trained():
    """A control nobody labels (flat 0.5 cold-start confidence) must not cap every task score."""
    from ml_backend.models import Examples, SpanMatcher, TfidfClassifier
    from ml_backend.registry import ProjectModel
    from ml_backend.schema import parse_label_config

    spec = parse_label_config("""<View><Text name="text" value="$text"/>
      <Choices name="s" toName="text"><Choice value="up"/><Choice value="down"/></Choices>
      <Labels name="ents" toName="text"><Label value="Company"/></Labels></View>""")
    tfidf = TfidfClassifier(["up", "down"])
    tfidf.fit(Examples(["shares rise", "profit up", "shares fall", "loss widens"] * 3, [["up"], ["up"], ["down"], ["down"]] * 3))
    texts = ["shares rise", "profit up strongly", "loss widens", "the weather today"]
    trained = ProjectModel(spec, "v1", {"s": tfidf, "ents": SpanMatcher(["Company"])}, {"cold_start": ["ents"]})
    scores = [it["score"] for it in trained.to_results({"text": texts})]
    assert scores == pytest.approx([p.confidence for p in tfidf.predict(texts)])
    assert len(set(round(x, 6) for x in scores)) > 1
    # all controls on cold start: every control counts (the least confident one)
    cold = ProjectModel(spec, "c", {"s": tfidf, "ents": SpanMatcher(["Company"])}, {"cold_start": ["s", "ents"]})
    assert [it["score"] for it in cold.to_results({"text": texts})] == pytest.approx([min(p.confidence, 0.5) for p in tfidf.predict(texts)])


def test_sequence_classifier_pools_by_mean_through_save_load_and_quantization(tiny_model_dir, tmp_path):
    import json

    import torch

    from ml_backend.models import SequenceClassifier
    from ml_backend.models.base import META_FILE

    model = SequenceClassifier(LABELS["choices"], model_name=tiny_model_dir, max_length=32, stride=8)
    assert model.pooling == "mean"
    model.fit(CHOICE_EXAMPLES, epochs=1, progress=False)
    texts = ["profits soared", "the company cut its forecast again and again and shares fell hard"]
    # the head sees the masked mean: padding a short text in a batch with a long one changes nothing
    alone = model.probabilities(texts[:1])
    batched = model.probabilities(texts)
    assert np.allclose(alone[0], batched[0], atol=1e-5)
    ids = torch.tensor([model.wrap(model.tokenize(texts[:1])[0][0])])
    with torch.inference_mode():
        hidden = model.model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        manual = torch.softmax(model.model.classifier(hidden.mean(1)), -1).numpy()
    assert np.allclose(manual[0], alone[0], atol=1e-5)
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / META_FILE).read_text())["pooling"] == "mean"
    again = load_model(tmp_path / "m")
    assert again.pooling == "mean" and np.allclose(again.probabilities(texts), batched, atol=1e-5)
    cls = load_model(tmp_path / "m", pooling="model").probabilities(texts)  # the same weights, [CLS] pooling
    assert np.abs(cls - batched).max() > 0.05
    for mode in ("int8", "int8-torch", "bf16"):
        q = load_model(tmp_path / "m", quantize=mode).probabilities(texts)
        # quantized serving keeps the mean pooling: its (int8-sized) error is far below the pooling's difference
        assert np.abs(q - batched).max() < np.abs(q - cls).max() / 3, mode
    # a model saved before mean pooling existed keeps the architecture's own ([CLS]) pooling
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    del meta["pooling"]
    (tmp_path / "m" / META_FILE).write_text(json.dumps(meta))
    old = load_model(tmp_path / "m")
    assert old.pooling == "model" and not np.allclose(old.probabilities(texts), batched, atol=1e-3)
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier(LABELS["choices"], model_name=tiny_model_dir, pooling="max")


def test_encoder_embeddings_match_a_text_by_text_reference(tiny_model_dir):
    """Batched, padded and windowed runs give what each text (window) gives alone."""
    import torch

    from ml_backend.alignment import merge_windows, windows
    from ml_backend.models import Encoder

    enc = Encoder(tiny_model_dir)
    texts = ["fever and cough", "the patient had a mild fever and then recovered fully. " * 12, "", "x"]

    def hidden(ids):
        with torch.inference_mode():
            out = enc.model(input_ids=torch.tensor([ids]), attention_mask=torch.ones((1, len(ids)), dtype=torch.long))
        return out.last_hidden_state[0].numpy()

    emb = enc.embed(texts, max_length=32, progress=False)
    assert emb.dtype == np.float32 and emb.shape == (len(texts), enc.dim)
    for text, e in zip(texts, emb):
        ref = hidden(enc.tokenizer(text, truncation=True, max_length=32)["input_ids"]).mean(0)  # special tokens included
        assert np.allclose(e, ref / np.linalg.norm(ref), atol=1e-5)
    assert np.allclose(enc.embed(texts, max_length=32, token_budget=40, progress=False), emb, atol=1e-5)
    assert enc.embed([], progress=False).shape == (0, enc.dim)

    offsets, embs = enc.token_embeddings(texts, max_length=24, stride=6, progress=False)
    ids, offs = enc.tokenize(texts)
    assert offsets == offs
    for doc, e in zip(ids, embs):
        assert e.shape == (len(doc), enc.dim) and e.dtype == np.float32
        if doc:
            spans = windows(len(doc), 22, 6)
            assert len(spans) > 1 or len(doc) <= 22
            ref = merge_windows(len(doc), spans, [hidden(enc.wrap(doc[a:b]))[1:-1] for a, b in spans])
            assert np.allclose(e, ref, atol=1e-5)


def test_token_classifier_serves_no_span_inside_a_web_address(tiny_model_dir):
    import torch

    m = TokenClassifier(["Location"], model_name=tiny_model_dir, max_length=32, stride=8)
    with torch.no_grad():  # a head that tags every token B-Location: every word becomes a span
        m.model.classifier.weight.zero_()
        m.model.classifier.bias.copy_(torch.tensor([-10.0, 10.0, 0.0]))
    text = "Ally Financial pulls outlook https://t.co/X1Kal today"
    url = (text.index("https"), text.index(" today"))
    spans = m.predict([text])[0].spans
    assert {text[s.start:s.end] for s in spans} >= {"Ally", "Financial", "today"}
    assert not [s for s in spans if s.start < url[1] and url[0] < s.end]


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_each_kind_declares_what_it_can_do_and_has_the_methods_it_declares(kind):
    """Callers ask the declared capabilities (never hasattr): each one must come with its method, and no kind may have
    the method without declaring it."""
    cls = MODEL_KINDS[kind]
    assert cls.scores_tokens == callable(getattr(cls, "token_probs", None))
    assert cls.embeds == callable(getattr(cls, "embed", None))
    assert cls.distillable == (kind in ("token_classifier", "sequence_classifier"))
    assert cls.learns_online == (kind in ("span_matcher", "prototype"))  # the two ProjectModel.learn teaches
