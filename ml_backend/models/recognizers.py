"""Built-in pattern recognizers: span suggestions from the first document, keyed by a label's NAME.

The exact-string matcher (:class:`~ml_backend.models.sklearn_models.SpanMatcher`) knows only strings annotators
already labeled, so a new project starts with no span suggestions. For labels of a known kind (a date, an
amount, a governing law ...) a regular expression does better than nothing until the first labels arrive.

Each ``score`` is the precision ``bench/recognizers.py`` measures on CUAD where CUAD's marks allow (lower bounds),
else hand-checked or conservative (each ``why`` says). Obligation gets no recognizer: an obligation is a whole
clause whose boundaries and modality ("shall", "must", "agrees to") a pattern cannot judge.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

from ..alignment import Span

# number words, for "ten (10) years", "ten thousand dollars ($10,000)", "fifty percent (50%)"
_UNITS = ("zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen"
          "|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand"
          "|million|billion|half")
NUMBER_WORD = rf"(?:{_UNITS})(?:-(?:{_UNITS}))?"
NUMBER_WORDS = rf"{NUMBER_WORD}(?:\s+(?:and\s+)?{NUMBER_WORD})*"
FIGURE = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?:'\d{3})+|\d{1,3}(?:\.\d{3})+(?:,\d{1,2})?(?!\d)|\d+(?:\.\d+)?"
CURRENCY = r"(?:U\.S\.\s?\$|US\s?\$|HK\$|C\$|A\$|S\$|USD|EUR|GBP|CAD|AUD|HKD|CHF|JPY|CNY|RMB|€|£|¥|￥|\$)"
SCALE = r"(?:\s+(?:million|billion|thousand)|\s?(?:mm|bn|m|k)(?!\w))"
MONTH = (r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
         r"|Jan\.?|Feb\.?|Mar\.?|Apr\.?|Jun\.?|Jul\.?|Aug\.?|Sept?\.?|Oct\.?|Nov\.?|Dec\.?)")
DAY = r"(?:[0-3]?\d)(?:\s?(?:st|nd|rd|th|t\s?h))?"  # "16t h": a split ordinal, as PDF-extracted contracts have it
YEAR = r"(?:1[6-9]|2[01])\d\d"
CJK_DIGIT = "零〇一二三四五六七八九十百千万亿壹贰叁肆伍陆柒捌玖拾佰仟两"
STRIP = " \t\r\n,;:"


@dataclass(frozen=True)
class Recognizer:
    """One kind of span a pattern can find: the label names it answers to, how it finds spans, its score."""

    kind: str
    names: frozenset
    find: Callable[[str], Iterator[tuple[int, int]]]
    score: float
    why: str


def _regex_finder(regex: re.Pattern) -> Callable[[str], Iterator[tuple[int, int]]]:
    return lambda text: (m.span() for m in regex.finditer(text))


def _plausible_date(text: str) -> bool:
    """Numeric dates must be real: day 1-31, month 1-12 on one side ("12/2/2019", "2019-12-02")."""
    parts = [int(p) for p in re.split(r"\D+", text) if p]
    if len(parts) != 3:
        return True
    if parts[0] > 31:  # year first
        return 1 <= parts[1] <= 12 and 1 <= parts[2] <= 31
    a, b = parts[0], parts[1]
    return 1 <= a <= 31 and 1 <= b <= 31 and (a <= 12 or b <= 12)


DATE_RE = re.compile(
    rf"(?<![\w/.-])(?:"
    rf"{MONTH}\s+{DAY},?\s+{YEAR}"                              # June 21, 1999
    rf"|{DAY}\s+(?:day\s+of\s+)?{MONTH},?\s+{YEAR}"            # 21 June 1999, 15th day of January, 2018
    rf"|(?:January|February|March|April|May|June|July|August|September|October|November|December),?\s+{YEAR}"
    rf"|{YEAR}-\d{{1,2}}-\d{{1,2}}|{YEAR}/\d{{1,2}}/\d{{1,2}}"   # 2019-12-02
    rf"|\d{{1,2}}/\d{{1,2}}/(?:{YEAR}|\d\d)|\d{{1,2}}-\d{{1,2}}-{YEAR}|\d{{1,2}}\.\d{{1,2}}\.{YEAR}"  # 12/2/2019
    rf")(?![\w/-])"
    rf"|\d{{4}}\s?年\s?\d{{1,2}}\s?月(?:\s?\d{{1,2}}\s?[日号])?"   # 2018年1月15日
    rf"|[〇零一二三四五六七八九]{{4}}年[一二三四五六七八九十]{{1,2}}月(?:[一二三四五六七八九十]{{1,3}}[日号])?"
    rf"|(?<!\d)\d{{1,2}}月\d{{1,2}}[日号]",
    re.IGNORECASE,
)


def find_dates(text: str) -> Iterator[tuple[int, int]]:
    return (m.span() for m in DATE_RE.finditer(text) if _plausible_date(m.group(0)))


MONEY = rf"{CURRENCY}\s?(?:{FIGURE}){SCALE}?"
AMOUNT_RE = re.compile(
    rf"(?<![\w$/])(?:"
    rf"{NUMBER_WORDS}(?:\s+and\s+(?:No|\d\d)/100)?(?:\s+(?:U\.S\.|US|United\s+States|Hong\s+Kong|Canadian|Australian))?"
    rf"(?:\s+(?:dollars|euros|pounds(?:\s+sterling)?|yuan)(?:\s+(?:US|U\.S\.))?)?\s*\(\s*{MONEY}\s*\)(?:\s+(?:dollars|euros))?"
    rf"|{MONEY}(?:\s+(?:U\.S\.\s+)?(?:dollars|USD|EUR))?"                       # US$1.5 million, $10,000
    rf"|(?:{FIGURE}){SCALE}?\s?(?:U\.S\.\s+|US\s+)?(?:dollars|euros|pounds\s+sterling|USD|EUR|GBP|RMB|CHF)(?!\w)"
    rf"|{NUMBER_WORDS}\s+(?:U\.S\.\s+)?(?:dollars|euros)(?!\w)"
    rf")"
    rf"|(?:人民币|美元|港币|欧元|RMB\s?|¥|￥)?\d[\d,.]*\s?[万亿千百萬億]*\s?(?:美元|欧元|港元|日元|英镑|元)"
    rf"|(?:人民币|美元|港币|欧元|¥|￥)\s?\d[\d,.]*[万亿萬億]*"
    rf"|(?:人民币|美元|港币|欧元)[{CJK_DIGIT}]+元|[{CJK_DIGIT}]+[万亿萬億]元",
    re.IGNORECASE,
)

PERCENT_RE = re.compile(
    rf"(?<![\w.])(?:{NUMBER_WORDS}\s+(?:percent|per\s+cent)(?:\s*\(\s*(?:{FIGURE})\s?%\s*\))?"
    rf"|(?:{FIGURE})\s?(?:%|％|percent(?!\w)|per\s+cent(?!\w)|pct(?!\w)))"
    rf"|百分之[{CJK_DIGIT}点\d.]+|\d+(?:\.\d+)?％",
    re.IGNORECASE,
)

# one-letter units lower-case only: "10-12G" is a form name, "Schedule 6L" a schedule
DOSE_UNIT = (r"(?:g|cc|(?i:mg|mcg|µg|μg|ug|ng|gm|grams?|milligrams?|micrograms?|ml|iu|units?|mmol|meq|tablets?"
             r"|capsules?|puffs?|drops?))")
DOSAGE_RE = re.compile(
    rf"(?<![\w.,-])\d+(?:\.\d+)?(?:\s?(?:-|–|to)\s?\d+(?:\.\d+)?)?\s?{DOSE_UNIT}"
    rf"(?:/(?i:kg|m2|m²|day|d|dose|h|hr|ml|l))?(?![\w/-])"
    rf"|\d+(?:\.\d+)?\s?(?:毫克|微克|毫升|国际单位|克|片|粒|丸|袋|支)",
)

# a jurisdiction: capitalised words, "of"/"and" inside; none of the words that end the phrase
_STOP = r"(?!(?i:without|excluding|except|including|notwithstanding|applicable|regard|as|in|that|which|but|other|with|to|its|any|such|the|shall|and|or|of)\b)"
_CAPW = rf"{_STOP}[A-Z](?:[\w'’-]|\.(?=\w))*"
_JURIS = (rf"(?:(?i:(?:State|Commonwealth|Province|Republic|Kingdom|People's\s+Republic|Federal\s+Republic|Hong\s+Kong\s+"
          rf"Special\s+Administrative\s+Region|Territory|Canton|Emirate)\s+of)\s+(?i:the\s+)?)?"
          rf"{_CAPW}(?:\s+(?:(?i:of|and)\s+(?i:the\s+)?)?{_CAPW}){{0,5}}"
          rf"(?:,\s*(?:Canada|U\.S\.A\.|USA|United\s+States(?:\s+of\s+America)?|China|Australia|Germany|England|Japan))?")
LAW_RE = re.compile(rf"(?<!\w)(?:(?i:the)\s+)?(?:(?i:internal|substantive|domestic)\s+)?(?i:laws?)\s+(?i:of)\s+(?:(?i:the)\s+)?{_JURIS}")
LAW_CUE = re.compile(r"govern|constru|interpret|accordance|controlled|enforce|subject\s+to", re.IGNORECASE)
INCORPORATION = re.compile(r"organi[sz]ed|incorporated|existing|formed|registered|chartered", re.IGNORECASE)


def find_governing_law(text: str) -> Iterator[tuple[int, int]]:
    """"the laws of the State of New York" where the sentence before it says governed / construed / interpreted
    (not "a corporation organized under the laws of Delaware": that is where a party is incorporated)."""
    for m in LAW_RE.finditer(text):
        before = text[max(0, m.start() - 160): m.start()]
        before = re.split(r"[.;]\s|\n\s*\n", before)[-1]
        if LAW_CUE.search(before) and not INCORPORATION.search(before):
            yield m.span()


_COUNT = rf"(?:{NUMBER_WORD}|\d+)(?:\s*\(\d+\))?[\s-]+(?:(?:calendar|business|consecutive|full)\s+)?"
_LEAD = r"\s+(?:(?:a|an|one|additional|successive|further|consecutive|another|up\s+to|approximately)\s+)*"
DURATION = rf"{_COUNT}(?:years?|months?|weeks?|days?)(?!\w)"
LONG_DURATION = rf"{_COUNT}(?:years?|months?)(?!\w)"
# "for a period of" is the agreement's term only in a sentence about its effect, and never days (notice, cure);
# "a twelve (12) month period" is an accounting or notice period on CUAD: no pattern
TERM_RE = re.compile(
    rf"(?:terms?\s+(?:of|shall\s+be|will\s+be|is|:)|renew\w*\s+(?:automatically\s+)?for|extend\w*\s+for"
    rf"|(?:continue|remain\s+in\s+(?:full\s+force\s+and\s+)?effect)\s+for){_LEAD}(?P<v>{DURATION})"
    rf"|(?:periods?|duration)\s+of{_LEAD}(?P<p>{LONG_DURATION})"
    rf"|(?<!\w)(?P<w>{DURATION})(?=[\s-]+(?:initial\s+|renewal\s+)?terms?\b)",
    re.IGNORECASE,
)
TERM_CUE = re.compile(r"continu|remain|effect|renew|extend|\bterm\b|initial|commenc|expir", re.IGNORECASE)
NOT_TERM = re.compile(r"surviv|thereafter|following|after|compet|solicit|confidential|records|audit", re.IGNORECASE)


def find_terms(text: str) -> Iterator[tuple[int, int]]:
    """A duration after "term of" / "renew for" / "continue for", or before "term"; after "period of" only in a
    sentence about the agreement's effect and not about what survives it ("for a period of two years after")."""
    for m in TERM_RE.finditer(text):
        if m.group("p"):
            before = re.split(r"[.;]\s", text[max(0, m.start() - 120): m.start()])[-1]
            if not TERM_CUE.search(before) or NOT_TERM.search(before + text[m.end(): m.end() + 40]):
                continue
        yield next(m.span(g) for g in "vpw" if m.group(g))


