"""What replaces a found identifier: a typed placeholder, a consistent pseudonym (names), or a shifted date.

Pseudonyms and the date offset come from a per-document key (a keyed hash of the original text), so one person gets one
fake name throughout a document, every date in it moves by the same number of days (intervals survive), re-importing
the same document gives the same output (deduplication still works), and nobody without the original text can undo it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter
from dataclasses import dataclass

from .names import COMPOUND_SURNAMES, name_list

MAX_SHIFT_DAYS = 365


@dataclass(frozen=True)
class Finding:
    """One identifier in a text: its placeholder kind and character span."""

    kind: str
    start: int
    end: int


def document_key(text: str, secret: bytes = b"") -> bytes:
    """The key behind a document's pseudonyms and date offset."""
    return hashlib.blake2b(text.encode("utf-8"), key=secret[:64], digest_size=32, person=b"goldloop-deid").digest()


def _pick(key: bytes, purpose: str, value: str, modulus: int) -> int:
    digest = hashlib.blake2b(f"{purpose}\x00{value}".encode("utf-8"), key=key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % modulus


def date_offset(key: bytes) -> int:
    """Days every date of the document moves: 1 to 365, forwards or backwards, never 0."""
    n = _pick(key, "date-offset", "", 2 * MAX_SHIFT_DAYS)
    return n - MAX_SHIFT_DAYS if n < MAX_SHIFT_DAYS else n - MAX_SHIFT_DAYS + 1


# ------------------------------------------------------------------------------------------------ pseudonyms


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def pseudonym(name: str, key: bytes) -> str:
    """A fake name of the same script and shape; each word (surname, given name) maps on its own, so "John Smith" and
    a later "Mr. Smith" keep the same fake surname."""
    if name and all(_is_han(ch) for ch in name):
        surnames = [s for s in name_list("zh_surnames") if len(s) == 1]
        given = [g for g in name_list("zh_given_chars") if len(g) == 1]
        surname_len = 2 if name[:2] in COMPOUND_SURNAMES or name[:2] in name_list("zh_surnames") else 1
        fake = surnames[_pick(key, "zh-surname", name[:surname_len], len(surnames))]
        for i in range(len(name[surname_len:surname_len + 2])):
            fake += given[_pick(key, f"zh-given-{i}", name, len(given))]
        return fake

    firsts, lasts = name_list("en_first_names"), name_list("en_last_names")
    words = name.split()

    def fake_word(word: str, last: bool) -> str:
        if re.fullmatch(r"[A-Z]\.", word):
            return word
        core = word.strip(",")
        pool = lasts if last else firsts
        out = pool[_pick(key, "en-last" if last else "en-first", core, len(pool))]
        return out + ("," if word.endswith(",") else "")

    # "Smith, John" keeps its order: the word with the comma is the surname
    comma = next((i for i, w in enumerate(words) if w.endswith(",")), None)
    return " ".join(
        fake_word(w, i == comma if comma is not None else i == len(words) - 1) for i, w in enumerate(words)
    )


# ------------------------------------------------------------------------------------------------ dates

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                "November", "December")
_NUMERIC = re.compile(r"(\d{1,4})([-/.])(\d{1,2})\2(\d{1,4})")
_ZH = re.compile(r"((?:19|20)\d{2})\s*年\s*(\d{1,2})\s*月(?:\s*(\d{1,2})\s*([日号]))?")
_ZH_MONTH_DAY = re.compile(r"(\d{1,2})\s*月\s*(\d{1,2})\s*([日号])")
_WORDS = re.compile(r"(?i)(?:(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]+)\.?,?\s+(\d{4})|([a-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4}))")
_MON_ABBR = re.compile(r"(?i)(\d{1,2})-([a-z]{3})-(\d{2,4})")
# partial dates: month and year, month and day, a calendar month; moved as the 15th of the month (month precision) or
# on a leap year (month and day), written in their format
_MONTH_YEAR = re.compile(r"(\d{1,2})/(\d{4})")
_YEAR_MONTH = re.compile(r"(\d{4})([/.])(\d{2})")
_MONTH_DAY = re.compile(r"(\d{1,2})/(\d{1,2})")
_MONTH_DAY_RANGE = re.compile(r"(\d{1,2}/\d{1,2})(\s*(?:-|–|to|through|and|until)\s*)(\d{1,2}/\d{1,2})")
_WORD_MONTH_YEAR = re.compile(r"(?i)([a-z]+)(\.?,?\s+(?:of\s+)?)(\d{4})")
_ZH_MONTH_PART = re.compile(r"(\d{1,2})\s*月(份|初|上旬|中旬|下旬|底|末)")


def _year(text: str) -> int:
    y = int(text)
    return y if len(text) == 4 else (2000 + y if y < 50 else 1900 + y)


def _month_of(word: str) -> int | None:
    word = word[:3].lower()
    return _MONTHS.index(word) + 1 if word in _MONTHS else None


def _pad(n: int, like: str) -> str:
    return f"{n:0{len(like)}d}" if like.startswith("0") or len(like) == 2 else str(n)


def shift_date(text: str, days: int) -> str | None:
    """The date moved by `days`, written the way it was; None when it cannot be read as a full date."""
    try:
        return _shift(text.strip(), days)
    except (ValueError, OverflowError):
        return None


