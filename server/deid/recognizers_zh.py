"""Recognizers for identifiers of Chinese records that Presidio has none for: resident IDs, mobile and landline numbers,
bank cards, record numbers (住院号, 病案号 …), ages over 89 (in digits and numerals), dates written with 年月日 and
calendar months (3月份), addresses. Medical-insurance numbers (医保卡号 …) are in recognizers_ids.py."""
from __future__ import annotations

import re

from .rules import NOT_UNIT, RegexRecognizer, Rule, cn_resident_id_valid, digits_of, luhn_valid

# 身份证 in front: a mistyped or old 15-digit number still identifies the person, so context alone is enough there
_ID_CONTEXT = re.compile(r"(?:身份证|身份证号|身份证号码|公民身份号码|证件号|证件号码)\s*[：:]?\s*(\d{17}[\dXx]|\d{15})(?![\dA-Za-z])")
_ID = re.compile(r"(?<![\dA-Za-z])(\d{17}[\dXx])(?![\dA-Za-z])")

_MOBILE = re.compile(r"(?<![\d.])(?:(?:\+|00)86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?![\d.])" + NOT_UNIT)
_LANDLINE = re.compile(r"(?<![\d.])(?:\(0\d{2,3}\)\s?|（0\d{2,3}）|0\d{2,3}[\s-])[2-9]\d{6,7}(?:-\d{1,5})?(?![\d.])" + NOT_UNIT)
_PHONE_CONTEXT = re.compile(
    r"(?:电话|手机|手机号|手机号码|联系电话|联系方式|座机|固话|传真|家属电话)\s*[：:]?\s*"
    r"((?:\+?86[\s-]?)?\d[\d\s-]{5,14}\d)(?![\d.])" + NOT_UNIT
)

_CARD_CONTEXT_WORDS = ("银行卡", "卡号", "账号", "帐号", "银行账户", "信用卡", "储蓄卡")
_CARD = re.compile(r"(?<![\d.])(\d{4}(?:[\s-]?\d{4}){3}(?:[\s-]?\d{1,3})?)(?![\d.])")

_RECORD = re.compile(
    r"(?:住院号|住院号码|病案号|病历号|门诊号|急诊号|就诊号|就诊卡号|登记号|检查号|影像号|病理号|标本号|床号|ID号|患者ID|病人ID)"
    r"\s*[：:]?\s*([A-Za-z]{0,3}\d[\dA-Za-z-]{1,17})(?![\dA-Za-z])"
)

_AGE = re.compile(r"(?<![\d.])(\d{2,3})(?=\s*(?:周岁|岁))")
_AGE_CONTEXT = re.compile(r"年龄\s*[：:]?\s*(\d{2,3})(?![\d.])")
# ages over 89 in Chinese numerals: 九十二岁, 九十多岁, 一百零一岁, 百岁老人, 九旬老人 (九旬: in their nineties)
_AGE_HAN = re.compile(
    r"(?<![一二三四五六七八九十百零两])(?<!长命)((?:九十[一二三四五六七八九]?|(?:一)?百(?:零[一二三四五六七八九]|[一二]十[一二三四五六七八九]?)?)"
    r"(?:多|余|来)?(?:周岁|岁)|九旬|百岁)"
)

_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MON = r"(?:0?[1-9]|1[0-2])"
_DATE_ZH = re.compile(
    rf"(?<!\d)(?:(?:19|20)\d{{2}}\s*年\s*{_MON}\s*月(?:\s*{_DAY}\s*[日号])?|{_MON}\s*月\s*{_DAY}\s*[日号])"
)
_DATE_DOTTED = re.compile(rf"(?<![\d.])(?:19|20)\d{{2}}\.{_MON}\.{_DAY}(?![\d.])")
# a calendar month without the year: 3月份, 3月初, 3月中旬, 3月底 (not "3月余", "3月前": three months)
_DATE_MONTH_ZH = re.compile(rf"(?<![\d.年])(?:{_MON}\s*月(?:份|初|上旬|中旬|下旬|底|末))")

_HAN = r"[\u4e00-\u9fff]"
_ADDRESS_CONTEXT = re.compile(
    r"(?:住址|地址|家住|现住|住在|居住地|居住于|户籍地|户籍|籍贯|现居|家庭住址|通讯地址|单位地址|工作单位)\s*[：:]?\s*"
    rf"({_HAN}[\u4e00-\u9fff0-9A-Za-z\-－#（）()]{{1,40}}?)(?=[，,。；;、\s]|$)"
)
_ADDRESS_STREET = re.compile(
    rf"(?:{_HAN}{{2,7}}(?:省|自治区))?(?:{_HAN}{{2,7}}?市)?(?:{_HAN}{{1,7}}?[区县])?{_HAN}{{1,10}}?(?:路|街|大道|大街|巷|胡同|弄)"
    rf"\d+号(?:[\u4e00-\u9fff\d]{{0,12}}?(?:室|栋|幢|单元|楼|号))*"
)
_ADDRESS_ADMIN = re.compile(rf"(?:{_HAN}{{2,7}}?(?:省|自治区))?{_HAN}{{2,4}}?市{_HAN}{{2,4}}?[区县]")


def _age_over_89(value: str, _m) -> bool:
    return 89 < int(value) < 130


def _mobile_ok(value: str, _m) -> bool:
    digits = digits_of(value)
    return len(digits) in (11, 13, 15)


def _card_ok(value: str, m: re.Match) -> bool:
    digits = digits_of(value)
    if not 16 <= len(digits) <= 19 or not luhn_valid(digits):
        return False
    before = m.string[max(0, m.start() - 12):m.start()]
    return digits.startswith("62") or any(w in before for w in _CARD_CONTEXT_WORDS)


def _phone_context_ok(value: str, _m) -> bool:
    return 7 <= len(digits_of(value)) <= 13


def recognizers(language: str) -> list[RegexRecognizer]:
    """The Chinese-identifier recognizers, registered for one analyzer language."""
    return [
        RegexRecognizer("CN_RESIDENT_ID", [
            Rule(_ID_CONTEXT, 0.95, 1),
            Rule(_ID, 0.95, 1, lambda v, _m: cn_resident_id_valid(v)),
        ], language, "cn_resident_id"),
        RegexRecognizer("CN_PHONE", [
            Rule(_MOBILE, 0.8, 0, _mobile_ok),
            Rule(_LANDLINE, 0.7),
            Rule(_PHONE_CONTEXT, 0.75, 1, _phone_context_ok),
        ], language, "cn_phone"),
        RegexRecognizer("CN_BANK_CARD", [Rule(_CARD, 0.85, 1, _card_ok)], language, "cn_bank_card"),
        RegexRecognizer("MEDICAL_RECORD", [Rule(_RECORD, 0.9, 1)], language, "zh_medical_record"),
        RegexRecognizer("AGE_OVER_89", [
            Rule(_AGE, 0.8, 1, _age_over_89), Rule(_AGE_CONTEXT, 0.8, 1, _age_over_89), Rule(_AGE_HAN, 0.8, 1),
        ], language, "zh_age"),
        RegexRecognizer("DATE_TIME", [Rule(_DATE_ZH, 0.85), Rule(_DATE_DOTTED, 0.7), Rule(_DATE_MONTH_ZH, 0.75)],
                        language, "zh_date"),
        RegexRecognizer("ADDRESS", [
            Rule(_ADDRESS_CONTEXT, 0.8, 1), Rule(_ADDRESS_STREET, 0.75), Rule(_ADDRESS_ADMIN, 0.6),
        ], language, "zh_address"),
    ]