PARTY_CHARS = 4000  # nine CUAD party names in ten start within the first 3,000 characters
_WS = r"(?:[ \t]{1,3}\n?[ \t]{0,12}|\n[ \t]{0,12})"  # a wrapped line, not a column gap
# abbreviations in any case; whole words only capitalised ("a Texas limited liability company" is no name)
_SUFFIX = (r"(?:(?i:Co\.?,?\s+Ltd|Pty\.?\s+Ltd|Inc|Corp|Co|Ltd|L\.?L\.?C|L\.?L\.?P|L\.?P|P\.?L\.?C|GmbH|AG|S\.?A\.?S"
           r"|S\.?p\.?A|S\.?A|N\.?V|B\.?V|S\.?A\.?R\.?L|SE)|Incorporated|INCORPORATED|Corporation|CORPORATION|Limited|LIMITED)")
# a name word: "eFashion", "i-Escrow" and "2THEMART.COM" too; a dot ends it only after an initial ("J. Crew"), so a
# name never runs across a sentence end ("Beta LLC. Acme Corp")
_NAMEW = r"(?:(?:[A-Z0-9]|[a-z]{1,2}[A-Z-])(?:[\w&'’-]|\.(?=\w))*|[A-Z]\.)"
COMPANY_RE = re.compile(
    rf"(?<![\w&.-])(?:{_NAMEW}(?:{_WS}(?:&|of|de|{_NAMEW}|\([A-Z][\w'’-]*\))){{0,7}}),?{_WS}"  # "Rise (Tianjin) ..."
    rf"{_SUFFIX}(?:\.(?=\s|$|[,;:)\"”'’])|(?![\w.]))(?!\s+(?i:liability|partnership))")
