"""Names of care facilities, English and Chinese: hospitals, clinics, medical centres, hospices, nursing homes and
senior-living residences ("Massachusetts General Hospital", "Mayo Clinic", "Sunrise Senior Living", 北京协和医院,
复旦大学附属中山医院, 市第一人民医院). A facility names a place the patient was: masked as [FACILITY].

A facility word alone is not a name: "the hospital", "Hospital course", 住院, 出院, 去医院, 当地医院 stay. English needs
a capitalised name word that is not generic ("General Hospital", "Cardiology Clinic", "University Hospital" stay);
Chinese needs two or more characters in front of the facility word that are not a verb, a preposition or a generic
description (专科医院, 三甲医院, 附近的医院 stay).
"""
from __future__ import annotations

import re

from presidio_analyzer import EntityRecognizer, RecognizerResult

# ------------------------------------------------------------------------------------------------ English

_HEADS = (
    r"(?:Hospitals?|Medical\s+Cent(?:er|re)|Health\s+(?:Sciences\s+)?Cent(?:er|re)|Cancer\s+(?:Cent(?:er|re)|Institute)"
    r"|Heart\s+Institute|Eye\s+Institute|Surg(?:ery|ical)\s+Cent(?:er|re)|Care\s+Cent(?:er|re)|Dialysis\s+Cent(?:er|re)"
    r"|Rehabilitation\s+(?:Cent(?:er|re)|Hospital|Institute)|Rehab\s+Cent(?:er|re)|Treatment\s+Cent(?:er|re)"
    r"|Clinics?|Infirmary|Hospice|Sanatorium|Nursing\s+(?:Home|Facility|Cent(?:er|re))|Care\s+Home|Retirement\s+"
    r"(?:Home|Community|Village)|Senior\s+Living|Assisted\s+Living|Skilled\s+Nursing(?:\s+Facility)?|Health\s+System"
    r"|Medical\s+Group|Healthcare|Health\s+Care|Urgent\s+Care)"
)
_WORD = r"(?:St\.|Mt\.|[A-Z][A-Za-z]*(?:['’]s)?(?:-[A-Z][A-Za-z]*)*)"
_JOIN = r"(?:\s+(?:and|&|of|the|de|la|del|los|las|du)\s+|\s+)"
_NAME = rf"{_WORD}(?:{_JOIN}{_WORD}){{0,5}}"
# after the facility word a place or purpose that starts like a name ("Hospital for Special Surgery", "Clinic in
# Rochester"), not an abbreviation ("Hospital for ECMO")
_FACILITY_EN = re.compile(
    rf"(?<![A-Za-z])(?:({_NAME})\s+)?({_HEADS})(?![A-Za-z])(?:\s+(?:of|for|at|in)\s+(?:the\s+)?((?=[A-Z][a-z]){_NAME}))?"
)
_HEAD_PRESENT = re.compile(_HEADS)
# words that describe a facility without naming it; a name needs a word outside this set
_GENERIC = frozenset("""
the a an our this that their his her its outside other same nearest local another any every each new old main
general community regional memorial university medical county state city district veterans va public private
teaching psychiatric mental behavioral health children's childrens women's womens pediatric rehabilitation rehab
cardiology oncology cancer surgical surgery pain diabetes eye dental family primary urgent walk-in outpatient inpatient
free sleep wound heart orthopedic orthopaedic dialysis fertility neurology neurological geriatric hospice nursing
emergency er ed icu day care senior assisted skilled retirement living home homes center centre institute clinic
clinics hospital hospitals infirmary sanatorium group system healthcare st. mt. saint mount and & of de la del los las du
transferred admitted discharged seen sent referred followed presented returned arrived went taken brought from to at in
by with for on was is had has he she they we patient pt anticoagulation coumadin lipid hypertension hiv ob gyn ob/gyn
ent gi allergy asthma spine stroke trauma vascular transplant kidney renal liver lung breast prenatal well-child
infusion imaging radiology lab laboratory specialty specialist teaching-hospital acute chronic long-term short-term
""".split())


