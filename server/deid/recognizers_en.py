"""Presidio's own pattern recognizers, set up to run offline and on clinical text, and goldloop's recognizers for what
Presidio has none of: record numbers, ages over 89 (HIPAA Safe Harbor), street addresses, dates written with month
names, ISO dates next to Chinese characters."""
from __future__ import annotations

import functools
import re

from presidio_analyzer import Pattern
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    DateRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UrlRecognizer,
    UsSsnRecognizer,
)

from .rules import NOT_UNIT, RegexRecognizer, Rule

# Presidio's short date patterns read pain scores and fractions ("7/10", "3/4") as dates; its scheme-less URL pattern
# reads "Tab.Me" as a Montenegrin domain. Those patterns are left out; the rest are Presidio's.
_DROPPED_DATE_PATTERNS = {"mm/yy or m/yy", "mm/yyyy or m/yyyy", "dd-MMM or dd-MMM"}
_URL_PATTERNS = {"Standard Url", "Quoted URL"}
# national formats only for these; a number written with +<country code> is found whatever its region
PHONE_REGIONS = ("US",)


@functools.lru_cache(maxsize=1)
def offline_tld_extractor():
    """tldextract with its bundled suffix list: the default fetches publicsuffix.org on first use (hangs offline)."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer; the domain check uses the bundled public-suffix list, never the network."""

    def validate_result(self, pattern_text: str) -> bool:
        return offline_tld_extractor()(pattern_text).fqdn != ""


_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?"
    r"|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DATE_WORDS = re.compile(
    rf"(?i)\b(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+(?:19|20)\d{{2}}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{{2}})(?!\d)"
)
# a month and day without the year is still a date element (HIPAA); "May" alone is too often the verb
_DATE_MONTH_DAY = re.compile(
    r"\b(?:(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|June?|July?|Aug(?:ust)?|Sept?(?:ember)?|Oct(?:ober)?"
    r"|Nov(?:ember)?|Dec(?:ember)?)\.?\s+(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?|May\s+(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th))"
    r"(?![\d/]|[.,]\d|\s*(?:mg|ml|%|units?)\b)"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MON = r"(?:0?[1-9]|1[0-2])"
# digit boundaries, not \b: next to a Chinese character \b does not exist (both are word characters)
_DATE_ISO = re.compile(rf"(?<![\d./-])(?:19|20)\d{{2}}([-/.]){_MON}\1{_DAY}(?![\d./-])")
_DATE_US = re.compile(rf"(?<![\d./-]){_MON}([-/]){_DAY}\1(?:19|20)\d{{2}}(?![\d./-])")

_RECORD = re.compile(
    r"(?i:\b(?:MRN|MR\s*#|medical\s+record(?:\s+(?:number|no\.?|#))?|record\s+(?:number|no\.?|#)|chart\s+(?:number|no\.?|#)"
    r"|admission\s+(?:number|no\.?|#|id)|account\s+(?:number|no\.?|#)|acct\.?(?:\s*(?:#|no\.?))?"
    r"|encounter\s+(?:number|no\.?|#|id)|visit\s+(?:number|no\.?|#|id)|patient\s+(?:id|number|no\.?|#)"
    r"|hospital\s+(?:number|no\.?|#)|case\s+(?:number|no\.?|#)|FIN|CSN)(?![A-Za-z]))\.?"
    r"\s*(?:[:#=]|is)?\s*#?\s*((?=[A-Z-]*\d)[A-Z]{0,3}-?\d[\dA-Z-]{2,15}[\dA-Z])(?![\dA-Za-z]|[.,/]\d)" + NOT_UNIT
)

# Presidio's phone recognizer asks libphonenumber whether a number is assigned; notes (and fictional or test records)
# hold 555 numbers and unassigned area codes, so North American formats are also matched by shape
_PHONE_NANP = re.compile(
    r"(?<![\w.,/+-])(?:\+1[-. ]?\d{3}[-. ]\d{3}[-. ]\d{4}|(?:1[-.])?(?:\(\d{3}\)[ .-]?\d{3}[-.]\d{4}|\d{3}([-.])\d{3}\1\d{4}))"
    r"(?![\d]|[.,-]\d)" + NOT_UNIT
)
_PHONE_KEYWORD = re.compile(
    r"(?i:\b(?:tel|telephone|phone|ph|fax|facsimile|mobile|cell|pager|contact\s+number)\b\.?\s*(?:no\b\.?|number|#)?\s*[:#]?\s*)"
    r"(\+?\(?\d[\d ().-]{5,}\d)(?![\d])" + NOT_UNIT
)


def _phone_digits_ok(value: str, _m) -> bool:
    return 7 <= sum(ch.isdigit() for ch in value) <= 15


_AGE_PATTERNS = (
    re.compile(r"(?i)(?<![\d.])(\d{2,3})(?=[\s-]*(?:years?|yrs?|y)[\s-]*(?:old|of\s+age)\b|\s*(?:yo|y/o|y\.o\.)(?![a-z]))"),
    re.compile(r"(?i)\b(?:aged?|age:)\s*(\d{2,3})(?!\d|\.\d)"),
    re.compile(r"(?i)\b(?:in\s+(?:his|her|their)\s+)(\d{2,3})s\b"),
)

_STREET = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter"
    r"|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq)"
)
_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA"
    "|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC"
)
_ADDRESS = re.compile(
    rf"\b\d{{1,5}}\s+(?:[NSEW]\.?\s+)?(?:[A-Z][a-z]+\s+){{1,3}}{_STREET}\b\.?"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|#)\.?\s*#?\w+)?"
    r"(?:,\s*[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)?"
    rf"(?:,\s*(?:{_STATES})(?:\s+\d{{5}}(?:-\d{{4}})?)?)?"
)
_CITY_STATE_ZIP = re.compile(rf"\b(?:[A-Z][a-z]+\s){{0,2}}[A-Z][a-z]+,\s*(?:{_STATES})\s+\d{{5}}(?:-\d{{4}})?\b")
_PO_BOX = re.compile(r"(?i)\bP\.?\s?O\.?\s+Box\s+\d+\b")


