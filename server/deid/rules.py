"""A Presidio recognizer made of regular-expression rules with a captured group, a score and a validator, and the
checksums the validators use (Luhn, ISO 7064 MOD 11-2).

Presidio's PatternRecognizer masks the whole match and runs its patterns under the caller's flags (IGNORECASE by
default); these rules need a context word outside the masked group ("MRN: 123456" masks only the number) and
case-sensitive matching (a capitalised name), so they carry their own flags and say which group is the entity.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Callable

from presidio_analyzer import EntityRecognizer, RecognizerResult

# characters that may follow a number that is a measurement, not an identifier ("1380013800 mg", "0.5 mg/kg")
UNITS = r"(?:mg|mcg|µg|ug|g|kg|ml|mL|l|L|iu|IU|u|U|units?|mmol|mmHg|mm|cm|%|毫克|克|毫升|单位|次|片|粒|支|袋|岁)"
NOT_UNIT = rf"(?!\s?{UNITS}(?![A-Za-z]))"


@dataclass(frozen=True)
class Rule:
    """One pattern: `group` is the part masked; `validate` (if any) gets that text and the match and may reject it;
    `meta` goes into the result's recognition metadata (a review rule says there what it would have been and why)."""

    pattern: re.Pattern
    score: float = 0.85
    group: int | str = 0
    validate: Callable[[str, re.Match], bool] | None = None
    meta: dict | None = None
    # the rule runs only on texts holding one of these (lower-case) strings: a context rule's words, so that a note
    # without "passport" never pays for the passport pattern
    needs: tuple[str, ...] = ()


class RegexRecognizer(EntityRecognizer):
    """Runs its rules over the text; every accepted match becomes a RecognizerResult for `entity`."""

    def __init__(self, entity: str, rules: list[Rule], language: str, name: str) -> None:
        self.rules = rules
        super().__init__(supported_entities=[entity], supported_language=language, name=f"{name}_{language}")

    def load(self) -> None:
        """Nothing to load: the rules are compiled at import."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        entity = self.supported_entities[0]
        if entities and entity not in entities:
            return []
        results = []
        lowered = None
        for rule in self.rules:
            if rule.needs:
                lowered = text.lower() if lowered is None else lowered
                if not any(n in lowered for n in rule.needs):
                    continue
            for m in rule.pattern.finditer(text):
                start, end = m.span(rule.group)
                if start < 0 or end <= start:
                    continue
                if rule.validate is not None and not rule.validate(text[start:end], m):
                    continue
                meta = {RecognizerResult.RECOGNIZER_NAME_KEY: self.name, RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id}
                meta.update(rule.meta or {})
                results.append(RecognizerResult(entity, start, end, rule.score, recognition_metadata=meta))
        return results


def digits_of(value: str) -> str:
    """The digits of a string, separators dropped."""
    return "".join(ch for ch in value if ch.isdigit())


def luhn_valid(number: str) -> bool:
    """Whether a digit string passes the Luhn check (payment and bank cards)."""
    digits = [int(c) for c in number]
    if len(digits) < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


def cn_resident_id_valid(value: str, today: dt.date | None = None) -> bool:
    """An 18-character Chinese resident ID: region code, a real birth date not in the future, ISO 7064 check char."""
    value = value.upper()
    if len(value) != 18 or not value[:17].isdigit() or value[0] == "0":
        return False
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if born.year < 1890 or born > (today or dt.date.today()):
        return False
    check = sum(int(c) * w for c, w in zip(value[:17], _CN_ID_WEIGHTS)) % 11
    return value[17] == _CN_ID_CHECK[check]


def cn_id_check_char(first17: str) -> str:
    """The check character of a resident ID's first 17 digits (used to build valid test IDs)."""
    return _CN_ID_CHECK[sum(int(c) * w for c, w in zip(first17, _CN_ID_WEIGHTS)) % 11]


def hkid_check_char(prefix: str, digits: str) -> str:
    """The check character of a Hong Kong identity card number (one or two letters + six digits): weights 9 … 2 over
    the characters, a one-letter number padded in front with a space worth 36, letters worth A=10 … Z=35; the check is
    11 minus the sum mod 11, "A" for 10, "0" for 11."""
    prefix = prefix.upper()
    values = ([36] if len(prefix) == 1 else []) + [ord(c) - 55 for c in prefix] + [int(d) for d in digits]
    total = sum(v * w for v, w in zip(values, range(9, 1, -1)))
    check = (11 - total % 11) % 11
    return "A" if check == 10 else str(check)


def hkid_valid(value: str) -> bool:
    """Whether a Hong Kong identity card number (A123456(3), AB9876543, brackets and spaces optional) has the right
    check character."""
    m = re.fullmatch(r"([A-Za-z]{1,2})(\d{6})\s?\(?([0-9Aa])\)?", value.strip())
    return bool(m) and hkid_check_char(m.group(1), m.group(2)) == m.group(3).upper()


# Taiwan national ID: each letter stands for a two-digit area code (the order is not alphabetical: I, O, W … were
# added later)
_TW_LETTERS = "ABCDEFGHJKLMNPQRSTUVXYWZIO"


def tw_id_valid(value: str) -> bool:
    """Whether a Taiwan national ID (a letter, 1 or 2 for the sex, eight digits) passes its checksum: the letter's
    code's digits weighted 1 and 9, the nine digits weighted 8 … 1 and 1, the sum a multiple of 10."""
    value = value.strip().upper()
    if not re.fullmatch(r"[A-Z][12]\d{8}", value):
        return False
    code = _TW_LETTERS.index(value[0]) + 10
    total = code // 10 + (code % 10) * 9 + sum(int(d) * w for d, w in zip(value[1:9], range(8, 0, -1))) + int(value[9])
    return total % 10 == 0
