"""What callers choose and get back, importable without loading Presidio (the import report needs the kinds)."""
from __future__ import annotations

from dataclasses import dataclass

# the placeholder kinds, in the order the import report lists them
PII_KINDS = ("NAME", "ID", "MRN", "PHONE", "EMAIL", "URL", "IP", "DATE", "AGE", "ADDRESS", "ACCOUNT", "FACILITY", "PLATE",
             "PASSPORT", "INSURANCE")


@dataclass(frozen=True)
class DeidOptions:
    """How identifiers are replaced: typed placeholders ([NAME], [DATE] …), or consistent fake names and dates shifted
    by one per-document offset. `secret` keys the per-document choice (empty: keyed by the original text alone)."""

    pseudonymize: bool = False
    shift_dates: bool = False
    secret: bytes = b""