def _age_over_89(value: str, _m) -> bool:
    return 89 < int(value) < 130


def presidio_recognizers(language: str) -> list:
    """Presidio's pattern recognizers (e-mail, phone, card, IBAN, IP, URL, dates, US SSN) for one analyzer language."""
    dates = [p for p in DateRecognizer.PATTERNS if p.name not in _DROPPED_DATE_PATTERNS]
    urls = [p for p in UrlRecognizer.PATTERNS if p.name in _URL_PATTERNS]
    urls.append(Pattern("www URL", r"(?i)\bwww\d{0,3}\.[a-z0-9-]+(?:\.[a-z0-9-]+)+(?:/[^\s()<>\"']*)?", 0.6))
    return [
        OfflineEmailRecognizer(supported_language=language),
        PhoneRecognizer(supported_language=language, supported_regions=PHONE_REGIONS),
        CreditCardRecognizer(supported_language=language),
        IbanRecognizer(supported_language=language),
        IpRecognizer(supported_language=language),
        UrlRecognizer(supported_language=language, patterns=urls),
        DateRecognizer(supported_language=language, patterns=dates),
        UsSsnRecognizer(supported_language=language),
    ]


def recognizers(language: str) -> list[RegexRecognizer]:
    """goldloop's recognizers for English records (record numbers, ages, addresses, dates Presidio misses)."""
    return [
        RegexRecognizer("MEDICAL_RECORD", [Rule(_RECORD, 0.9, 1)], language, "en_medical_record"),
        RegexRecognizer("PHONE_NUMBER", [Rule(_PHONE_NANP, 0.7, 0, _phone_digits_ok),
                                         Rule(_PHONE_KEYWORD, 0.75, 1, _phone_digits_ok)], language, "en_phone"),
        RegexRecognizer("AGE_OVER_89", [Rule(p, 0.8, 1, _age_over_89) for p in _AGE_PATTERNS], language, "en_age"),
        RegexRecognizer("ADDRESS", [Rule(_ADDRESS, 0.8), Rule(_CITY_STATE_ZIP, 0.7), Rule(_PO_BOX, 0.7)], language,
                        "en_address"),
        RegexRecognizer("DATE_TIME", [Rule(_DATE_WORDS, 0.85), Rule(_DATE_ISO, 0.8), Rule(_DATE_US, 0.8),
                                      Rule(_DATE_MONTH_DAY, 0.7)], language,
                        "date_extra"),
    ]
