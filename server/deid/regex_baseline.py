"""The regular-expression masker goldloop used before Presidio: e-mails, URLs, dates of birth, IDs after a keyword,
US SSNs and phone numbers; no names, no Chinese identifiers. Kept only as the baseline row of bench/deid.py."""
from __future__ import annotations

import re
from collections import Counter

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE = (
    r"(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})"
    r"|\d{4}[/.-]\d{1,2}[/.-]\d{1,2}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})(?!\d)"
)
_DOB = re.compile(
    r"(?i)(\b(?:d\.o\.b\.?|dob|date\s+of\s+birth|birth\s*date|born(?:\s+on)?)"
    r"\s*(?:[:#=-]|is|was)?\s*)" + _DATE
)
_ID_KEYWORD = (
    r"(?:\b(?i:(?:medical\s+)?record|patient|member|subscriber|employee|customer|client|account|acct"
    r"|policy|case|chart|claim|passport|licen[cs]e|insurance|social\s+security|nhs)"
    r"(?:\s*(?i:number|num\b\.?|no\b\.?|#|id\b)))"
    r"|\b(?i:mrn|ssn)\b|\bID\b"
)
_ID = re.compile(
    rf"((?:{_ID_KEYWORD})\s*(?:[:#=]|is)?\s*)"
    r"((?=[A-Za-z-]*\d)[A-Za-z0-9][A-Za-z0-9-]{2,}[A-Za-z0-9])(?![A-Za-z0-9]|[.,/]\d)"
)
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'\]\[]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)'\""
_NOT_A_UNIT = r"(?!\s?(?i:mg|mcg|µg|g|kg|ml|iu|units?|mm|cm|%)(?![A-Za-z]))"
_PHONE_PATTERNS = (
    # international: +<country code> followed by digit groups
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){1,5}(?![\d])"),
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567 (one separator throughout)
    re.compile(r"(?<![\w.,/-])\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}(?![\d]|[.,-]\d)" + _NOT_A_UNIT),
    re.compile(r"(?<![\w.,/-])(?:1[-. ])?\d{3}([-.])\d{3}\1\d{4}(?![\d]|[.,-]\d)" + _NOT_A_UNIT),
    # keyword-anchored: tel / phone / fax / mobile followed by a digit run
    re.compile(
        r"(?i:(\b(?:tel|telephone|phone|ph|fax|facsimile|mobile|cell)\b\.?\s*(?:no\b\.?|number)?\s*[:#]?\s*))"
        r"(\+?\(?\d[\d ().-]{5,}\d)(?![\d])"
    ),
)


def mask_pii(text: str) -> tuple[str, Counter]:
    """Replace e-mails, URLs, dates of birth, IDs and phone numbers with typed placeholders."""
    counts: Counter = Counter()

    def sub(pattern: re.Pattern, kind: str, value: str, keep_prefix: bool = False) -> str:
        def repl(m: re.Match) -> str:
            counts[kind] += 1
            return (m.group(1) if keep_prefix else "") + f"[{kind}]"
        return pattern.sub(repl, value)

    text = sub(_EMAIL, "EMAIL", text)
    text = _mask_urls(text, counts)
    text = sub(_DOB, "DOB", text, keep_prefix=True)
    text = sub(_SSN, "ID", text)
    text = sub(_ID, "ID", text, keep_prefix=True)
    for pattern in _PHONE_PATTERNS[:3]:
        text = _mask_phone(pattern, text, counts, prefix_group=False)
    text = _mask_phone(_PHONE_PATTERNS[3], text, counts, prefix_group=True)
    return text, counts


def _mask_urls(text: str, counts: Counter) -> str:
    """Replace URLs, leaving trailing sentence punctuation outside the placeholder."""
    def repl(m: re.Match) -> str:
        url = m.group(0)
        stripped = url.rstrip(_URL_TRAILING)
        if "(" in stripped and url[len(stripped):].startswith(")"):
            stripped += ")"
        counts["URL"] += 1
        return "[URL]" + url[len(stripped):]
    return _URL.sub(repl, text)


def _mask_phone(pattern: re.Pattern, text: str, counts: Counter, prefix_group: bool) -> str:
    """Replace phone-number matches that hold a plausible count of digits (7 to 15)."""
    def repl(m: re.Match) -> str:
        number = m.group(2) if prefix_group else m.group(0)
        digits = sum(ch.isdigit() for ch in number)
        if not 7 <= digits <= 15:
            return m.group(0)
        counts["PHONE"] += 1
        return (m.group(1) if prefix_group else "") + "[PHONE]"
    return pattern.sub(repl, text)