def _shift(text: str, days: int) -> str | None:
    delta = dt.timedelta(days=days)
    if m := _ZH.fullmatch(text):
        if m.group(3) is None:  # 年月 without a day: shift the 15th, keep the month precision
            d = dt.date(int(m.group(1)), int(m.group(2)), 15) + delta
            return f"{d.year}年{d.month}月"
        d = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))) + delta
        return f"{d.year}年{d.month}月{d.day}{m.group(4)}"
    if m := _ZH_MONTH_DAY.fullmatch(text):
        d = dt.date(2000, int(m.group(1)), int(m.group(2))) + delta
        return f"{d.month}月{d.day}{m.group(3)}"
    if m := _NUMERIC.fullmatch(text):
        a, sep, b, c = m.groups()
        if len(a) == 4:  # yyyy-mm-dd
            d = dt.date(int(a), int(b), int(c)) + delta
            return f"{d.year}{sep}{_pad(d.month, b)}{sep}{_pad(d.day, c)}"
        if sep == "." or int(a) > 12:  # dd.mm.yyyy, or a day first
            d = dt.date(_year(c), int(b), int(a)) + delta
            return f"{_pad(d.day, a)}{sep}{_pad(d.month, b)}{sep}{d.year if len(c) == 4 else f'{d.year % 100:02d}'}"
        d = dt.date(_year(c), int(a), int(b)) + delta  # mm/dd/yyyy
        return f"{_pad(d.month, a)}{sep}{_pad(d.day, b)}{sep}{d.year if len(c) == 4 else f'{d.year % 100:02d}'}"
    if m := _MON_ABBR.fullmatch(text):
        month = _month_of(m.group(2))
        if month is None:
            return None
        d = dt.date(_year(m.group(3)), month, int(m.group(1))) + delta
        name = _MONTH_NAMES[d.month - 1][:3]
        name = name.upper() if m.group(2).isupper() else name
        return f"{_pad(d.day, m.group(1))}-{name}-{d.year if len(m.group(3)) == 4 else f'{d.year % 100:02d}'}"
    if m := _ZH_MONTH_PART.fullmatch(text):
        d = dt.date(2000, int(m.group(1)), 15) + delta
        return f"{d.month}月{m.group(2)}"
    if m := _MONTH_YEAR.fullmatch(text):
        d = dt.date(int(m.group(2)), int(m.group(1)), 15) + delta
        return f"{_pad(d.month, m.group(1))}/{d.year}"
    if m := _YEAR_MONTH.fullmatch(text):
        d = dt.date(int(m.group(1)), int(m.group(3)), 15) + delta
        return f"{d.year}{m.group(2)}{d.month:02d}"
    if m := _MONTH_DAY_RANGE.fullmatch(text):
        first, second = _shift(m.group(1), days), _shift(m.group(3), days)
        return None if first is None or second is None else f"{first}{m.group(2)}{second}"
    if m := _MONTH_DAY.fullmatch(text):
        a, b = m.groups()
        month, day = (int(b), int(a)) if int(a) > 12 else (int(a), int(b))  # a day above 12 first: day/month
        d = dt.date(2000, month, day) + delta
        return f"{_pad(d.day, a)}/{_pad(d.month, b)}" if int(a) > 12 else f"{_pad(d.month, a)}/{_pad(d.day, b)}"
    if (m := _WORD_MONTH_YEAR.fullmatch(text)) and _month_of(m.group(1)) is not None:
        d = dt.date(int(m.group(3)), _month_of(m.group(1)), 15) + delta
        name = _MONTH_NAMES[d.month - 1]
        if len(m.group(1)) <= 4 and m.group(1).lower() not in ("june", "july"):
            name = name[:3]
        return f"{name}{m.group(2)}{d.year}"
    if m := _WORDS.fullmatch(text):
        day, word, year = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(5), m.group(4), m.group(6))
        month = _month_of(word)
        if month is None:
            return None
        d = dt.date(int(year), month, int(day)) + delta
        name = _MONTH_NAMES[d.month - 1]
        if len(word) <= 4 and word.lower() not in ("june", "july"):
            name = name[:3]
        return f"{d.day} {name} {d.year}" if m.group(1) else f"{name} {d.day}, {d.year}"
    return None


# ------------------------------------------------------------------------------------------------ apply


def apply(text: str, findings: list[Finding], key: bytes, pseudonymize: bool = False,
          shift_dates: bool = False) -> tuple[str, Counter]:
    """The text with every finding replaced (placeholders, or pseudonyms / shifted dates when asked) and the count of
    replacements per kind."""
    counts: Counter = Counter()
    days = date_offset(key) if shift_dates else 0
    out, pos = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        original = text[f.start:f.end]
        replacement = None
        if pseudonymize and f.kind == "NAME":
            replacement = pseudonym(original, key)
        elif shift_dates and f.kind == "DATE":
            replacement = shift_date(original, days)
        out.append(text[pos:f.start])
        out.append(replacement if replacement is not None else f"[{f.kind}]")
        counts[f.kind] += 1
        pos = f.end
    out.append(text[pos:])
    return "".join(out), counts
