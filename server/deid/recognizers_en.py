"""Presidio's own pattern recognizers, set up to run offline and on clinical text, and goldloop's recognizers for what
Presidio has none of: record numbers, ages over 89 (HIPAA Safe Harbor, in digits and in words), street addresses
(American, continental European, UK postcodes), dates written with month names, partial dates (month and year, month
and day after a date word), ISO dates next to Chinese characters."""
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

# partial dates are still date elements (HIPAA): a month and a year ("09/2031", "March 2021", "2021/03") …
_DATE_MONTH_YEAR = re.compile(
    rf"(?<![\d./-])(?:{_MON}/(?:19|20)\d{{2}}|(?:19|20)\d{{2}}[/.](?:0[1-9]|1[0-2]))(?![\d/-]|\.\d)"
    r"(?!\s*(?i:dilution|titer|titre))"
)
_DATE_MONTH_NAME_YEAR = re.compile(rf"\b{_MONTH},?\s+(?:of\s+)?(?:19|20)\d{{2}}(?!\d)")
# … and a month/day without a year after a word that makes it a date: "seen 4/18", "since 3/2", "from 4/18 to 4/20".
# Without such a word "7/10" (a pain score), "4/5" (strength) and "3/4" (a fraction) stay.
_MD = rf"{_MON}/{_DAY}(?![\d/]|[.,]\d)"
_DATE_MONTH_DAY_CONTEXT = re.compile(
    rf"(?<![\w/.-])({_MD}(?:\s*(?:-|–|to|through|and|until)\s*{_MD})?)"
    r"(?!\s*(?i:scale|nodes?|positive|strength|tabs?|tablets?|pills?|caps?|capsules?|doses?|of\b|inch|cups?|mg|ml))"
)
# the word right before it (the pattern starts at the "/" number and looks back: scanning for the words is slower)
_DATE_WORD_BEFORE = re.compile(
    r"(?i:\b(?:on|since|until|till|thru|dated?|seen|visit(?:ed)?|admitted|admission|discharged?|DOS|DOB|d/c|f/u"
    r"|follow[- ]?up|scheduled|appointment|appt|returned|returns|started|stopped|held|surgery|last|next|as\s+of|died"
    r"|deceased|born|expired|from|between|mon(?:day)?|tue(?:s|sday)?|wed(?:nesday)?|thu(?:rs|rsday)?|fri(?:day)?"
    r"|sat(?:urday)?|sun(?:day)?)\b\.?:?)\s+$"
)


def _after_date_word(_value: str, m: re.Match) -> bool:
    return _DATE_WORD_BEFORE.search(m.string, max(0, m.start() - 20), m.start()) is not None

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
    # "died at 101", "turned 95", "she is 92": a bare number is an age only after these (not "HR is 92")
    re.compile(r"(?i)\b(?:died|passed\s+away|deceased|death|turned|turns|turning|at\s+the\s+age\s+of|age\s+of"
               r"|(?:she|he|patient|pt)\s+(?:is|was)(?:\s+now)?)\s+(?:at\s+)?(?:age\s+)?(\d{2,3})(?![\d.,/]|\s*%)"
               r"(?!\s*(?:bpm|mmhg|kg|lbs?|cm|mg|beats|breaths|percent|°))"),
)
# ages in words: ninety to one hundred and twenty-nine ("ninety-two", "one hundred and one"), after an age word or
# before "years old"; "ninety-two patients" stays
_UNITS_WORD = r"(?:one|two|three|four|five|six|seven|eight|nine)"
_TEENS_WORD = r"(?:ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen)"
_AGE_WORD = (rf"(?:ninety(?:[\s-]{_UNITS_WORD})?|(?:one|a)[\s-]hundred(?:(?:\s+and)?[\s-](?:twenty(?:[\s-]{_UNITS_WORD})?"
             rf"|{_TEENS_WORD}|{_UNITS_WORD}))?)")
