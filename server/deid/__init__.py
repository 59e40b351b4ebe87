"""De-identification of imported documents on Microsoft Presidio: typed placeholders, consistent pseudonyms, date
shifting (docs/privacy.md says what it does and does not promise).

Public API: deidentify(text, DeidOptions) -> (text, counts per kind), find(text) -> [Finding], PII_KINDS. Presidio and
spaCy load on the first call, not on import.
"""
from __future__ import annotations

from collections import Counter

from .options import PII_KINDS, DeidOptions


def deidentify(text: str, options: DeidOptions | None = None) -> tuple[str, Counter]:
    """The text with names, identifiers, contact details, dates, ages over 89 and addresses replaced, and the count
    of replacements per kind."""
    from .engine import deidentify as run

    return run(text, options)


def find(text: str) -> list:
    """The identifiers found in the text (Finding: kind, start, end), overlaps resolved."""
    from .engine import find as run

    return run(text)


__all__ = ["PII_KINDS", "DeidOptions", "deidentify", "find"]
