"""De-identification of imported documents on Microsoft Presidio: typed placeholders, consistent pseudonyms, date
shifting (docs/privacy.md says what it does and does not promise).

Public API: deidentify(text, DeidOptions) -> (text, counts per kind), redact(text, DeidOptions) -> Redaction (text,
counts, borderline spans left for review), find(text) -> [Finding], PII_KINDS, review_entries / write_review (the
review file, mode 0600). Presidio and spaCy load on the first call, not on import.
"""
from __future__ import annotations

from collections import Counter

from .options import PII_KINDS, DeidOptions
from .review import Borderline, write_review
from .review import entries as review_entries


def deidentify(text: str, options: DeidOptions | None = None) -> tuple[str, Counter]:
    """The text with names, identifiers, contact details, dates, ages over 89 and addresses replaced, and the count
    of replacements per kind."""
    from .engine import deidentify as run

    return run(text, options)


def redact(text: str, options: DeidOptions | None = None):
    """A Redaction: the de-identified text, the counts per kind, and the borderline spans the engine left unmasked
    (kind, offsets in the original text, score, threshold, reason) for a person to review."""
    from .engine import redact as run

    return run(text, options)


def find(text: str) -> list:
    """The identifiers found in the text (Finding: kind, start, end), overlaps resolved."""
    from .engine import find as run

    return run(text)


__all__ = ["PII_KINDS", "Borderline", "DeidOptions", "deidentify", "find", "redact", "review_entries", "write_review"]
