"""The de-identification engine: one Presidio AnalyzerEngine (offline tokenizer, Presidio's pattern recognizers,
goldloop's recognizers for Chinese identifiers, identity documents, record numbers, ages, addresses, facilities and
names), overlap resolution, the replacement of what it finds, and the borderline spans it leaves for review."""
from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from dataclasses import dataclass, field

from . import recognizers_en, recognizers_ids, recognizers_zh
from .facilities import FacilityRecognizer
from .names import PersonNameRecognizer
from .nlp import LANGUAGES, TokenizerNlpEngine
from .options import PII_KINDS, DeidOptions
from .review import REVIEW_ENTITY, Borderline, from_result
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
    "REGIONAL_ID": "ID",
    "PASSPORT": "PASSPORT",
    "INSURANCE_ID": "INSURANCE",
    "LICENSE_PLATE": "PLATE",
    "FACILITY": "FACILITY",
}
# which finding wins an overlap at equal score: structured identifiers with checksums before looser patterns
assert set(KIND_OF_ENTITY.values()) == set(PII_KINDS)
_PRIORITY = {"EMAIL": 0, "URL": 1, "ID": 2, "PASSPORT": 3, "INSURANCE": 4, "ACCOUNT": 5, "MRN": 6, "PHONE": 7,
             "PLATE": 8, "IP": 9, "DATE": 10, "ADDRESS": 11, "FACILITY": 12, "AGE": 13, "NAME": 14}
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
            *recognizers_ids.recognizers(language),
            FacilityRecognizer(language),
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
            closing = text[end - 1]
            if closing in ")]}" and text.count("([{"[")]}".index(closing)], start, end) >= text.count(closing, start, end):
                break  # the bracket closes one inside the span: A123456(3)
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


def borderline(results, findings: list[Finding]) -> list[Borderline]:
    """The REVIEW results no finding overlaps (a span that is masked anyway needs no review), one per span."""
    seen: dict[tuple[int, int], Borderline] = {}
    for r in results:
        if r.entity_type != REVIEW_ENTITY or r.end <= r.start:
            continue
        if any(f.start < r.end and r.start < f.end for f in findings):
            continue
        b = from_result(r)
        kept = seen.get((b.start, b.end))
        if kept is None or (b.score or 0) > (kept.score or 0):
            seen[(b.start, b.end)] = b
    return sorted(seen.values(), key=lambda b: (b.start, b.end))


def analyze(text: str) -> tuple[list[Finding], list[Borderline]]:
    """What the engine masks in the text (overlaps resolved) and the borderline spans it leaves unmasked."""
    if not text.strip():
        return [], []
    results = analyzer().analyze(text=text, language=language_of(text))
    findings = resolve(results, text)
    return findings, borderline(results, findings)


def find(text: str) -> list[Finding]:
    """Every identifier Presidio and goldloop's recognizers find in the text, overlaps resolved."""
    return analyze(text)[0]


@dataclass
class Redaction:
    """A de-identified text, the count of replacements per kind, and the borderline spans left unmasked (offsets in
    the original text)."""

    text: str
    counts: Counter = field(default_factory=Counter)
    borderline: list[Borderline] = field(default_factory=list)


def redact(text: str, options: DeidOptions | None = None) -> Redaction:
    """The text with every finding replaced, the counts, and what was left for review."""
    options = options or DeidOptions()
    findings, review = analyze(text)
    if not findings:
        return Redaction(text, Counter(), review)
    key = document_key(text, options.secret) if (options.pseudonymize or options.shift_dates) else b""
    masked, counts = apply(text, findings, key, pseudonymize=options.pseudonymize, shift_dates=options.shift_dates)
    return Redaction(masked, counts, review)


def deidentify(text: str, options: DeidOptions | None = None) -> tuple[str, Counter]:
    """The text with names, identifiers, contact details, dates, ages over 89, addresses and facilities replaced, and
    the count of replacements per kind."""
    result = redact(text, options)
    return result.text, result.counts