LEAD_WORDS = {"between", "by", "and", "among", "amongst", "with", "this", "agreement", "the", "is", "made", "entered",
              "into", "dated", "of", "to", "from", "hereinafter", "party", "parties", "that", "whereas", "a", "an", "&",
              "de", "for", "as", "on", "in", "at"}
SUFFIX_END = re.compile(rf",?\s*{_SUFFIX}\.?$")
CUT_WORDS = {"agreement", "between", "among", "and", "by", "with", "dated", "made", "page", "exhibit", "schedule",
             "section", "article", "annex", "source", "version", "execution", "confidential", "draft"}
ROLE_RE = re.compile(
    r"\(\s*(?:(?i:hereinafter)\s+(?:(?i:referred\s+to\s+as|called|the)\s+)*)?(?:(?i:the|a|an)\s+)?[\"“'‘]\s*"
    r"(?:(?i:the)\s+)?(?P<v>[^\"”'’()\n]{1,40}?)\s*[\"”'’]")
PARTY_HEADING = re.compile(r"(?<!\w)Party\s+[A-Z1-9]\s*:")
NOT_ROLES = {"agreement", "effective date", "parties", "party", "territory", "products", "product", "services",
             "affiliate", "affiliates", "term"}


def find_parties(text: str) -> Iterator[tuple[int, int]]:
    """Company names with a legal suffix in the contract's first part, and the quoted role each is given next."""
    head = text[:PARTY_CHARS]
    companies = []
    for m in COMPANY_RE.finditer(head):
        if re.search(r"(?<!\w)(?i:an?)\s+$", head[max(0, m.start() - 4): m.start()]):
            continue  # "a Delaware Corporation": a description, not a name
        words = [(w.group(0).casefold().strip(",:"), m.start() + w.end()) for w in re.finditer(r"\S+", m.group(0))][:-1]
        cuts = [end for w, end in words if w in CUT_WORDS or re.fullmatch(r"[\d.]+", w)]  # "ODM Supply Agreement 2 Acme Inc."
        start = cuts[-1] if cuts else m.start()
        for w, end in words:  # "Between Acme Inc." -> "Acme Inc."
            if end > start and w not in LEAD_WORDS:
                break
            start = max(start, end)
        start = len(head) - len(head[start:].lstrip(STRIP))
        end = m.end()
        if head[end - 1] == "." and re.search(r"(?<![.\w])(?i:LLC|LLP|LP|PLC|GmbH|AG|SE|SA|NV|BV)\.$", head[start:end]):
            end -= 1  # the sentence's period: these suffixes take no dot of their own
        if re.search(r"\w", SUFFIX_END.sub("", head[start:end])):  # "Inc." alone names no one
            companies.append((start, end))
    for start, end in companies:
        yield start, end
    # the role follows its party: a company name, or a "Party B:" heading whose party is still a blank ("[•]")
    anchors = sorted([end for _, end in companies] + [m.end() for m in PARTY_HEADING.finditer(head)])
    for i, end in enumerate(anchors):
        stop = min(end + 300, anchors[i + 1] if i + 1 < len(anchors) else len(head))
        role = ROLE_RE.search(head, end, stop)
        if role and role.group("v").strip().casefold() not in NOT_ROLES and re.search(r"[A-Za-z]", role.group("v")):
            yield role.span("v")


RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer("Date", frozenset({"date", "dates", "effective date", "agreement date", "expiration date", "start date",
                                  "end date", "commencement date", "termination date", "deadline", "日期"}),
               find_dates, 0.9, "Written-out, ordinal, numeric and Chinese dates with a year (or a Chinese month and "
               "day); a year alone is not a date. CUAD marks only some dates: 40 of 40 random CUAD suggestions were "
               "dates (hand-checked), scored 0.9; finds 86% of CUAD's Agreement Date answers, 93% of the written ones."),
    Recognizer("Amount", frozenset({"amount", "amounts", "money", "monetary amount", "price", "prices", "fee", "fees",
                                    "cost", "costs", "payment", "payments", "sum", "compensation", "金额"}),
               _regex_finder(AMOUNT_RE), 0.9, "A figure with a currency sign or code, a number in words with the "
               "figure in parentheses, Chinese 元/万元 amounts; a bare number is not an amount. CUAD marks no amounts: "
               "39 of 40 random CUAD suggestions were whole amounts (hand-checked)."),
    Recognizer("Percent", frozenset({"percent", "percentage", "percentages", "pct", "百分比"}),
               _regex_finder(PERCENT_RE), 0.9, "A figure with %, percent or per cent, a number in words with "
               "percent (and its figure), Chinese 百分之…; a number without the word is not a percentage. 39 of 40 "
               "random CUAD suggestions right (hand-checked)."),
    Recognizer("Dosage", frozenset({"dosage", "dosages", "dose", "doses", "剂量"}),
               _regex_finder(DOSAGE_RE), 0.5, "A figure with a dose unit (500 mg, 10 mg/kg, 2.5 ml): the amount and "
               "unit only, not the frequency. No dosage gold to measure: a conservative score."),
    Recognizer("Governing law", frozenset({"governing law", "jurisdiction", "applicable law", "choice of law", "管辖法律"}),
               find_governing_law, 0.87, "\"the laws of <jurisdiction>\" in a sentence that says governed / "
               "construed / interpreted; CUAD's clauses end the phrase at the jurisdiction (\"without regard ...\"). "
               "87% of suggestions lie in a CUAD Governing Law clause; 87% of those clauses get one."),
    Recognizer("Term", frozenset({"term", "duration", "contract term", "agreement term", "term of agreement",
                                  "renewal term", "期限"}),
               find_terms, 0.71, "A duration (\"ten (10) years\") after term of / renew for / continue for, before "
               "\"term\", or after \"period of\" in a sentence on the agreement's effect: notice, cure and survival "
               "periods share the form. 71% of suggestions lie in a CUAD Expiration Date / Renewal Term clause."),
    Recognizer("Party", frozenset({"party", "parties", "contracting party", "contract party", "counterparty",
                                   "当事人"}),
               find_parties, 0.78, "Company names with a legal suffix in the first 4,000 characters (where CUAD's "
               "party names are) and the quoted role each gets next (\"the Manufacturer\" -> Manufacturer). 78% of "
               "suggestions lie in a CUAD Parties answer, which 68% of those answers get."),
)


