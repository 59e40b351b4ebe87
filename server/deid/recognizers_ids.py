"""Recognizers for identity documents and numbers that Presidio has none for, English and Chinese: passports, Hong
Kong / Macau / Taiwan identity cards, US social security numbers written after their name, health-insurance numbers,
licence plates; and the identifier-shaped numbers the engine cannot decide on (a failed check digit), which go to the
review list instead of being masked.

A number alone is rarely distinctive: most rules here need a context word ("passport", 护照, "member id", 医保卡号,
"plate", 车牌) in front, and mask only the number. The exceptions are shapes that hardly occur otherwise: a Hong Kong
or Macau number with its check digit in brackets, a Taiwan ID that passes its checksum, a Chinese passport number
(E or G + 8 digits), a Chinese plate (province character + letter + 5 or 6 characters), a Medicare MBI with dashes.
"""
from __future__ import annotations

import datetime as dt
import re

from .review import REVIEW_ENTITY, review_meta
from .rules import NOT_UNIT, RegexRecognizer, Rule, cn_resident_id_valid, hkid_valid, tw_id_valid

# ------------------------------------------------------------------------------------------------ passports

_PASSPORT_CONTEXT = re.compile(
    r"(?:(?i:\bpassport(?:\s*(?:no\b\.?|number|num\b\.?|#|id))?|\btravel\s+document\s+(?:no\b\.?|number|#))"
    r"|护照(?:号码|号|编号)?|護照(?:號碼|號)?|通行证(?:号码|号)?)"
    r"\s*(?:[:#：=]|is|为|是)?\s*#?\s*([A-Z]{0,2}\d{6,9})(?![\dA-Za-z])"
)
# Chinese ordinary passports: E or G and eight digits (E + letter + seven digits once the E series ran out)
_CN_PASSPORT = re.compile(r"(?<![\dA-Za-z])([EG]\d{8}|E[A-HJ-NP-Z]\d{7})(?![\dA-Za-z])")

# ------------------------------------------------------------------------------------------------ identity cards

# Hong Kong: one or two letters, six digits, the check character in brackets; Macau: 1, 5 or 7, six digits, (digit)
_HKID_BRACKETS = re.compile(r"(?<![\dA-Za-z])([A-Z]{1,2}\d{6}\s?[(（][0-9A][)）])")
_HKID_BARE = re.compile(r"(?<![\dA-Za-z])([A-Z]{1,2}\d{6}[0-9A])(?![\dA-Za-z])")
_HKID_CONTEXT = re.compile(
    r"(?:(?i:\bHKID(?:\s*(?:no\b\.?|number|#|card))?|\bHong\s+Kong\s+ID(?:\s+card)?(?:\s*(?:no\b\.?|number|#))?)"
    r"|香港身份证(?:号码|号)?|香港身份證(?:號碼|號)?)"
    r"\s*(?:[:#：]|is|为|是)?\s*([A-Z]{1,2}\d{6}\s?[(（]?[0-9A][)）]?)(?![\dA-Za-z])"
)
_MACAU_ID = re.compile(r"(?<![\dA-Za-z/.-])([157]\d{6}\s?[(（]\d[)）])")
_MACAU_CONTEXT = re.compile(
    r"(?:(?i:\bMacau\s+ID(?:\s+card)?(?:\s*(?:no\b\.?|number|#))?|\bBIR\b)|澳门身份证(?:号码|号)?|澳門身份證(?:號碼|號)?)"
    r"\s*(?:[:#：]|is|为|是)?\s*([157]\d{6}\s?[(（]?\d[)）]?)(?![\dA-Za-z])"
)
# Taiwan: a letter, 1 or 2 (sex), eight digits; with the context word any such shape, without it the checksum decides
_TW_ID = re.compile(r"(?<![\dA-Za-z])([A-Z][12]\d{8})(?![\dA-Za-z])")
_TW_CONTEXT = re.compile(
    r"(?:(?i:\bTaiwan(?:ese)?\s+(?:national\s+)?ID(?:\s+card)?(?:\s*(?:no\b\.?|number|#))?)"
    r"|台湾身份证(?:号码|号)?|臺灣身分證(?:字號|號碼|號)?|身分證(?:字號|號碼|號)?)"
    r"\s*(?:[:#：]|is|为|是)?\s*([A-Z][1-9]\d{8})(?![\dA-Za-z])"
)

# ------------------------------------------------------------------------------------------------ US SSN

# Presidio's SSN recognizer rejects numbers never issued (area 000 or 666, a group of zeros), one digit repeated and
# published samples (078-05-1120, 123-45-6789): after "SSN" a note holds such numbers mistyped or made up, and after
# the word a 3-2-4 number is one; only the groups of zeros (placeholders) go to review instead
_SSN_WORDS = (r"(?i:\b(?:SSN|SS\s*#|SS\s+No\b\.?|ITIN|social\s+security(?:\s+(?:number|no\b\.?|num\b\.?|#))?"
              r"|soc\.?\s*sec\.?(?:\s+(?:number|no\b\.?|#))?)(?:'s)?)")
