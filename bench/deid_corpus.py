"""Synthetic clinical notes with identifiers at known offsets, for bench/deid.py and the de-identification tests.

Each note is a template (header, vitals with drug doses, footer) around real note fragments: sentences of NCBI disease
abstracts (English, public domain) or cMedQANER questions (Chinese, Apache-2.0), whose annotated entities are the
clinical words that must stay. Identifiers are generated, never real.

Names are not circular with the recognizer's lists: English names come from Faker locales other than en_US, minus every
name of the en_US lists the recognizer ships (so no inserted name is in its lists). Chinese surnames are a closed class:
the benchmark draws from its own list of the 100 most common surnames (typed here, not read from the recognizer's file),
and given names from its own character pool; the recognizer uses no given-name list.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from server.deid.rules import cn_id_check_char, luhn_valid

STRUCTURED = ("ID", "MRN", "PHONE", "EMAIL", "DATE")
# NAME: a name in a context a recognizer rule covers, or recurring; NAME_FREE: in free text no rule covers (honest misses)
NAMES = ("NAME", "NAME_FREE")

ZH_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦"
    "贾夏付方邹熊白孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚邵万覃武钱戴严欧莫孔向常汤康易乔赖文"
)
ZH_GIVEN = "子涵欣怡梓晨曦紫诗梦琪嘉可馨一诺浩然宇轩墨俊杰志建国华淑珍秀兰桂芳玉凤英丽娟海燕红梅振永刚文博思远雅婷佳慧敏静雪晓东明亮鹏飞"
ZH_REGIONS = ("110101", "110105", "310104", "440106", "510107", "330106", "320102", "420106", "610113", "370202")
ZH_PLACES = (("北京市", "朝阳区"), ("上海市", "徐汇区"), ("广东省广州市", "天河区"), ("四川省成都市", "武侯区"),
             ("浙江省杭州市", "西湖区"), ("湖北省武汉市", "洪山区"), ("江苏省南京市", "鼓楼区"), ("陕西省西安市", "雁塔区"))
ZH_ROADS = ("建国路", "中山路", "人民路", "解放大道", "长安街", "文三路", "天府大道", "珞喻路")
EN_STREETS = ("Oak", "Maple", "Cedar", "Pine", "Elm", "Washington", "Lake", "Hill", "Park", "Sunset", "River", "Church")
EN_SUFFIXES = ("Street", "St.", "Avenue", "Ave", "Road", "Lane", "Drive", "Boulevard", "Court")
EN_CITIES = (("Springfield", "IL"), ("Columbus", "OH"), ("Madison", "WI"), ("Austin", "TX"), ("Salem", "OR"),
             ("Albany", "NY"), ("Denver", "CO"), ("Raleigh", "NC"))
DOMAINS = ("example.com", "mail.com", "clinic.org", "hospital.net", "163.com", "qq.com", "126.com")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
          "December")


@dataclass
class Note:
    """A note's text, its identifiers (type, start, end) and its clinical words (start, end) that must stay."""

    language: str
    text: str = ""
    pii: list[tuple[str, int, int]] = field(default_factory=list)
    clinical: list[tuple[int, int]] = field(default_factory=list)

    def add(self, text: str, kind: str | None = None) -> "Note":
        start = len(self.text)
        self.text += text
        if kind == "CLINICAL":
            self.clinical.append((start, len(self.text)))
        elif kind:
            self.pii.append((kind, start, len(self.text)))
        return self

    def fragment(self, text: str, spans: list[tuple[int, int]]) -> "Note":
        start = len(self.text)
        self.text += text
        self.clinical.extend((start + s, start + e) for s, e in spans)
        return self


