"""Which script a project's documents are written in: the share of CJK characters among their letters."""
from __future__ import annotations

import unicodedata
from typing import Iterable

# Han ideographs (with extensions and compatibility forms), kana, Hangul: scripts whose text has no spaces
# between words and whose characters an English WordPiece vocabulary mostly lacks
CJK_RANGES = (
    (0x3040, 0x30FF), (0x3100, 0x312F), (0x3130, 0x318F), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
    (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F), (0x30000, 0x323AF),
)
# a project is "CJK" when at least this share of its letters is CJK (mixed Chinese notes with Latin drug
# names and units stay well above it; English abstracts with a few quoted characters stay far below)
CJK_THRESHOLD = 0.2
SAMPLE_CHARS = 200_000


def is_cjk(ch: str) -> bool:
    """True for a Han, kana or Hangul character."""
    cp = ord(ch)
    return any(a <= cp <= b for a, b in CJK_RANGES)


def sample(texts: Iterable[str], limit: int = SAMPLE_CHARS) -> list[str]:
    """The texts, in order, until ``limit`` characters are taken (the last one cut): enough to judge a script."""
    out, total = [], 0
    for text in texts:
        if total >= limit:
            break
        text = text[: limit - total]
        out.append(text)
        total += len(text)
    return out


def script_shares(texts: Iterable[str], limit: int = SAMPLE_CHARS) -> dict:
    """Letters counted in a sample of the texts and the share that is CJK, Latin and other."""
    counts = {"cjk": 0, "latin": 0, "other": 0}
    for text in sample(texts, limit):
        for ch in text:
            if not unicodedata.category(ch).startswith("L"):
                continue
            if is_cjk(ch):
                counts["cjk"] += 1
            elif ord(ch) < 0x250:
                counts["latin"] += 1
            else:
                counts["other"] += 1
    letters = sum(counts.values())
    shares = {k: round(v / letters, 4) if letters else 0.0 for k, v in counts.items()}
    return {"letters": letters, **shares, "cjk_project": bool(letters) and shares["cjk"] >= CJK_THRESHOLD}