_SSN_CONTEXT = re.compile(_SSN_WORDS + r"\s*(?:[:#=]|is|of)?\s*#?\s*(\d{3}([- .]?)\d{2}\2\d{4})(?![\d-])")
# a partial number still narrows the person: "last 4 of SSN 1234", "SSN xxx-xx-1234"
_SSN_PARTIAL = re.compile(
    _SSN_WORDS + r"[^.\n]{0,25}?(?:(?i:last\s+(?:4|four)(?:\s+digits)?|ending\s+(?:in|with)|ends\s+in)\s*[:#]?\s*(\d{4})"
    r"|((?i:x{3}|\*{3})[- ]?(?i:x{2}|\*{2})[- ]?\d{4}))(?!\d)"
)
_SSN_LAST_FOUR = re.compile(r"(?i:\blast\s+(?:4|four)(?:\s+digits)?\s+of\s+(?:the\s+|her\s+|his\s+)?)" + _SSN_WORDS
                            + r"\s*[:#]?\s*(?:is\s+)?(\d{4})(?![\d-])")

# ------------------------------------------------------------------------------------------------ insurance

_INSURANCE_EN = re.compile(
    r"(?i:\b(?:(?:insurance|insurer|plan|payer|carrier|health\s+plan|BCBS|Aetna|Cigna|Humana|United\s*Healthcare|Kaiser)"
    r"\s+(?:member\s+|subscriber\s+|policy\s+)?(?:id|number|no\b\.?|#)|member\s+(?:id|number|no\b\.?|#)"
    r"|subscriber\s+(?:id|number|no\b\.?|#)|policy\s+(?:id|number|no\b\.?|#)|group\s+(?:number|no\b\.?|#)"
    r"|beneficiary\s+(?:id|number|no\b\.?)|medicare(?:\s+(?:beneficiary\s+)?(?:id|number|no\b\.?|#|card|MBI))?"
    r"|medicaid(?:\s+(?:id|number|no\b\.?|#|card))?|MBI|HICN))\b\.?"
    r"\s*(?:[:#=]|is)?\s*#?\s*((?=[A-Z-]*\d)[A-Z0-9][A-Z0-9-]{3,20}[A-Z0-9])(?![\dA-Za-z])" + NOT_UNIT
)
# Medicare Beneficiary Identifier written with its dashes: 1EG4-TE5-MK73 (no S, L, O, I, B, Z among the letters)
_MBI = re.compile(r"(?<![\dA-Za-z-])([1-9][AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-[AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d"
                  r"-[AC-HJKMNP-RT-Y]{2}\d{2})(?![\dA-Za-z-])")
_INSURANCE_ZH = re.compile(
    r"(?:医保卡号|医保卡|医保号|医保编号|医保账号|医疗保险号|医疗保险卡号|医疗保险编号|社保卡号|社保号|社保编号|社会保障卡号|社会保障号码"
    r"|参保号|参保编号|个人编号|保险单号|保单号|新农合号|合作医疗证号|醫保卡號|保險卡號)"
    r"\s*(?:[：:]|为|是)?\s*([A-Za-z]{0,3}\d[\dA-Za-z-]{3,24}(?:\s\d{2,6}){0,4})(?![\dA-Za-z])"
)

# ------------------------------------------------------------------------------------------------ licence plates

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
# province character, the city letter, then five characters (ordinary) or six (new energy), a digit among them
_CN_PLATE = re.compile(
    rf"(?<![A-Za-z0-9])([{_PROVINCES}]\s?[A-HJ-NP-Z]\s?[·•.\-]?\s?(?=[A-HJ-NP-Z0-9]{{0,5}}\d)[A-HJ-NP-Z0-9]{{5,6}})"
    r"(?![A-Za-z0-9])"
)
_PLATE_CONTEXT = re.compile(
    r"(?:(?i:\b(?:licen[cs]e\s+plates?|plates?\s+(?:number|no\b\.?|#)|plates?|registration\s+plates?|vehicle\s+registration"
    r"|car\s+registration|licen[cs]e\s+tag|tag\s+(?:number|no\b\.?|#)|LP\s*#))|车牌号码|车牌号|车牌|牌照号|号牌)"
    r"\s*(?:[:#：]|is|reads|为|是)?\s*#?\s*"
    r"((?=[A-Z0-9 ·-]*\d)(?=[A-Z0-9 ·-]*[A-Z])[A-Z0-9]{1,8}(?:[- ·][A-Z0-9]{1,4}){0,2}"
    rf"|[{_PROVINCES}]\s?[A-Z]\s?[·•.\-]?\s?[A-Z0-9]{{4,6}})(?![A-Za-z0-9])" + NOT_UNIT
)