def read_fragments(path: Path, limit: int = 4000) -> list[tuple[str, list[tuple[int, int]]]]:
    """(text, clinical spans) of a `{"text", "spans"}` JSON Lines file; long texts are cut to their first sentences."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            # cMedQANER's "time" mentions ("12月23日") are dates, identifiers under HIPAA: not clinical words to keep
            spans = [(s["start"], s["end"]) for s in rec.get("spans", []) if s.get("label") != "time"]
            text = rec["text"]
            cut = _cut(text, 420)
            out.append((text[:cut], [(s, e) for s, e in spans if e <= cut]))
            if len(out) >= limit:
                break
    return out


def _cut(text: str, limit: int) -> int:
    if len(text) <= limit:
        return len(text)
    for stop in (". ", "。", "？", "！"):
        i = text.rfind(stop, 0, limit)
        if i > 80:
            return i + len(stop.strip()) if stop == ". " else i + 1
    return limit


def fragments(data: Path) -> tuple[list, list]:
    """English and Chinese fragments from a data folder (shared/data or tests/data): every split present."""
    en, zh = [], []
    for split in ("train", "dev", "test"):
        if (p := data / "ncbi_disease" / f"{split}.jsonl").exists():
            en += read_fragments(p)
        if (p := data / "zh_cmedqaner" / f"{split}.jsonl").exists():
            zh += read_fragments(p)
    if not en or not zh:
        raise SystemExit(f"{data}: needs ncbi_disease/*.jsonl and zh_cmedqaner/*.jsonl")
    return en, zh


@functools.lru_cache(maxsize=1)
def english_name_pool() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """First and last names of Faker's other English locales that are in none of the recognizer's lists."""
    from faker import Faker

    from server.deid.names import name_list

    known_first, known_last = set(name_list("en_first_names")), set(name_list("en_last_names"))
    first, last = set(), set()
    for loc in ("en_GB", "en_IE", "en_NZ", "en_AU", "en_IN"):
        p = Faker(loc).provider("faker.providers.person")
        first |= {n for n in p.first_names if n.isalpha() and n[0].isupper()}
        last |= {n for n in p.last_names if n.replace("'", "").replace("-", "").isalpha() and n[0].isupper()}
    return tuple(sorted(first - known_first - known_last)), tuple(sorted(last - known_last - known_first))


# ------------------------------------------------------------------------------------------------ generators


def _date(rng: random.Random, lo: int = 1930, hi: int = 2024) -> dt.date:
    return dt.date(rng.randint(lo, hi), rng.randint(1, 12), rng.randint(1, 28))


def en_date(rng: random.Random, d: dt.date | None = None) -> str:
    d = d or _date(rng)
    return rng.choice((
        f"{d.month:02d}/{d.day:02d}/{d.year}", f"{d.month}/{d.day}/{d.year}", d.isoformat(),
        f"{MONTHS[d.month - 1]} {d.day}, {d.year}", f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}",
        f"{d.day:02d}-{MONTHS[d.month - 1][:3].upper()}-{d.year}",
    ))


def zh_date(rng: random.Random) -> str:
    d = _date(rng)
    return rng.choice((f"{d.year}年{d.month}月{d.day}日", d.isoformat(), f"{d.year}/{d.month}/{d.day}",
                       f"{d.year}.{d.month:02d}.{d.day:02d}"))


def en_phone(rng: random.Random) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    return rng.choice((f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"+1 {a} {b} {c:04d}",
                       f"555-{b}-{c:04d}"))


def zh_phone(rng: random.Random) -> str:
    mobile = f"1{rng.choice('3456789')}{rng.randint(0, 999999999):09d}"
    return rng.choice((mobile, f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}", f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}",
                       f"010-{rng.randint(2000000, 89999999)}", f"0{rng.choice(['21', '755', '28'])}-{rng.randint(20000000, 89999999)}"))


def cn_id(rng: random.Random) -> str:
    d = _date(rng, 1930, 2010)
    first = f"{rng.choice(ZH_REGIONS)}{d.year}{d.month:02d}{d.day:02d}{rng.randint(0, 999):03d}"
    return first + cn_id_check_char(first)


def bank_card(rng: random.Random) -> str:
    while True:
        n = "62" + "".join(str(rng.randint(0, 9)) for _ in range(17))
        if luhn_valid(n):
            return n


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def _email(rng: random.Random, user: str) -> str:
    return f"{user}{rng.randint(1, 99) if rng.random() < 0.5 else ''}@{rng.choice(DOMAINS)}"


EN_CLINICAL_LINES = (
    ("Medications: ", "metformin", " 500 mg twice daily, ", "lisinopril", " 10 mg daily, ", "heparin", " 5000 units SC q8h."),
    ("Vitals: BP 128/82, HR 88, temperature 38.1 C, pain 7/10; ", "HbA1c", " 7.2%."),
    ("Dosing: ", "vancomycin", " 15 mg/kg IV q12h, ", "dexamethasone", " 0.5 mg/kg daily."),
    ("Labs: ", "WBC", " 11.2, ", "creatinine", " 1.4 mg/dL, INR 2.3; ", "Addison disease", " and ", "Graves disease",
     " ruled out."),
)
ZH_CLINICAL_LINES = (
    ("用药：", "阿莫西林", "0.5g，每日3次；", "二甲双胍", "500mg，每日2次。"),
    ("查体：体温38.5℃，血压140/90mmHg，心率88次/分，", "白细胞", "12.3×10^9/L。"),
    ("既往", "高血压", "病史10年，否认", "糖尿病", "史，", "头孢", "1.0g静滴。"),
)


def _clinical_line(note: Note, parts: tuple[str, ...]) -> None:
    for i, part in enumerate(parts):
        note.add(part, "CLINICAL" if i % 2 else None)


def english_note(rng: random.Random, frags: list) -> Note:
    firsts, lasts = english_name_pool()
    first, last = rng.choice(firsts), rng.choice(lasts)
    doc_last = rng.choice(lasts)
    n = Note("en")
    style = rng.randrange(4)
    if style == 0:
        n.add("Patient: ").add(f"{first} {last}", "NAME").add("   DOB: ").add(en_date(rng), "DATE")
        n.add("   MRN: ").add(str(rng.randint(100000, 99999999)), "MRN").add("\n")
    elif style == 1:
        n.add("Name: ").add(f"{last}, {first}", "NAME").add("\nDate of birth: ").add(en_date(rng), "DATE")
        n.add("\nMedical record number: ").add(f"{rng.choice('ABHM')}{rng.randint(10000, 9999999)}", "MRN").add("\n")
    elif style == 2:
        n.add(f"{rng.choice(['Mr.', 'Mrs.', 'Ms.'])} ").add(last, "NAME").add(" is a ")
        age = rng.randint(90, 104) if rng.random() < 0.5 else rng.randint(20, 85)
        if age > 89:
            n.add(str(age), "AGE")
        else:
            n.add(str(age))
        n.add("-year-old seen on ").add(en_date(rng), "DATE").add(". Acct #: ").add(str(rng.randint(1000000, 99999999)), "MRN")
        n.add(".\n")
    else:
        n.add(f"{first} {last}", "NAME").add(" was admitted on ").add(en_date(rng), "DATE").add(" (MRN ")
        n.add(str(rng.randint(100000, 9999999)), "MRN").add("). Age: ")
        age = rng.randint(90, 101)
        n.add(str(age), "AGE").add(".\n")
    text, spans = rng.choice(frags)
    n.add("History: ").fragment(text, spans).add("\n")
    _clinical_line(n, rng.choice(EN_CLINICAL_LINES))
    n.add("\n")
    extras = rng.sample(range(9), 4)
    for e in extras:
        if e == 0:
            n.add("Contact: phone ").add(en_phone(rng), "PHONE").add(", e-mail ")
            n.add(_email(rng, f"{first.lower()}.{last.lower()}"), "EMAIL").add(".\n")
        elif e == 1:
            n.add("Address: ").add(f"{rng.randint(1, 9999)} {rng.choice(EN_STREETS)} {rng.choice(EN_SUFFIXES)}, "
                                   + "{}, {} {:05d}".format(*rng.choice(EN_CITIES), rng.randint(10000, 99999)), "ADDRESS")
            n.add(".\n")
        elif e == 2:
            n.add("SSN ").add(ssn(rng), "ID").add(". Follow-up ").add(en_date(rng, _date(rng, 2020, 2025)), "DATE").add(".\n")
        elif e == 3:
            n.add("Discussed with his wife ").add(f"{rng.choice(firsts)}", "NAME").add(" who agrees with the plan.\n")
        elif e == 4:
            n.add(f"{rng.choice(['Mr.', 'Ms.'])} ").add(last, "NAME").add(" tolerated the procedure well. Call ")
            n.add(en_phone(rng), "PHONE").add(" with questions.\n")
        elif e == 5:
            n.add("Portal: ").add(f"https://portal.{rng.choice(DOMAINS)}/p/{rng.randint(1000, 99999)}", "URL").add("\n")
        elif e == 6:
            n.add("Son ").add(f"{rng.choice(firsts)} {last}", "NAME").add(" visited and will drive the patient home.\n")
        elif e == 7:  # the first name alone, as nursing notes write it
            n.add(first, "NAME").add(" reports less pain this morning and walked to the window.\n")
        else:  # a context the recognizer has no rule for
            n.add("Night shift covered by ").add(f"{rng.choice(firsts)} {rng.choice(lasts)}", "NAME_FREE").add(".\n")
    n.add("Electronically signed by ").add(f"{rng.choice(firsts)} {doc_last}", "NAME").add(", MD on ")
    n.add(en_date(rng, _date(rng, 2020, 2025)), "DATE").add(".")
    return n


def chinese_note(rng: random.Random, frags: list) -> Note:
    surname = rng.choice(ZH_SURNAMES)
    name = surname + "".join(rng.choice(ZH_GIVEN) for _ in range(rng.choice((1, 2, 2))))
    doctor = rng.choice(ZH_SURNAMES) + "".join(rng.choice(ZH_GIVEN) for _ in range(rng.choice((1, 2))))
    n = Note("zh")
    age = rng.randint(90, 102) if rng.random() < 0.3 else rng.randint(18, 85)
    style = rng.randrange(3)
    if style == 0:
        n.add("患者").add(name, "NAME").add(f"，{rng.choice('男女')}，")
    elif style == 1:
        n.add("姓名：").add(name, "NAME").add(f"  性别：{rng.choice('男女')}  年龄：")
    else:
        n.add("患者").add(name, "NAME").add("因").add(rng.choice(("胸痛", "发热", "咳嗽")), "CLINICAL").add("入院，")
    n.add(str(age), "AGE" if age > 89 else None).add("岁，身份证号").add(cn_id(rng), "ID").add("，电话")
    n.add(zh_phone(rng), "PHONE").add("。\n入院日期：").add(zh_date(rng), "DATE").add("，住院号：")
    n.add(f"{rng.choice(['', 'ZY', 'A'])}{rng.randint(100000, 99999999)}", "MRN").add("。\n")
    text, spans = rng.choice(frags)
    n.add("主诉及现病史：").fragment(text, spans).add("\n")
    _clinical_line(n, rng.choice(ZH_CLINICAL_LINES))
    n.add("\n")
    for e in rng.sample(range(8), 4):
        if e == 0:
            place, district = rng.choice(ZH_PLACES)
            n.add("住址：").add(f"{place}{district}{rng.choice(ZH_ROADS)}{rng.randint(1, 300)}号{rng.randint(1, 20)}栋"
                               f"{rng.randint(101, 2505)}室", "ADDRESS").add("。\n")
        elif e == 1:
            relative = rng.choice(ZH_SURNAMES) + "".join(rng.choice(ZH_GIVEN) for _ in range(2))
            n.add("家属").add(relative, "NAME").add(f"（{rng.choice(['妻子', '儿子', '女儿', '丈夫'])}）联系电话：")
            n.add(zh_phone(rng), "PHONE").add("。\n")
        elif e == 2:
            n.add("邮箱：").add(_email(rng, "".join(rng.choice("abcdefghjklmnpqrstwxyz") for _ in range(6))), "EMAIL")
            n.add("；病案号：").add(str(rng.randint(100000, 9999999)), "MRN").add("。\n")
        elif e == 3:
            n.add("银行卡号：").add(bank_card(rng), "ACCOUNT").add("，出院日期").add(zh_date(rng), "DATE").add("。\n")
        elif e == 4:
            n.add(doctor[0], "NAME").add("医生建议复查，").add(name, "NAME").add("表示同意。\n")
        elif e == 5:
            relative = rng.choice(ZH_SURNAMES) + "".join(rng.choice(ZH_GIVEN) for _ in range(rng.choice((1, 2))))
            n.add("患者丈夫").add(relative, "NAME").add("代诉病史。\n")
        elif e == 6:
            n.add(name, "NAME").add("今晨自诉胸闷减轻。\n")
        else:  # a context the recognizer has no rule for
            other = rng.choice(ZH_SURNAMES) + "".join(rng.choice(ZH_GIVEN) for _ in range(2))
            n.add("护工").add(other, "NAME_FREE").add("负责夜间陪护。\n")
    n.add("主治医师：").add(doctor, "NAME").add("  记录日期：").add(zh_date(rng), "DATE")
    return n


def build_notes(data: Path, n_en: int, n_zh: int, seed: int = 0) -> list[Note]:
    """n_en English and n_zh Chinese notes, reproducible from the seed."""
    rng = random.Random(seed)
    en, zh = fragments(data)
    return [english_note(rng, en) for _ in range(n_en)] + [chinese_note(rng, zh) for _ in range(n_zh)]
