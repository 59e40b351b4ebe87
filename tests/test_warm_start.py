"""Warm start: a round continues from the serving model's weights (new labels get new head rows), the version says
what it started from, and the gate's tie-break prefers the model trained on more of the project's labels."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ml_backend.models import Examples, SequenceClassifier, TokenClassifier, load_model
from ml_backend.schema import parse_label_config
from ml_backend.training import TrainOptions, examples_for, gate, train_control
from ml_backend.warm_start import base_encoder, source_for, transfer

SPANS = parse_label_config("""<View><Labels name="ents" toName="text"><Label value="Disease"/><Label value="Drug"/>
  <Label value="Procedure"/></Labels><Text name="text" value="$text"/></View>""")
CHOICES = parse_label_config("""<View><Text name="text" value="$text"/><Choices name="mood" toName="text">
  <Choice value="positive"/><Choice value="negative"/></Choices></View>""")
DOCS = [{"text": "Aspirin eased the migraine.", "spans": [{"start": 0, "end": 7, "label": "Drug"}, {"start": 18, "end": 26, "label": "Disease"}]},
        {"text": "Asthma needs an inhaler.", "spans": [{"start": 0, "end": 6, "label": "Disease"}]},
        {"text": "Ibuprofen for the fever.", "spans": [{"start": 0, "end": 9, "label": "Drug"}, {"start": 18, "end": 23, "label": "Disease"}]}]


def _opts(tiny_model_dir, **kw):
    return replace(TrainOptions(cold_start_labels=50, model_name=tiny_model_dir, span_min_steps=2, min_steps=2, epochs=1,
                                train_length=32, progress=False, span_encoder_layers=0, span_floor_window=0), **kw)


def test_a_new_label_gets_a_new_head_row_and_every_other_weight_comes_from_the_serving_model(tiny_model_dir):
    old = TokenClassifier(["Disease", "Drug"], model_name=tiny_model_dir, train_length=32)
    with torch.no_grad():
        for p in old.model.parameters():
            p.add_(torch.randn_like(p))  # unlike any fresh draw
    new = TokenClassifier(["Procedure", "Disease", "Drug"], model_name=tiny_model_dir, train_length=32)
    fresh = new.model.classifier.weight.detach().clone()
    info = transfer(new, old)
    assert info["head_rows"] == 5 and info["new_head_rows"] == 2  # O, B-/I-Disease, B-/I-Drug kept; B-/I-Procedure new
    src, dst = old.model.state_dict(), new.model.state_dict()
    assert all(torch.equal(src[k], dst[k]) for k in dst if not k.startswith("classifier."))
    rows_old, rows_new = old.model.config.label2id, new.model.config.label2id
    for tag in ("O", "B-Disease", "I-Drug"):
        assert torch.equal(dst["classifier.weight"][rows_new[tag]], src["classifier.weight"][rows_old[tag]])
        assert torch.equal(dst["classifier.bias"][rows_new[tag]], src["classifier.bias"][rows_old[tag]])
    assert torch.equal(dst["classifier.weight"][rows_new["B-Procedure"]], fresh[rows_new["B-Procedure"]])


def test_a_serving_model_of_another_encoder_kind_or_shape_gives_no_start(tiny_model_dir, tmp_path):
    old = TokenClassifier(["Disease"], model_name=tiny_model_dir, train_length=32)
    assert source_for("token_classifier", tiny_model_dir, old)[0] is old
    assert "sequence_classifier" in source_for("sequence_classifier", tiny_model_dir, old)[1]
    assert "built on" in source_for("token_classifier", "other/encoder", old)[1]
    assert source_for("token_classifier", tiny_model_dir, None)[0] is None
    old.save(tmp_path / "v1")  # a version loaded from disk still names the encoder it was built on
    assert base_encoder(load_model(tmp_path / "v1")) == tiny_model_dir
    shallow = TokenClassifier(["Disease"], model_name=tiny_model_dir, train_length=32, encoder_layers=1)
    with pytest.raises(ValueError, match="encoders differ"):
        transfer(TokenClassifier(["Disease"], model_name=tiny_model_dir, train_length=32), shallow)


def test_a_round_below_the_cold_start_threshold_continues_from_a_fine_tuned_serving_model(tiny_model_dir):
    control = SPANS.controls[0]
    train = examples_for(control, DOCS)
    serving, _ = train_control(control, train, Examples([], []), _opts(tiny_model_dir, cold_start_labels=1))
    model, info = train_control(control, train, Examples([], []), _opts(tiny_model_dir), start=serving)
    assert info["kind"] == "token_classifier" and info["started_from"] == "serving"
    assert info["warm_start"]["new_head_rows"] == 0
    assert model is not serving and model.model_name == tiny_model_dir  # a new model, saved with the encoder as its base
    base, binfo = train_control(control, train, Examples([], []), _opts(tiny_model_dir, warm_start="base"), start=serving)
    assert binfo["kind"] == "span_matcher"  # from the base encoder the old rule holds: 3 labels is a cold start
    cold, cinfo = train_control(control, train, Examples([], []), _opts(tiny_model_dir), start=None)
    assert cinfo["kind"] == "span_matcher" and "started_from" not in cinfo


def test_a_warm_document_classifier_skips_the_linear_probe_and_says_why_a_start_was_refused(tiny_model_dir):
    control = CHOICES.controls[0]
    texts = ["great quarter, shares up", "profit warning, shares down", "record revenue", "heavy losses"]
    train = Examples(texts, [["positive"], ["negative"], ["positive"], ["negative"]])
    serving, _ = train_control(control, train, Examples([], []), _opts(tiny_model_dir, cold_start_labels=2))
    assert isinstance(serving, SequenceClassifier)
    _, info = train_control(control, train, Examples([], []), _opts(tiny_model_dir), start=serving)
    assert info["started_from"] == "serving" and info["fit"]["linear_probe"] is None
    spans_model = TokenClassifier(["Disease"], model_name=tiny_model_dir, train_length=32)
    _, info = train_control(control, train, Examples([], []), _opts(tiny_model_dir, cold_start_labels=2), start=spans_model)
    assert info["started_from"] == "base" and "token_classifier" in info["base_because"]


def test_the_gate_breaks_a_tie_for_the_model_trained_on_more_project_labels():
    old = {"primary": 0.700}
    ok, why = gate({"primary": 0.698}, old, 0.005, (200, 100))
    assert ok and "at least as many" in why
    ok, why = gate({"primary": 0.703}, old, 0.005, (0, 100))
    assert not ok and "fewer of the project's labels (0 < 100)" in why
    assert gate({"primary": 0.720}, old, 0.005, (0, 100))[0]  # clearly better: promoted whatever it was trained on
    assert not gate({"primary": 0.600}, old, 0.005, (300, 100))[0]  # clearly worse: kept out whatever it was trained on
    assert gate({"primary": 0.698}, old, 0.005)[0]  # unknown counts: the tolerance alone decides, as before


def test_a_round_after_a_distilled_student_continues_from_its_teacher(tiny_model_dir, tmp_path):
    from types import SimpleNamespace

    from ml_backend.registry import ProjectModel, Registry
    from ml_backend.warm_start import layers_of
    from server import store
    from server.config import Settings
    from server.loop import served_project_labels, warm_source
    from server.project import ProjectContext

    settings = Settings(home=tmp_path / "home")
    registry = Registry(settings.backend_settings())
    labels = SPANS.controls[0].labels
    teacher = TokenClassifier(labels, model_name=tiny_model_dir, train_length=32)
    registry.promote("3", ProjectModel(SPANS, "v1", {"ents": teacher}, {"cold_start": []}), {"model_name": tiny_model_dir, "project_labels": 80})
    student = TokenClassifier(labels, model_name=tiny_model_dir, train_length=32, encoder_layers=1)
    registry.promote("3", ProjectModel(SPANS, "v2", {"ents": student}, {"cold_start": []}),
                     {"model_name": tiny_model_dir, "distill": {"teacher_version": "v1"}})
    ctx = ProjectContext(settings, store.open_db(settings.data_dir.db_path), None, SimpleNamespace(id=3, title="p", label_config=""),
                         SPANS, registry)
    serving = registry.get("3", SPANS)
    assert serving.version == "v2" and layers_of(serving.models["ents"]) == 1
    start = warm_source(ctx, serving)
    assert start.version == "v1" and layers_of(start.models["ents"]) == 2  # the full-depth teacher, loaded from its folder
    assert served_project_labels(ctx, "v1") == served_project_labels(ctx, "v2") == 80  # a student counts its teacher's labels
    assert served_project_labels(ctx, "v0") is None
    assert warm_source(ctx, registry.saved("3", SPANS, "v1")).version == "v1"  # a version that is no student: itself


def test_rehearsal_replays_the_starters_examples_per_project_label_with_a_floor_and_a_ceiling():
    from ml_backend.warm_start import rehearsal_sample

    starter = Examples([f"doc {i}" for i in range(1000)], [["positive" if i % 2 else "negative"] for i in range(1000)])
    assert len(rehearsal_sample(starter, 25, 1.0, 256).texts) == 256  # a small round replays the floor, not 25
    assert len(rehearsal_sample(starter, 400, 1.0, 256).texts) == 400  # one per project label above it
    assert len(rehearsal_sample(starter, 800, 2.0, 256).texts) == 1000  # never more than the starter has
    assert rehearsal_sample(starter, 800, 0.0, 256).texts == []  # 0: the project's labels alone
    a, b = rehearsal_sample(starter, 300, 1.0, 0, seed=1), rehearsal_sample(starter, 300, 1.0, 0, seed=1)
    assert a.texts == b.texts and a.texts != rehearsal_sample(starter, 300, 1.0, 0, seed=2).texts  # one seed, one sample
    assert all(starter.targets[int(t.split()[1])] == y for t, y in zip(a.texts, a.targets)) and a.weights == [1.0] * 300
    spans = Examples(["x y", "z"], [[(0, 1, "Drug")], []], masks=[[(2, 3)], []])
    assert rehearsal_sample(spans, 1, 1.0, 5).masks == [[(2, 3)], []]  # a teacher's masked tokens travel with their text


def test_span_documents_of_a_starter_that_never_marks_a_label_the_project_marks_are_not_rehearsed():
    from ml_backend.warm_start import unrehearsable

    starter = examples_for(SPANS.controls[0], DOCS)  # Disease and Drug, never Procedure
    mine = Examples(["Biopsy of the lesion."], [[(0, 6, "Procedure")]])
    assert unrehearsable("spans", starter, mine) == "the project marks Procedure, which the starter's documents never mark"
    assert unrehearsable("spans", starter, examples_for(SPANS.controls[0], DOCS[:1])) == ""  # the starter's labels only
    moods = Examples(["up", "down"], [["positive"], ["negative"]])
    assert unrehearsable("choices", Examples(["up"], [["positive"]]), moods) == ""  # one right label a document: no trap