def _named(*parts: str | None) -> bool:
    words = [w.lower() for p in parts if p for w in re.findall(r"[A-Za-z][A-Za-z'’./&-]*", p)]
    return any(w.replace("’", "'") not in _GENERIC for w in words)


def _lead_trimmed(text: str, start: int, name: str) -> int:
    """Characters to drop from the front of the name: a capitalised opener that is no name word ("The", "At",
    "Transferred", "Discussed hospice" at the start of a sentence)."""
    skip = 0
    for m in re.finditer(r"\S+\s*", name):
        word = m.group().strip().lower()
        sentence_start = start + skip == 0 or re.search(r"(?:[.!?:;\n]|^)\s*$", text[max(0, start + skip - 3):start + skip])
        if word in _OPENERS or (sentence_start and (word in _stop_words() or word.endswith(("ed", "ing")))):
            skip = m.end()
            continue
        break
    return skip


_OPENERS = frozenset("the a an at to from in our this transferred admitted discharged seen sent referred followed "
                     "presented returned arrived went taken brought outside nearest".split())


def _stop_words() -> frozenset[str]:
    from .nlp import stop_words

    return stop_words("en")


def english_facilities(text: str) -> list[tuple[int, int]]:
    """Spans of named English care facilities."""
    spans = []
    if not _HEAD_PRESENT.search(text):  # the full pattern tries every capitalised word: skip notes without a head
        return spans
    for m in _FACILITY_EN.finditer(text):
        name, after = m.group(1), m.group(3)
        start = m.start()
        if name:
            start = m.start(1) + _lead_trimmed(text, m.start(1), name)
            name = text[start:m.start(2)].strip() or None
        if not _named(name, after):
            continue
        end = m.end() if after and _named(after) else m.end(2)
        spans.append((start, end))
    return spans


# ------------------------------------------------------------------------------------------------ Chinese

_ZH_HEADS = re.compile(
    r"(?:社区卫生服务中心|卫生服务中心|妇幼保健院|妇幼保健医院|中西医结合医院|中医医院|中医院|人民医院|中心医院|附属医院|专科医院|康复医院"
    r"|医院|卫生院|保健院|医学中心|诊所|卫生室|疗养院|养老院|敬老院|护理院|安宁疗护中心|醫院|診所)"
)
# characters that end the words before a facility name: verbs, prepositions, particles (转至协和医院: 至)
_ZH_BOUNDARY = frozenset("和完来比不如般后少得着让带自家在于到去往至赴入的了从由经进送转被把向给与及或是为个家些所该本我你他她它其此各某这那哪们也都就还要想能可会让请在、，。；：！？（）()\"“”‘’ \t\n")
# descriptions that are not names (当地医院, 三甲医院, 精神病医院); a name needs something left after removing them
_ZH_GENERIC = tuple(sorted("""
当地 本地 外地 外院 本院 我院 上级 下级 附近 就近 周边 大 小 好 正规 专科 综合 综合性 三甲 二甲 三级 二级 一级 甲等 乙等 公立 私立 民营
基层 县级 市级 省级 区级 乡镇 乡 镇 村 县 市 省 区 其他 其它 多家 一家 这家 那家 各级 定点 指定 普通 知名 大型 小型 专业 相关 社区 私人
个体 中医 西医 中西医 中西医结合 精神病 精神 肿瘤 儿童 妇产 妇幼 口腔 眼科 骨科 皮肤病 传染病 胸科 结核病 康复 整形 美容 男科
不孕不育 军队 部队 人民 中心 附属 大学 医科大学 医学院 什么 哪个 哪些 哪里 哪 一些 有些 很多 许多 几家 两家 各大 大医院 小医院 正规的
好的 最好的 动物 宠物 兽医 牙科 中 西 新 老 原 首诊 接诊 门诊 急诊 住院 转诊 就诊 看病 治疗 检查 手术
""".split(), key=len, reverse=True))
_ZH_MAX_NAME = 16


