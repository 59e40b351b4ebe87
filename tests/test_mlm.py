"""Domain-adaptive MLM (mlm.py): the encoder learns the domain, a new MLM head warms up alone, an adapted
encoder is reused while the pool it was adapted on covers the current one."""
from pathlib import Path

import pytest

from ml_backend.mlm import MLM_REUSE_COVERAGE, adapted_encoder, domain_adapt
from ml_backend.models import Examples, TokenClassifier
from tests.plugins.backend import DATA, read_jsonl

LABELS = ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"]


def ex(docs):
    return Examples([d["text"] for d in docs], [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in docs])


@pytest.mark.slow
def test_domain_adaptive_mlm_learns_and_feeds_fine_tuning(tiny_model_dir, tmp_path):
    texts = [d["text"] for d in read_jsonl(DATA / "ncbi_disease" / "test.jsonl")[:20]]
    info = domain_adapt(tiny_model_dir, texts, tmp_path / "adapted", steps=40, batch_size=8, lr=1e-3, progress=False)
    assert info["loss_last"] < info["loss_first"]
    model = TokenClassifier(LABELS, model_name=str(tmp_path / "adapted"), train_length=64)
    model.fit(ex(read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:6]), epochs=1, progress=False)
    assert len(model.predict(texts[:2])) == 2


@pytest.mark.slow
def test_mlm_head_warm_up_trains_the_new_head_alone(tiny_model_dir, tmp_path):
    """The encoder has no MLM head: the new head trains first with the encoder frozen, then everything trains."""
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM

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
    texts = [d["text"] for d in read_jsonl(DATA / "ncbi_disease" / "test.jsonl")[:20]]
    opts = {"model_name": tiny_model_dir, "steps": 2, "work_dir": tmp_path / "enc", "progress": False}
    first, rec = adapted_encoder(texts, **opts)
    assert rec["steps"] == 2 and "reused" not in rec and Path(first, "config.json").exists()
    # 4 documents labeled: the rest of the pool is still covered in full
    again, rec = adapted_encoder(texts[4:], **opts)
    assert again == first and rec == {"reused": first, "coverage": 1.0}
    # 1 new document among 19 known ones: 18/19 covered, above the reuse line
    mixed = texts[1:19] + ["A new report of familial adenomatous polyposis."]
    assert 18 / 19 >= MLM_REUSE_COVERAGE and adapted_encoder(mixed, **opts)[0] == first
    # mostly new documents, another step count or another base model: a new adaptation
    fresh = [d["text"] for d in read_jsonl(DATA / "ncbi_disease" / "train.jsonl")[:10]] + texts[:2]
    other, rec = adapted_encoder(fresh, **opts)
    assert other != first and "reused" not in rec
    longer, rec = adapted_encoder(texts, **{**opts, "steps": 3})
    assert longer not in (first, other) and rec["steps"] == 3
    # a record that cannot be read is not trusted
    Path(first, "adapted_on.json").write_text("{not json", encoding="utf-8")
    rebuilt, rec = adapted_encoder(texts[4:], **opts)
    assert "reused" not in rec and Path(rebuilt, "adapted_on.json").exists()