_AGE_WORDS = (
    re.compile(rf"(?i)\b({_AGE_WORD})(?=[\s-]*(?:years?|yrs?)[\s-]*(?:old|of\s+age)\b)"),
    re.compile(rf"(?i)\b(?:aged?|age\s+of|died\s+at|passed\s+away\s+at|turned|turns|turning|(?:she|he|patient|pt|who)\s+"
               rf"(?:is|was)(?:\s+now)?)\s+(?:at\s+)?({_AGE_WORD})\b(?![\s-]*(?:percent|beats|breaths|mg|patients))"),
    # a word for the decade is an age category finer than "90 or older"
    re.compile(r"(?i)\b((?:super)?centenarians?|nonagenarians?)\b"),
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
# continental European streets: the street type first and the number before it ("27 Rue de la Paix") or after the
# name ("Via Roma 10", "Calle Mayor 5"), or a compound street word ("Hauptstraße 5"); then optionally a postcode and
# the city ("75002 Paris", "1012 LG Amsterdam")
_EU_TYPE = (r"(?:Rue|Avenue|Av\.|Boulevard|Bd\.?|Bld\.?|Chemin|Impasse|All[ée]e|Quai|Chauss[ée]e|Via|Viale|Vicolo|Piazza"
            r"|Corso|Largo|Calle|Avenida|Avda\.?|Paseo|Plaza|Carrer|Rua|Travessa|Pra[çc]a|Rambla|Strada)")
_EU_PARTICLE = r"(?:d['’]|de\s+la\s+|de\s+l['’]|de\s+|du\s+|des\s+|la\s+|le\s+|les\s+|del\s+|della\s+|dei\s+|di\s+|da\s+|do\s+|dos\s+|das\s+)"
_EU_WORD = r"[A-ZÀ-Ý][a-zà-ÿß'’-]+"
_EU_STREET_NAME = rf"{_EU_PARTICLE}?{_EU_WORD}(?:\s+{_EU_PARTICLE}?{_EU_WORD}){{0,3}}"
# (no "-ring", "-kade", "-gade": "During 3", "Blockade 2", "Brigade 4" are no streets)
_EU_COMPOUND = (r"(?:[A-ZÄÖÜ][a-zäöüß-]*(?:straße|strasse|str\.|weg|platz|gasse|allee|damm|ufer|laan|straat|gracht"
                r"|plein|steeg|vej|gatan|vägen|veien|gata)"
                rf"|{_EU_WORD}\s+(?:Straße|Strasse|Str\.|Platz|Weg|Allee|Gasse|Damm|Ufer|Laan|Straat|Gracht|Plein))")
_EU_CITY = r"(?:,?\s+(?:[A-Z]{1,2}-)?\d{4,5}(?:\s?[A-Z]{2})?\s+[A-ZÀ-Ý][a-zà-ÿ]+(?:[\s-][A-ZÀ-Ý][a-zà-ÿ]+)?(?:\s+(?:Cedex|CEDEX)(?:\s+\d+)?)?)?"
_EU_ADDRESS = re.compile(
    rf"(?<![\w/])(?:\d{{1,4}}(?:\s?(?:bis|ter|[a-c]))?,?\s+{_EU_TYPE}\s+{_EU_STREET_NAME}"
    rf"|{_EU_TYPE}\s+{_EU_STREET_NAME}\s+\d{{1,4}}[a-z]?|{_EU_COMPOUND}\s+\d{{1,4}}[a-z]?){_EU_CITY}(?![\w])"
)
# UK postcodes ("SW1A 1AA", "M1 1AE") after a comma or a town, or after an address word on the same line
_UK_POSTCODE = r"([A-Z]{1,2}\d[A-Z\d]?\s?\d[ABD-HJLNP-UW-Z]{2})(?![A-Za-z\d])"
_UK_POSTCODE_PLACED = re.compile(rf"(?:,\s*|\b[A-Z][a-z]+,?\s+){_UK_POSTCODE}")
_UK_POSTCODE_CONTEXT = re.compile(
    rf"(?i:\b(?:post\s?code|address|addr\.?|lives|living|resides|residing|home)\b)[^\n]{{0,60}}?\b(?-i:{_UK_POSTCODE})"
)


def _not_a_ratio(_value: str, m: re.Match) -> bool:
    """"1/2000" after "dilution" or "titer" is a ratio, not January 2000."""
    return not re.search(r"(?i)(?:dilution|diluted|titer|titre|ratio|concentration)\W{0,3}(?:\w+\W{1,3})?$",
                         m.string[max(0, m.start() - 30):m.start()])


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
        RegexRecognizer("AGE_OVER_89", [Rule(p, 0.8, 1, _age_over_89) for p in _AGE_PATTERNS]
                        + [Rule(p, 0.8, 1, needs=("ninety", "hundred", "narian")) for p in _AGE_WORDS],
                        language, "en_age"),
        RegexRecognizer("ADDRESS", [Rule(_ADDRESS, 0.8), Rule(_CITY_STATE_ZIP, 0.7), Rule(_PO_BOX, 0.7),
                                    Rule(_EU_ADDRESS, 0.8), Rule(_UK_POSTCODE_PLACED, 0.7, 1),
                                    Rule(_UK_POSTCODE_CONTEXT, 0.7, 1,
                                         needs=("post", "addr", "lives", "living", "resid", "home"))],
                        language, "en_address"),
        RegexRecognizer("DATE_TIME", [Rule(_DATE_WORDS, 0.85), Rule(_DATE_ISO, 0.8), Rule(_DATE_US, 0.8),
                                      Rule(_DATE_MONTH_DAY, 0.7), Rule(_DATE_MONTH_YEAR, 0.75, 0, _not_a_ratio),
                                      Rule(_DATE_MONTH_NAME_YEAR, 0.85),
                                      Rule(_DATE_MONTH_DAY_CONTEXT, 0.75, 1, _after_date_word, needs=("/",))],
                        language, "date_extra"),
    ]