# words that hold a boundary character: 自贡市第一人民医院 is not 转自 + 贡市, 北京协和医院 not 协 + 和
_ZH_PLACES_AT_BOUNDARY = ("自贡", "来宾", "于都", "从化", "从江", "经开", "向阳", "给水")
_ZH_WORDS_ENDING_AT_BOUNDARY = ("协和", "仁和", "同和", "永和", "太和", "平和", "中和", "人和", "祥和", "和平")


def _zh_name_start(text: str, head_start: int) -> int:
    """Where the name in front of a facility word begins: walk left over Han characters, digits and letters until a
    boundary character or _ZH_MAX_NAME characters."""
    i = head_start
    while i > 0 and head_start - i < _ZH_MAX_NAME:
        ch = text[i - 1]
        if ch in _ZH_BOUNDARY and not text.startswith(_ZH_PLACES_AT_BOUNDARY, i - 1) and not (
                i >= 2 and text.startswith(_ZH_WORDS_ENDING_AT_BOUNDARY, i - 2)):
            break
        if not (ch.isalnum() or "\u4e00" <= ch <= "\u9fff"):
            break
        i -= 1
    return i


# a name holding these describes what the hospital treats or how good it is ("上海治疗胃癌医院", "最好的皮肤科医院"): in
# questions such phrases are descriptions, and masking them would hide the clinical words
_ZH_DESCRIPTIVE = re.compile(
    r"治|诊|看|查|选|找|问|有|里|视|最|好|佳|正规|专业|权威|推荐|著名|知名|排名|收费|价格|网上|医保|哪|什么|怎么|如何|可以|能"
    r"|癌|病|炎|症|瘤|痘|癣|疮|疹|痔|瘫|痫|风|毒|结石|失眠|人流|不孕|痛|疼|伤|科|产|性|男|女|孕|瘦|美|整形|戒|康复|体检"
    r"|血|痰|酸|喘|胃|肺|肝|肾|皮肤|骨|眼|耳|鼻|咽|喉|牙|脑|药|术|量|周|发现|常规|不同|比如|一般|植发|宝宝|孩子|小孩|儿子|女儿|老人|妈妈|爸爸|老公|老婆|我们|自己"
)


def _zh_named(name: str) -> bool:
    """Whether anything but generic descriptions is left of the name (当地, 三甲, 县 … removed from the front), and the
    name describes no treatment or quality."""
    if _ZH_DESCRIPTIVE.search(name) or name.endswith("上"):  # 上医院: "go to hospital" (上海医院 ends in 海)
        return False
    rest = name
    changed = True
    while rest and changed:
        changed = False
        for word in _ZH_GENERIC:
            if rest.startswith(word):
                rest = rest[len(word):]
                changed = True
                break
    return len(rest) >= 2 or (len(rest) == 1 and len(name) >= 3) or any(c.isdigit() for c in name)


def chinese_facilities(text: str) -> list[tuple[int, int]]:
    """Spans of named Chinese care facilities: the name in front of 医院, 卫生院, 诊所 … and the facility word."""
    spans = []
    for m in _ZH_HEADS.finditer(text):
        start = _zh_name_start(text, m.start())
        name = text[start:m.start()]
        if len(name) >= 2 and _zh_named(name):
            spans.append((start, m.end()))
    return spans


class FacilityRecognizer(EntityRecognizer):
    """FACILITY spans (English and Chinese), as a Presidio recognizer."""

    def __init__(self, language: str) -> None:
        super().__init__(supported_entities=["FACILITY"], supported_language=language, name=f"facilities_{language}")

    def load(self) -> None:
        """Nothing to load: the patterns are compiled at import."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        if entities and "FACILITY" not in entities:
            return []
        meta = {RecognizerResult.RECOGNIZER_NAME_KEY: self.name, RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id}
        spans = english_facilities(text) if re.search("[A-Z]", text) else []
        if re.search("[\u4e00-\u9fff]", text):
            spans += chinese_facilities(text)
        return [RecognizerResult("FACILITY", s, e, 0.85, recognition_metadata=dict(meta)) for s, e in spans]