def _key(name: str) -> str:
    return " ".join(re.split(r"[\s_-]+", name.casefold().strip()))


def recognizers_for(labels: Sequence[str]) -> dict[str, Recognizer]:
    """The recognizer of each label whose name (casefolded, or a synonym) is a known kind; others are left out."""
    return {label: rec for label in labels for rec in RECOGNIZERS if _key(label) in rec.names}  # names are disjoint


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop surrounding spaces and separators, and an unbalanced bracket or quote at either end."""
    while start < end:
        s, e = start, end
        while start < end and text[start] in STRIP:
            start += 1
        while end > start and text[end - 1] in STRIP:
            end -= 1
        piece = text[start:end]
        if piece and piece[-1] == ")" and piece.count(")") > piece.count("(") or piece[-1:] in ("\"", "”", "'", "’") and piece[0] not in "\"“'‘":
            end -= 1
        elif piece and piece[0] == "(" and piece.count("(") > piece.count(")"):
            start += 1
        if (start, end) == (s, e):
            break
    return start, end


def recognize(text: str, recognizers: Mapping[str, Recognizer], taken: Sequence[Span] = ()) -> list[Span]:
    """Every recognizer's spans in ``text``, leftmost-longest without overlaps, trimmed, in text order.

    ``taken``: spans already found (in text order, not overlapping, e.g. annotators' strings): a recognized span
    that overlaps one of them is dropped, so those win."""
    found = []
    for label, rec in recognizers.items():
        for s, e in rec.find(text):
            s, e = _trim(text, s, e)
            if e > s:
                found.append((s, -(e - s), label, rec.score))
    starts = [t.start for t in taken]
    spans, last = [], 0
    for s, neg, label, score in sorted(found):
        e = s - neg
        i = bisect_right(starts, s)
        if s >= last and not (i and taken[i - 1].end > s) and not (i < len(taken) and taken[i].start < e):
            spans.append(Span(s, e, label, score))
            last = e
    return spans