# the words each context rule starts from (Rule.needs): the rule runs only on a note holding one
_SSN_NEEDS = ("ssn", "ss#", "ss #", "ss no", "social", "soc", "itin")
_PASSPORT_NEEDS = ("passport", "travel", "护照", "護照", "通行证")
_HK_NEEDS = ("hkid", "hong kong", "香港")
_MACAU_NEEDS = ("macau", "bir", "澳门", "澳門")
_TW_NEEDS = ("taiwan", "台湾", "臺灣", "身分證")
_INSURANCE_EN_NEEDS = ("insur", "plan", "payer", "carrier", "bcbs", "aetna", "cigna", "humana", "united", "kaiser",
                       "member", "subscriber", "policy", "group", "beneficiary", "medicare", "medicaid", "mbi", "hicn")
_INSURANCE_ZH_NEEDS = ("医保", "医疗保险", "社保", "社会保障", "参保", "个人编号", "保险", "保单", "新农合", "合作医疗", "醫保", "保險")
_PLATE_NEEDS = ("plate", "registration", "licen", "tag", "lp", "车牌", "牌照", "号牌")


def _plate_ok(value: str, _m) -> bool:
    return 4 <= sum(ch.isalnum() for ch in value) <= 9


def _ssn_ok(value: str, _m) -> bool:
    """A group of zeros is never issued (000-12-3456, 123-00-4567): a placeholder, sent to review instead."""
    digits = "".join(ch for ch in value if ch.isdigit())
    return "000" != digits[:3] and digits[3:5] != "00" and digits[5:] != "0000"


def _not(check):
    return lambda value, m: not check(value, m)


def _cn_id_shape_fails(value: str, _m) -> bool:
    """An 18-character resident ID shape with a real birth date whose check character is wrong: mistyped or made up."""
    value = value.upper()
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return value[0] != "0" and 1890 <= born.year and born <= dt.date.today() and not cn_resident_id_valid(value)


_CN_ID_SHAPE = re.compile(r"(?<![\dA-Za-z])(\d{17}[\dXx])(?![\dA-Za-z])")


def recognizers(language: str) -> list[RegexRecognizer]:
    """The identity-document, insurance and plate recognizers, and the review rules, for one analyzer language."""
    return [
        RegexRecognizer("PASSPORT", [Rule(_PASSPORT_CONTEXT, 0.9, 1, needs=_PASSPORT_NEEDS), Rule(_CN_PASSPORT, 0.7, 1)],
                        language, "passport"),
        RegexRecognizer("REGIONAL_ID", [
            Rule(_HKID_CONTEXT, 0.95, 1, needs=_HK_NEEDS),
            # the bracketed form is how the card writes it: masked with a wrong check digit too
            Rule(_HKID_BRACKETS, 0.85, 1, needs=("(", "（")),
            Rule(_HKID_BARE, 0.8, 1, lambda v, _m: hkid_valid(v)),
            Rule(_MACAU_CONTEXT, 0.95, 1, needs=_MACAU_NEEDS), Rule(_MACAU_ID, 0.85, 1, needs=("(", "（")),
            Rule(_TW_CONTEXT, 0.95, 1, needs=_TW_NEEDS), Rule(_TW_ID, 0.85, 1, lambda v, _m: tw_id_valid(v)),
        ], language, "regional_id"),
        RegexRecognizer("US_SSN", [Rule(_SSN_CONTEXT, 0.95, 1, _ssn_ok, needs=_SSN_NEEDS),
                                   Rule(_SSN_PARTIAL, 0.9, 1, needs=_SSN_NEEDS), Rule(_SSN_PARTIAL, 0.9, 2, needs=_SSN_NEEDS),
                                   Rule(_SSN_LAST_FOUR, 0.9, 1, needs=_SSN_NEEDS)], language, "ssn_context"),
        RegexRecognizer("INSURANCE_ID", [Rule(_INSURANCE_EN, 0.9, 1, needs=_INSURANCE_EN_NEEDS), Rule(_MBI, 0.85, 1),
                                         Rule(_INSURANCE_ZH, 0.92, 1, needs=_INSURANCE_ZH_NEEDS)],
                        language, "insurance_id"),
        RegexRecognizer("LICENSE_PLATE", [Rule(_PLATE_CONTEXT, 0.9, 1, _plate_ok, needs=_PLATE_NEEDS),
                                          Rule(_CN_PLATE, 0.8, 1, needs=tuple(_PROVINCES))], language, "license_plate"),
        # identifier shapes the engine will not mask and cannot rule out: listed for review (REVIEW_ENTITY)
        RegexRecognizer(REVIEW_ENTITY, [
            Rule(_SSN_CONTEXT, 0.5, 1, _not(_ssn_ok), review_meta("ID", "SSN-shaped after SSN, with a group of zeros"),
                 needs=_SSN_NEEDS),
            Rule(_CN_ID_SHAPE, 0.5, 1, _cn_id_shape_fails,
                 review_meta("ID", "resident-ID shape and birth date, check character fails")),
            Rule(_TW_ID, 0.5, 1, _not(lambda v, _m: tw_id_valid(v)), review_meta("ID", "Taiwan ID shape, checksum fails")),
        ], language, "review_ids"),
    ]
