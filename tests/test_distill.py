"""Distillation: layer choice, layer dropping, the loss, a student that learns its teacher, save/load, settings, CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ml_backend.distill import DistillOptions, build_student, distill_model, kd_loss_fn, kept_layers, layer_loss
from ml_backend.models import Examples, SequenceClassifier, SpanMatcher, TokenClassifier, load_model
from server.cli import main
from server.config import Settings
from tests.plugins.backend import DATA, read_jsonl

TEXTS = ["Cystic fibrosis is a disease of the lungs.", "Patients with breast cancer were treated.", "No finding in this sentence."]
SPANS = [[(0, 15, "Disease")], [(14, 27, "Disease")], []]


def tiny_token_classifier(tiny_model_dir) -> TokenClassifier:
    torch.manual_seed(0)
    return TokenClassifier(["Disease"], model_name=tiny_model_dir, train_length=64)


def test_kept_layers_are_evenly_spaced_and_keep_the_top_one():
    assert kept_layers(6, 3) == [1, 3, 5]
    assert kept_layers(6, 2) == [2, 5]
    assert kept_layers(6, 1) == [5]
    assert kept_layers(6, 6) == list(range(6))
    for bad in (0, 7):
        with pytest.raises(ValueError, match="between 1 and 6"):
            kept_layers(6, bad)


def test_a_student_with_every_layer_is_the_teacher_and_a_smaller_one_is_a_copy(tiny_model_dir):
    teacher = tiny_token_classifier(tiny_model_dir)
    ids = torch.tensor([teacher.wrap(teacher.tokenize(TEXTS[:1])[0][0])])
    same = build_student(teacher, 2)
    with torch.no_grad():
        assert torch.allclose(teacher.model(input_ids=ids).logits, same.model(input_ids=ids).logits, atol=1e-6)
        small = build_student(teacher, 1)
        assert len(small.model.base_model.encoder.layer) == 1 and small.model.config.num_hidden_layers == 1
        assert len(teacher.model.base_model.encoder.layer) == 2  # the teacher is untouched
        assert not torch.allclose(teacher.model(input_ids=ids).logits, small.model(input_ids=ids).logits)
        # the kept layer is the teacher's top layer, as a copy (training the student never moves the teacher)
        kept = small.model.base_model.encoder.layer[0].attention.self.query.weight
        assert torch.equal(kept, teacher.model.base_model.encoder.layer[1].attention.self.query.weight)
        assert kept.data_ptr() != teacher.model.base_model.encoder.layer[1].attention.self.query.weight.data_ptr()
    assert small.tokenizer is teacher.tokenizer and small.labels == teacher.labels and small.train_length == teacher.train_length


def test_only_transformer_models_are_distilled():
    with pytest.raises(ValueError, match="only fine-tuned transformer models"):
        build_student(SpanMatcher(["Disease"]), 1)


def test_span_loss_is_kl_plus_gold_cross_entropy():
    torch.manual_seed(0)
    t = np.random.randn(6, 3).astype(np.float32)
    gold = [-100, 0, 1, 2, 0, -100]
    same = torch.tensor(t)[None].clone().requires_grad_(True)
    w = torch.ones(1)
    pure_kd = kd_loss_fn("spans", False, 2.0, 1.0)
    assert float(pure_kd(same, [(gold, t)], w).detach()) == pytest.approx(0.0, abs=1e-6)  # the student is the teacher
    other = torch.zeros_like(same)
    assert float(pure_kd(other, [(gold, t)], w)) > 0.01
    ce_only = kd_loss_fn("spans", False, 2.0, 0.0)
    expected = torch.nn.functional.cross_entropy(torch.tensor(t)[1:5], torch.tensor(gold[1:5]))
    assert float(ce_only(same, [(gold, t)], w).detach()) == pytest.approx(float(expected), rel=1e-5)
    # a pool window (no gold) adds only its soft term
    assert float(ce_only(same, [(None, t)], w)) == pytest.approx(0.0, abs=1e-7)


def test_layer_loss_compares_each_student_layer_with_its_teacher_layer_over_real_tokens():
    torch.manual_seed(0)
    teacher = [torch.randn(2, 5, 4) for _ in range(4)]  # embeddings + 3 layers
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    student = [teacher[0], teacher[3].clone()]  # one layer standing for teacher layer 2 (hidden_states[3])
    assert float(layer_loss(student, teacher, [2], mask)) == pytest.approx(0.0, abs=1e-7)
    off = [teacher[0], teacher[3] + 1.0]
    assert float(layer_loss(off, teacher, [2], mask)) == pytest.approx(1.0, rel=1e-5)  # every real element off by 1
    padded = teacher[3].clone()
    padded[0, 3:] += 100.0  # padding never counts
    assert float(layer_loss([teacher[0], padded], teacher, [2], mask)) == pytest.approx(0.0, abs=1e-7)
    assert float(layer_loss(student, teacher, [0], mask)) > 0.1  # the wrong teacher layer


def test_span_loss_with_the_layer_term_runs_the_teacher_on_the_batch(tiny_model_dir):
    teacher = tiny_token_classifier(tiny_model_dir)
    with pytest.raises(ValueError, match="layer term needs the teacher"):
        kd_loss_fn("spans", False, 2.0, 0.5, layer_weight=1.0)
    assert not getattr(kd_loss_fn("choices", False, 2.0, 0.5, layer_weight=1.0), "wants_hidden", False)  # spans only
    fn = kd_loss_fn("spans", False, 2.0, 1.0, layer_weight=1.0, teacher_model=teacher.model, layer_map=[0, 1])
    assert fn.wants_hidden
    ids = torch.tensor([teacher.wrap(teacher.tokenize(TEXTS[:1])[0][0])])
    mask = torch.ones_like(ids)
    teacher.model.eval()
    with torch.no_grad():
        out = teacher.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    t = out.logits[0].numpy()
    same = fn(out.logits, [(None, t)], torch.ones(1), hidden=out.hidden_states, ids=ids, mask=mask)
    assert float(same) == pytest.approx(0.0, abs=1e-5)  # the teacher itself: no soft and no layer gap
    moved = tuple(h + 0.5 for h in out.hidden_states)
    assert float(fn(out.logits, [(None, t)], torch.ones(1), hidden=moved, ids=ids, mask=mask)) == pytest.approx(0.25, rel=1e-4)


def test_layer_term_brings_the_students_layers_closer_to_the_teachers(tiny_model_dir):
    teacher = tiny_token_classifier(tiny_model_dir)
    pool = [d["text"] for d in read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:8]]

    def layer_gap(student):
        feats = student.features(pool, [[] for _ in pool])
        ids = torch.tensor([feats[0][0]])
        with torch.no_grad():
            hs = student.model(input_ids=ids, output_hidden_states=True).hidden_states
            ht = teacher.model(input_ids=ids, output_hidden_states=True).hidden_states
        return float(layer_loss(hs, ht, [1], torch.ones_like(ids)))

    from transformers import BertModel

    torch.manual_seed(1)
    other = BertModel(teacher.model.config.__class__(**{**teacher.model.config.to_dict(), "num_hidden_layers": 1})).state_dict()
    before = layer_gap(build_student(teacher, 1, init_state=other, init_layers=1))
    opts = DistillOptions(layers=1, kd_weight=1.0, layer_weight=1.0, min_steps=30, lr=1e-3, progress=False)
    student, info = distill_model(teacher, Examples([], []), pool, opts, init_state=other, init_layers=1)
    assert info["layer_term"] == {"weight": 1.0, "teacher_layers": [1]}
    assert layer_gap(student) < 0.5 * before, (before, layer_gap(student))


def test_document_loss_single_and_multi_label():
    t = np.array([[2.0, -1.0, 0.5]], dtype=np.float32)
    for multi, gold in ((False, 0), (True, [1.0, 0.0, 0.0])):
        fn = kd_loss_fn("choices", multi, 2.0, 1.0)
        at_teacher, elsewhere = fn(torch.tensor(t), [(gold, t[0])], torch.ones(1)), fn(torch.zeros(1, 3), [(gold, t[0])], torch.ones(1))
        assert float(elsewhere) > float(at_teacher)


def test_student_learns_the_teacher_on_unlabeled_text(tiny_model_dir):
    teacher = tiny_token_classifier(tiny_model_dir)
    with torch.no_grad():  # a random head is nearly uniform whatever the layers say: make its outputs tell them apart
        teacher.model.classifier.weight.mul_(40)
    pool = [d["text"] for d in read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:12]]

    def gap(student):  # mean KL(teacher ‖ student) over the pool's windows
        feats = student.features(pool, [[] for _ in pool])
        seqs = [f[0] for f in feats]
        a, b = teacher.forward(seqs, model=teacher.model), student.forward(seqs, model=student.model)
        kl = [(torch.softmax(torch.tensor(x), -1) * (torch.log_softmax(torch.tensor(x), -1) - torch.log_softmax(torch.tensor(y), -1))).sum(-1).mean()
              for x, y in zip(a, b)]
        return float(np.mean(kl))

    from transformers import BertModel

    torch.manual_seed(1)  # a student that starts far from the teacher: another random encoder of one layer
    other = BertModel(teacher.model.config.__class__(**{**teacher.model.config.to_dict(), "num_hidden_layers": 1})).state_dict()
    before = gap(build_student(teacher, 1, init_state=other, init_layers=1))
    student, info = distill_model(teacher, Examples([], []), pool, DistillOptions(layers=1, kd_weight=1.0, min_steps=40, lr=1e-3, progress=False),
                                  init_state=other, init_layers=1)
    assert info["layers"] == 1 and info["teacher_layers"] == 2 and info["pool_docs"] == len(pool) and info["steps"] >= 40
    assert info["params"] < info["teacher_params"]
    assert gap(student) < 0.5 * before, (before, gap(student))


def test_student_saves_and_loads_with_its_layers(tiny_model_dir, tmp_path):
    teacher = tiny_token_classifier(tiny_model_dir)
    student, _ = distill_model(teacher, Examples(TEXTS, SPANS), TEXTS, DistillOptions(layers=1, min_steps=2, epochs=1, progress=False))
    student.save(tmp_path / "s")
    loaded = load_model(tmp_path / "s")
    assert isinstance(loaded, TokenClassifier) and loaded.model.config.num_hidden_layers == 1
    assert [p.spans for p in loaded.predict(TEXTS)] == [p.spans for p in student.predict(TEXTS)]


def test_document_classifier_student_keeps_mean_pooling(tiny_model_dir, tmp_path):
    torch.manual_seed(0)
    teacher = SequenceClassifier(["pos", "neg"], model_name=tiny_model_dir)
    student, info = distill_model(teacher, Examples(TEXTS[:2], [["pos"], ["neg"]]), TEXTS, DistillOptions(layers=1, min_steps=2, progress=False))
    assert student.pooling == teacher.pooling == "mean" and info["windows"] == 5
    student.save(tmp_path / "d")
    loaded = load_model(tmp_path / "d")
    np.testing.assert_allclose(loaded.probabilities(TEXTS), student.probabilities(TEXTS), atol=1e-5)


def test_distill_layers_setting():
    assert Settings.from_env({}).distill_layers == 0
    assert Settings.from_env({"GOLDLOOP_DISTILL_LAYERS": "3"}).distill_layers == 3
    with pytest.raises(ValueError, match="GOLDLOOP_DISTILL_LAYERS must be an integer"):
        Settings.from_env({"GOLDLOOP_DISTILL_LAYERS": "three"})


def test_cli_distill_options_and_errors(tmp_path):
    help_text = CliRunner().invoke(main, ["distill", "--help"]).output
    for opt in ("--layers", "--from", "--tolerance", "--temperature", "--kd-weight", "--layer-weight", "--max-steps"):
        assert opt in help_text
    from server.cli_models import distill as distill_command

    defaults = {p.name: p.default for p in distill_command.params}
    opts = DistillOptions()  # the command's defaults are the library's: one measured setting, not two
    assert (defaults["layers"], defaults["temperature"], defaults["kd_weight"], defaults["layer_weight"]) == (
        opts.layers, opts.temperature, opts.kd_weight, opts.layer_weight)
    bad = CliRunner().invoke(main, ["distill", "p", "--layers", "0", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "--layers" in bad.output
    res = CliRunner().invoke(main, ["distill", "nope", "--data-dir", str(tmp_path)],
                             env={"LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_API_KEY": "x"})
    assert res.exit_code != 0 and "Traceback" not in res.output and res.output.strip().startswith("Error:")
