"""The de-identification engine: one Presidio AnalyzerEngine (offline tokenizer, Presidio's pattern recognizers,
goldloop's recognizers for Chinese identifiers, record numbers, ages, addresses and names), overlap resolution,
and the replacement of what it finds."""
from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from . import recognizers_en, recognizers_zh
from .names import PersonNameRecognizer
from .nlp import LANGUAGES, TokenizerNlpEngine
from .options import PII_KINDS, DeidOptions
from .transform import Finding, apply, document_key

# Presidio entity → the placeholder kind goldloop writes ([NAME], [ID] …); the import report counts these kinds
KIND_OF_ENTITY = {
    "PERSON": "NAME",
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CN_PHONE": "PHONE",
    "URL": "URL",
    "IP_ADDRESS": "IP",
    "DATE_TIME": "DATE",
    "US_SSN": "ID",
    "CN_RESIDENT_ID": "ID",
    "MEDICAL_RECORD": "MRN",
    "CREDIT_CARD": "ACCOUNT",
    "IBAN_CODE": "ACCOUNT",
    "CN_BANK_CARD": "ACCOUNT",
    "AGE_OVER_89": "AGE",
    "ADDRESS": "ADDRESS",
}
# which finding wins an overlap at equal score: structured identifiers with checksums before looser patterns
assert set(KIND_OF_ENTITY.values()) == set(PII_KINDS)
_PRIORITY = {"EMAIL": 0, "URL": 1, "ID": 2, "ACCOUNT": 3, "MRN": 4, "PHONE": 5, "IP": 6, "DATE": 7, "ADDRESS": 8,
             "AGE": 9, "NAME": 10}
SCORE_THRESHOLD = 0.3
_HAN = re.compile(r"[\u4e00-\u9fff]")


def language_of(text: str) -> str:
    """'zh' when a fifth or more of the characters are Chinese, else 'en' (recognizers run for both; the language
    only picks Presidio's context words)."""
    if not text:
        return "en"
    han = len(_HAN.findall(text))
    return "zh" if han * 5 >= len(text) else "en"


@functools.lru_cache(maxsize=1)
def analyzer():
    """The AnalyzerEngine, built once per process (nothing is downloaded; logging of Presidio's setup is quieted)."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    registry = RecognizerRegistry(supported_languages=list(LANGUAGES))
    for language in LANGUAGES:
        for recognizer in (
            *recognizers_en.presidio_recognizers(language),
            *recognizers_en.recognizers(language),
            *recognizers_zh.recognizers(language),
            PersonNameRecognizer(language),
        ):
            registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=TokenizerNlpEngine(), supported_languages=list(LANGUAGES),
                          default_score_threshold=SCORE_THRESHOLD)


def _plausible_date(value: str) -> bool:
    """A four-digit number in a date is a year of a living record ("Version 1.2.3456" is no date)."""
    return all(1850 <= int(y) <= 2099 for y in re.findall(r"(?<!\d)\d{4}(?!\d)", value))


def resolve(results, text: str) -> list[Finding]:
    """Non-overlapping findings: higher score first, then the longer span, then the kind's priority."""
    candidates = []
    for r in results:
        kind = KIND_OF_ENTITY.get(r.entity_type)
        if kind is None or r.end <= r.start:
            continue
        start, end = r.start, r.end
        while end > start and text[end - 1] in " \t\n.,;:)]}>'\"":  # trailing punctuation stays outside the mask
            end -= 1
        if kind == "DATE" and not _plausible_date(text[start:end]):
            continue
        if end > start:
            candidates.append((-round(r.score, 3), -(end - start), _PRIORITY[kind], start, end, kind))
    chosen: list[Finding] = []
    taken: list[tuple[int, int]] = []
    for *_, start, end, kind in sorted(candidates):
        if any(start < e and s < end for s, e in taken):
            continue
        taken.append((start, end))
        chosen.append(Finding(kind, start, end))
    return sorted(chosen, key=lambda f: f.start)


def find(text: str) -> list[Finding]:
    """Every identifier Presidio and goldloop's recognizers find in the text, overlaps resolved."""
    if not text.strip():
        return []
    return resolve(analyzer().analyze(text=text, language=language_of(text)), text)


def deidentify(text: str, options: DeidOptions | None = None) -> tuple[str, Counter]:
    """The text with names, identifiers, contact details, dates, ages over 89 and addresses replaced, and the count of
    replacements per kind."""
    options = options or DeidOptions()
    findings = find(text)
    if not findings:
        return text, Counter()
    key = document_key(text, options.secret) if (options.pseudonymize or options.shift_dates) else b""
    return apply(text, findings, key, pseudonymize=options.pseudonymize, shift_dates=options.shift_dates)
