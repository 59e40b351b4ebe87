"""Person names in English and Chinese clinical text: context rules plus name lists, as one Presidio recognizer.

English: a title (Mr., Dr. …), a label (Patient:, Name:, signed by …), a degree after the name (", MD"), a relative
("his wife Ann"), a name opening a sentence before "was admitted", "reports" …, or a first name from the list followed
by a capitalised word. Chinese: a surname from the closed class of common surnames after a context word (患者, 姓名,
家属, 医生 …) or before an honorific (先生, 医生 …), with a given name of one or two characters, and nicknames 小 / 老 / 阿
+ a surname before a verb, particle or punctuation (小刘说, 老王来了). Every name found is
then masked wherever it recurs in the same document, its surname and first name alone included, so "Mr. Smith" in
the third paragraph goes too. Names in sentences no rule covers come from a learned tagger (tagger.py, trained by
bench/train_names.py from annotated corpora): lowercase chat names ("ask mike"), names in no list, names without a
Chinese context word. Clinical words are guarded: eponyms ("Addison disease") and instruments named after people
("Harvey-Bradshaw index"), section headers, and surname characters that start common medical words (高血压, 白细胞, 黄疸);
the tagger's spans also skip places ("Brookdale Senior Living") and cars ("Honda Civic"). Its near misses are reported
as REVIEW spans (review.py).
"""
from __future__ import annotations

import functools
import re
from importlib import resources

from presidio_analyzer import EntityRecognizer, RecognizerResult

from .review import REVIEW_ENTITY, review_meta
from .tagger import LATIN

# everyday simplified forms of listed surnames that the list spells the other way (萧/肖, 傅/付, 阎/闫)
SURNAME_VARIANTS = ("肖", "付", "闫")
COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "夏侯", "令狐", "端木",
                     "长孙", "宇文", "司徒", "南宫", "西门", "独孤", "申屠", "澹台", "呼延", "闻人", "轩辕")


def _data_lines(name: str) -> list[str]:
    text = resources.files("server.deid").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@functools.lru_cache(maxsize=None)
def name_list(name: str) -> tuple[str, ...]:
    """A bundled list: en_first_names, en_last_names, zh_surnames, zh_given_chars (see the files' licence headers)."""
    return tuple(_data_lines(f"{name}.txt"))


# ------------------------------------------------------------------------------------------------ English

_CAP = r"(?:[A-Z]['’])?[A-Z][a-z]+(?:[A-Z][a-z]+)?(?:-[A-Z][a-z]+)?"
_NAME = rf"{_CAP}(?:\s+(?:[A-Z]\.|{_CAP})){{0,2}}"
_TITLE = re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Doctor)\.?\s+((?:[A-Z]\.\s+)?{_NAME})")
_LABEL = re.compile(
    r"(?:\b(?i:patient(?:'s)?\s+name|full\s+name|name|patient|pt|attending(?:\s+physician)?|physician|provider|surgeon"
    r"|pcp|referring(?:\s+physician)?|(?:electronically\s+)?signed\s+by|dictated\s+by|transcribed\s+by|seen\s+by"
    r"|examined\s+by|reviewed\s+by|discussed\s+with|emergency\s+contact|next\s+of\s+kin|nok|contact|cc|guardian))"
    rf"\b\s*[:\-]?\s*((?:{_CAP},\s+)?{_NAME})"
)
_DEGREE = re.compile(rf"\b({_CAP}(?:\s+(?:[A-Z]\.|{_CAP})){{1,2}}),?\s+(?:MD|M\.D\.|DO|D\.O\.|RN|NP|PA-C|PA|PhD|FNP|MBBS)\b")
_RELATIVE = re.compile(
    r"\b(?i:wife|husband|son|daughter|mother|father|brother|sister|partner|spouse|friend|caregiver|niece|nephew|aunt"
    rf"|uncle|grandson|granddaughter|neighbor|neighbour)\s*,?\s+(?:named\s+)?({_NAME})"
)
_SUBJECT = re.compile(
    rf"(?:^|(?<=[.!?;]\s)|(?<=\n))({_CAP}\s+(?:[A-Z]\.\s+)?{_CAP})\s+(?:was\s+(?:admitted|seen|transferred|discharged|evaluated"
    r"|brought|referred|examined)|is\s+an?\s+\d|presented|presents|reports|denies|underwent|tolerated|complains|agrees"
    r"|declined|returned|returns|states)\b",
    re.MULTILINE,
)
# a lone capitalised word opening a sentence before a verb of a patient's report ("Josiah reports less pain")
_LONE_SUBJECT = re.compile(
    rf"(?:^|(?<=[.!?;]\s)|(?<=\n))({_CAP})\s+(?:reports|denies|complains|tolerated|agrees|declined|states|walked|ambulated"
    r"|slept|ate|was\s+(?:admitted|seen|discharged|transferred))\b",
    re.MULTILINE,
)
_BIGRAM = re.compile(rf"\b({_CAP})\s+((?:[A-Z]\.\s+)?{_CAP})")

# capitalised words that follow the contexts above and are not names (section headers, clinical words, pronouns)
_NOT_NAMES = frozenset("""
The This That These Those He She His Her They Their It Its We Our You Your I A An And Or But If On In At Of For With To
By From As No Not None Yes Patient Patients Pt History Denies Reports States Presents Presented Presenting Admitted
Discharged Admission Discharge Medical Record Records Center Hospital Clinic Department Emergency Room Family Social
Past Plan Assessment Diagnosis Diagnoses Exam Examination Physical Review Systems Allergies Allergy Medications
Medication Meds Normal Left Right Chief Complaint Disease Syndrome Cancer Tumor Type Stage Grade Information
Education Instructions Care Team Unit Service Was Is Has Had Will Would Should May Might Can Could Did Does Do Be
Been Being Name Date Age Sex Male Female Phone Email Address Number Signed Note Notes Follow Followup Return Status
Summary Course Findings Impression Procedure Procedures Labs Lab Results Vitals Vital Signs Sign Test Tests Score
Scale Criteria Class Classification Palsy Lymphoma Sarcoma Disorder Deficiency Phenomenon Reflex Maneuver Ulcer
Fracture Nodes Node Cell Cells Gene Protein Virus Therapy Treatment Regimen Protocol Study Trial Group Index
January February March April May June July August September October November December Monday Tuesday Wednesday
Feb Apr Aug Sep Sept Oct Nov Dec Surgery
Thursday Friday Saturday Sunday Street Avenue Road Lane Drive Boulevard MD DO RN NP PhD Insurance Unknown Other
Senior Living Assisted Hospice Infirmary Healthcare Rehabilitation Rehab
Mother Father Wife Husband Son Daughter Brother Sister Partner Spouse Friend Nurse Doctor Physician Provider
Dr Mr Mrs Ms Miss Mx Prof Pt Mrn Nursing Staff Team Pharmacy Radiology Cardiology Therapy Wound Skin Appetite
Mood Breathing Sleep Pain Bowel Bladder Diet Activity Gait Speech Vision Hearing Memory Cough Fever Nausea
Subsequent Subsequently Further Previous Previously Initial Initially Recent Recently Overall Finally Later
""".split())
# words after a name-looking pair that make it an eponym, a term or a population ("Addison disease", "Grace Period")
_TERM_FOLLOWERS = frozenset(
    "disease syndrome sign test score scale criteria classification palsy lymphoma sarcoma disorder deficiency "
    "phenomenon reflex maneuver ulcer fracture nodes node cell cells procedure operation tumor tumour dysplasia "
    "dystrophy anomaly ataxia myopathy neuropathy carcinoma anemia anaemia type variant gene protein "
    # instruments named after people ("Harvey-Bradshaw index", "Barthel Index", "Wells score", "Ranson criteria")
    "index indices scores scales class questionnaire inventory equation formula staging grading rule rules "
    # populations are not persons ("Ashkenazi Jewish population", "of Finnish descent")
    "population populations jews jewish descent ancestry origin heritage kindred kindreds cohort cohorts community "
    "communities".split()
)


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from .nlp import stop_words

    return stop_words("en")


@functools.lru_cache(maxsize=1)
def _en_first_names() -> frozenset[str]:
    return frozenset(name_list("en_first_names")) - _NOT_NAMES


@functools.lru_cache(maxsize=1)
def _en_last_names() -> frozenset[str]:
    return frozenset(name_list("en_last_names"))


# words of _NOT_NAMES that are also given names or name particles: the tagger, which saw them in context, keeps them
# inside a name of two words or more ("Will Hope", "Nguyen Van An", "Grace Lee")
_NAME_TOO = frozenset("Will May An Van Grace Hope Rose June April Mark Bill Sign Sue Pat Ray Art Dean Joy Faith "
                      "Sky Summer Autumn".split())


def _clean_en_name(name: str, keep: frozenset = frozenset()) -> str:
    """The name without trailing words that are not names ("Smith Denies" → "Smith"); words in `keep` stay."""
    words = name.split()
    drop = _NOT_NAMES - keep if len(words) > 1 else _NOT_NAMES
    while words and words[-1].strip(",") in drop:
        words.pop()
    while words and words[0].strip(",") in drop:
        words.pop(0)
    return " ".join(words).rstrip(",")


def _followed_by_term(text: str, end: int, capitalised_between: int = 0) -> bool:
    """Whether a term word follows the name, after up to `capitalised_between` capitalised words that are in no name
    list ("Charlson Comorbidity Index", "Glasgow Coma Scale")."""
    m = re.match(r"['’]?s?((?:\s+[A-Z][a-z]+){0,%d})\s+([A-Za-z]+)" % capitalised_between, text[end:end + 60])
    if not m or m.group(2).lower() not in _TERM_FOLLOWERS:
        return False
    between = m.group(1).split()
    return not between or not any(w in _en_first_names() or w in _en_last_names() for w in between)


# words the tagger may join to a capitalised name that make the whole a place, not a person ("Brookdale Senior Living")
_PLACE_WORDS = frozenset("hospital hospitals clinic clinics center centre medical living senior assisted hospice "
                         "infirmary healthcare rehabilitation rehab nursing institute university college".split())
# a make followed by a model is a car, not a first name and surname ("Honda Civic", "Ford F-150")
_CAR_MAKES = frozenset("""Acura Audi BMW Buick Cadillac Chevrolet Chevy Chrysler Dodge Fiat Ford GMC Honda Hyundai Infiniti
Jaguar Jeep Kia Lexus Lincoln Mazda Mercedes Mercedes-Benz Mitsubishi Nissan Porsche Ram Subaru Tesla Toyota Volkswagen
VW Volvo Suzuki Isuzu Pontiac Saturn Oldsmobile Plymouth Mercury Hummer Harley-Davidson Yamaha Kawasaki Ducati""".split())
_CAR_MODELS = frozenset("""Civic Accord CR-V HR-V Pilot Odyssey Fit Ridgeline Camry Corolla Prius RAV4 Highlander Tacoma
Tundra Sienna 4Runner Avalon Yaris Altima Sentra Maxima Rogue Pathfinder Versa Frontier Titan Murano Outback Forester
Impreza Legacy Crosstrek Ascent Focus Fusion Escape Explorer Mustang Ranger Expedition Edge Taurus Bronco Malibu Silverado
Impala Cruze Equinox Tahoe Suburban Traverse Colorado Camaro Corvette Elantra Sonata Tucson Accent Kona Jetta Golf Passat
Beetle Tiguan Atlas Wrangler Cherokee Compass Renegade Gladiator Charger Challenger Durango Caravan Journey Optima Sorento
Soul Sportage Forte Telluride Model Miata Outlander Lancer Mirage Sierra Yukon Acadia Terrain Enclave LaCrosse Escalade
Town Grand Pacifica Voyager""".split())
_CAR_CODE = re.compile(r"[A-Z]{1,3}-?\d{1,3}[a-z]?|\d{1,3}[A-Za-z]{0,2}")
_CAR_OWNER = frozenset("a an his her their my our the drove drives driving drive car vehicle truck".split())


def _is_vehicle(text: str, start: int, end: int) -> bool:
    """A make in the span followed by a model ("Honda Civic", "Ford F-150"), or a lone make after "a", "his", "drove" …"""
    words = [(m.group(), m.end()) for m in re.finditer(r"[A-Za-z0-9][\w-]*", text[start:end])]
    for i, (word, word_end) in enumerate(words):
        if word not in _CAR_MAKES:
            continue
        # the word after the make in the text, not in the span: the tagger may have cut "Ford F-150" at "F"
        nxt = (re.match(r"\s+([\w-]+)", text[start + word_end:]) or [None, ""])[1]
        if nxt in _CAR_MODELS or _CAR_CODE.fullmatch(nxt or ""):
            return True
        before = re.findall(r"[A-Za-z]+", text[max(0, start - 20):start])
        if len(words) == 1 and before and before[-1].lower() in _CAR_OWNER:
            return True
    return False


_LOWER_THEN_TERM = re.compile(r"\s+[a-z]+\s+([A-Za-z]+)")
# a place that issues identity documents, named right before one ("Macau ID", "Ontario health card", "Texas plate"), is
# the document's issuer, not a person; only these places, so "John Smith ID 42" stays a name
_ISSUERS = frozenset("""Macau Macao Hong Kong Taiwan China Canada Mexico UK EU US USA Ontario Quebec Alberta Manitoba Texas
California Florida Ohio Georgia Virginia Washington Oregon Nevada Arizona Utah Colorado Idaho Montana Wyoming Alaska Hawaii
Kansas Nebraska Iowa Missouri Illinois Indiana Michigan Wisconsin Minnesota Kentucky Tennessee Alabama Mississippi Louisiana
Arkansas Oklahoma Carolina Dakota New Jersey York Hampshire Mexico Maine Vermont Massachusetts Connecticut Rhode Island
Delaware Maryland Pennsylvania""".split())
_DOCUMENT_AFTER = re.compile(r"\s*(?:ID|I\.D\.|id|passport|licen[cs]e|plate|health\s+card|resident|identity|driver)\b", re.I)


def _en_guarded(text: str, start: int, end: int) -> tuple[int, int] | None:
    """A tagger span after the guards, trimmed of words that are not names, or None: no eponym or instrument
    ("Parkinson disease", "Harvey-Bradshaw Index"), no place ("Brookdale Senior Living"), no car ("Honda Civic")."""
    name = text[start:end]
    cleaned = _clean_en_name(name, _NAME_TOO)
    if not cleaned or _followed_by_term(text, end):
        return None
    dropped = [w.strip(",").lower() for w in name.replace(cleaned, " ", 1).split()]
    if any(w in _TERM_FOLLOWERS or w in _PLACE_WORDS for w in dropped):
        return None
    s = start + name.find(cleaned)
    e = s + len(cleaned)
    if _followed_by_term(text, e, capitalised_between=1) or _is_vehicle(text, s, e):
        return None
    if all(w in _ISSUERS for w in cleaned.split()) and _DOCUMENT_AFTER.match(text, e):
        return None
    # one lowercase word between the name and a term ("Duchenne muscular dystrophy", "Hodgkin malignant lymphoma");
    # not after a possessive, where the name is a person's ("Smith's heart disease")
    m = _LOWER_THEN_TERM.match(text, e)
    if m and m.group(1).lower() in _TERM_FOLLOWERS:
        return None
    return s, e


def english_names(text: str) -> list[tuple[int, int]]:
    """Character spans of English person names."""
    spans: list[tuple[int, int]] = []

    def add(start: int, name: str) -> None:
        cleaned = _clean_en_name(name, _NAME_TOO)
        if cleaned and not _followed_by_term(text, start + len(name)):
            offset = name.find(cleaned)
            spans.append((start + offset, start + offset + len(cleaned)))

    for pattern in (_TITLE, _LABEL, _DEGREE, _RELATIVE, _SUBJECT):
        for m in pattern.finditer(text):
            add(m.start(1), m.group(1))
    for m in _LONE_SUBJECT.finditer(text):
        if m.group(1).lower() not in _stop_words():
            add(m.start(1), m.group(1))
    first_names = _en_first_names()
    for m in _BIGRAM.finditer(text):
        if m.group(1) in first_names and m.group(2).split()[-1] not in _NOT_NAMES:
            add(m.start(1), m.group(0))
    return spans


# ------------------------------------------------------------------------------------------------ Chinese

_ZH_CONTEXT = (
    "患者姓名|病人姓名|姓名|患者|病人|患儿|产妇|孕妇|家属|联系人|监护人|陪同人|委托人|签名|签字|医生|医师|主治医师|主任医师|住院医师"
    "|经治医师|上级医师|主管医师|责任护士|护士|记录人|报告人|审核人|之子|之女|之妻|之夫|其子|其女|其妻|其夫|丈夫|妻子|儿子|女儿|父亲|母亲"
)
_ZH_HONORIFICS = "先生|女士|小姐|老师|医生|大夫|护士|主任|教授|同志|阿姨|师傅|老先生|老太太|院长"
_HAN = "\u4e00-\u9fff"
_ZH_AFTER_CONTEXT = re.compile(rf"(?:{_ZH_CONTEXT})\s*[：:]?\s*(?=[{_HAN}]{{2}})")
_ZH_BEFORE_HONORIFIC = re.compile(rf"(?<![{_HAN}])([{_HAN}]{{1,3}}?)(?:{_ZH_HONORIFICS})")
# characters that end a given name: they start the next word in the sentence (因胸痛, 男, 于今日, 诉 …)
_ZH_STOP = frozenset(
    "因于在男女今昨前后诉自主以等入出来去的了是有和与及被经行现已无术患病性岁年月日为对将时曾再又也均都就从向到由把给说称述感觉伴突反咳腹胸头发"
    "既否近间次个之其该此本每各约共术示见查测服用予给予治疗体温脉呼吸血压心肺肝肾脑眼耳鼻口手足皮骨关节二三四五六七八九十半多少余"
    "，。、；：！？（）"
)
# a surname character followed by these makes a clinical word, not a name (高血压, 白细胞, 黄疸, 常规, 史)
_ZH_NOT_NAME_STARTS = frozenset(
    "高血 高热 高烧 高脂 高糖 高钾 高钠 高度 高危 高峰 高龄 高频 高压 白细 白带 白斑 白血 白内 白癜 白苔 黄疸 黄染 黄痰 黄体 黄斑 常规 常见 "
    "石膏 方案 方法 甘油 甘露 乐观 毛发 毛囊 毛细 和缓 和蔼 齐全 明显 明确 明天 明日 单纯 单侧 单位 单次 双侧 双肺 雷诺 包块 包括 包扎 戴帽 "
    "孙辈 钟点 时间 房颤 房室 房性 管理 管型 卫生 江南 金属 文献 左侧 左心 右侧 全身 全血 应用 应该 应当 向上 向下 林可霉 余下 余量 关于 关节 "
    "易感 易于 司机 丁类 秦艽 连续 连用 田径 谷丙 谷草 车祸 夏季 冬季 胡言 何时 何种 苏醒 程度 叶酸 万古霉 严重 温度 温热 路径 周围 周期 段落 "
    "元素 和谐 平均 平时 平稳 平卧 井喷 党参 洪脉 游离 康复 宁可 水肿 付费 尚可 尚未 庞大 强化 强直 罗红霉 谭氏 柴胡 牛黄 于是 陶土 晏起 "
    "来院 来诊 来我 查体 查血 查出 查看 查询 平素 平时 平常 平均 时有 时常 时而 同时 但是 但无 但仍 但未 全身 全部 由于 经过 安静 安排 相关 相应 "
    "花费 成功 方可 方能 方便 尚可 满意 门诊 谈话 计划 迟发 易怒 强调 支持 文化 海鲜 申请 白天 盛行 简单 索取 解释 豆类 路上 边缘 那么 都是 "
    "闭经 阳性 阴性 阿司匹 隆起 项目 麻木 官方 容易 富有 封闭 常常 干燥 干咳 幸好 智力 曲线 公斤 初步 初次 初诊 利尿 劳累 华法林 南方 古代 史上 "
    "谢谢 感谢 多谢 关注 关心 关系 麻烦 皮损 皮炎 皮质 皮脂 严重 严格 严密 余额 范畴 白色 白天 向前 司机 国内 国外 信息 修复 位置 普通 明天 明确 范围 荣誉 练习 米饭 车祸 龙胆 齐全 连续 齐鲁 盖被 盘尼西 皮肤 皮疹 皮下 石头 祖父 祖母 程序 "
    "任何 聂氏 景天 伍用 钱币 汤剂 尹氏 鲁米那 韦格纳 焦虑 成人 成年 成分 才能 原因 原发 支气 宋体 纪录 龙胆 沙丁胺 洪水 寇蒂 商量 芦荟 蔡氏".split()
)


_ZH_FOLLOWER = re.compile(
    r"$|[\s，,、。；;：:（()）0-9]|男|女|因|于|诉|自|今|昨|入|在|以|既|的|等|之|及|和|同|代|陪|电话|手机|身份|联系|签|先生|女士|小姐"
    r"|同志|老人"
)
# surnames that are also everyday function words: after 患者 without a colon they start a phrase, not a name
_ZH_FUNCTION_SURNAMES = frozenset("都和但向同从对给把被让叫由及将经为以当全时应成原来查那门连")
# surname characters that before an honorific are function words ("向医生咨询", "和护士说")
_ZH_NOT_BARE_SURNAMES = frozenset(
    "向和同于从对给把被让叫由及将经为以当班管区修位全时应成原支关单双连门都那查来但信公初利劳华国安官容富封干幸文方普"
    "智曲海满申皮盖盘盛相石祖简米索练花荣解计谈豆边迟闭阳阴阿隆项麻齐常明平易康强宁尚任路南古"
)


@functools.lru_cache(maxsize=1)
def _guard_words() -> dict[str, tuple[str, ...]]:
    by_first: dict[str, list[str]] = {}
    for word in _ZH_NOT_NAME_STARTS:
        by_first.setdefault(word[0], []).append(word)
    return {k: tuple(v) for k, v in by_first.items()}


@functools.lru_cache(maxsize=1)
def _zh_surnames() -> tuple[frozenset[str], frozenset[str]]:
    single = frozenset(s for s in name_list("zh_surnames") if len(s) == 1) | frozenset(SURNAME_VARIANTS)
    compound = frozenset(COMPOUND_SURNAMES) | frozenset(s for s in name_list("zh_surnames") if len(s) == 2)
    return single, compound


def _zh_name_at(candidate: str, allow_surname_only: bool = False, lookahead: str = "") -> str:
    """The name at the start of `candidate` (surname + one or two given characters), or ''."""
    if not candidate:
        return ""
    single, compound = _zh_surnames()
    if candidate[:2] in compound:
        surname = candidate[:2]
    elif candidate[:1] in single:
        surname = candidate[:1]
    else:
        return ""
    if any((candidate + lookahead).startswith(word) for word in _guard_words().get(candidate[0], ())):
        return ""
    given = ""
    for ch in candidate[len(surname):len(surname) + 2]:
        if ch in _ZH_STOP or not "\u4e00" <= ch <= "\u9fff":
            break
        given += ch
    if not given:
        return surname if allow_surname_only and surname not in _ZH_NOT_BARE_SURNAMES else ""
    return surname + given


# nicknames: 小 / 老 / 阿 + a surname ("小刘说", "老王来了"), when the pair is no word and a verb, particle or
# punctuation follows; the prefix must not end a word before it (大小, 衰老)
_ZH_NICK = re.compile(r"(?<![大最缩减变较很太从矮微细弱短年古衰养防偏过稍略更渺瘦窄狭])([小老阿])(.)")
_ZH_NICK_FOLLOWER = re.compile(
    r"$|[\s，,、。；;：:！!？?（()）…“”\"]|说|讲|问|来|去|在|是|的|也|都|和|跟|给|让|把|被|叫|要|会|能|已|刚|今|昨|明天|帮|陪|送|带"
    r"|拿|打电话|告诉|回|到|又|还|就|一|不|没|他|她|呢|吧|啊|呀|了|同|负责|值班|下午|上午|晚上")
# 小 / 老 / 阿 + a surname character that is a word (小时, 小于, 老师, 阿莫西林, 小苏打, 老毛病 …)
_ZH_NICK_NOT = frozenset(
    "小时 小于 小叶 小米 小麦 老师 小花 小康 小关 阿司 小石 小区 小车 小牛 小龙 小刀 小孔 小房 小管 小包 小段 小单 小计 小步 小容 "
    "小柴 小苏 小红 小毛 老毛 老姜 阿莫 阿米 阿奇 阿托 阿昔 阿卡 阿尔 阿德 阿拉 阿胶 阿伯 老干 老公 老区 老马 老牛 老虎 老鼠 老板 老家 "
    "老乡 老婆 老师 老总 老大 小强 小白 小黄 小方 小林 小钱 小宝 小孩 小时 小方 小雨 老成 老实 老练 老伴 阿司匹林 "
    "小兰 小时候 小于等于 老于 老年 老化 老旧 老人 小腹 小肠 小脑 小便 小儿 小型 小心 小组 老百 小童 "
    "小鬼 小姐 小伙 老爷 老汉 老城 小城 小水 小查".split())


def _zh_nicknames(text: str) -> list[tuple[int, int]]:
    single = _zh_surnames()[0]
    out = []
    for m in _ZH_NICK.finditer(text):
        pair = m.group(0)
        if m.group(2) not in single or pair in _ZH_NICK_NOT or m.group(2) in _ZH_NOT_BARE_SURNAMES:
            continue
        if _ZH_NICK_FOLLOWER.match(text, m.end()):
            out.append(m.span())
    return out


def chinese_names(text: str) -> list[tuple[int, int]]:
    """Character spans of Chinese person names."""
    spans = []
    for m in _ZH_AFTER_CONTEXT.finditer(text):
        start = m.end()
        name = _zh_name_at(text[start:start + 6])
        if not name:
            continue
        labelled = any(c in m.group(0) for c in "：:")
        if not labelled and name[0] in _ZH_FUNCTION_SURNAMES:  # 病人都可以, 患者和家属: a word, not a surname
            continue
        # without a label colon ("患者张伟因…") the word after the name must start a new phrase: 患者来院时 is no name
        if labelled or _ZH_FOLLOWER.match(text, start + len(name)):
            spans.append((start, start + len(name)))
    for m in _ZH_BEFORE_HONORIFIC.finditer(text):
        cand = m.group(1)
        # the longest tail of the run before the honorific that is a surname (+ given name)
        lookahead = text[m.end(1):m.end(1) + 4]
        for i in range(len(cand)):
            if cand[i] in _ZH_NOT_BARE_SURNAMES:  # 由王医生: 由 is a word here, not the surname 由
                continue
            if i and any((cand[i - 1:] + lookahead).startswith(w) for w in _guard_words().get(cand[i - 1], ())):
                break  # 谢谢医生, 感谢医生: the character belongs to the word before it
            name = _zh_name_at(cand[i:], allow_surname_only=True, lookahead=lookahead)
            if name == cand[i:]:
                spans.append((m.start(1) + i, m.end(1)))
                break
    return spans + _zh_nicknames(text)


# ------------------------------------------------------------------------------------------------ recognizer


def _recurrences(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Every other place the found names (and an English name's surname) occur in the text."""
    needles = set()
    for start, end in spans:
        name = text[start:end]
        if name.isascii() or len(name) >= 2:  # a bare surname (王医生) recurs inside words: 病史, 严重
            needles.add(name)
        words = [w.strip(",") for w in name.split()]
        if len(words) > 1:  # "Tobias Wren" → later "Mr. Wren", "Tobias reports …"
            surname, first = (words[0], words[1]) if name.split()[0].endswith(",") else (words[-1], words[0])
            needles.update(w for w in (surname, first) if len(w) >= 3 and w not in _NOT_NAMES)
    found = []
    for needle in sorted(needles, key=len, reverse=True):
        if needle.isascii():
            pattern = re.compile(rf"(?<![A-Za-z]){re.escape(needle)}(?![a-z])")
        else:
            pattern = re.compile(re.escape(needle))
        found.extend(m.span() for m in pattern.finditer(text) if not _followed_by_term(text, m.end()))
    return found


def guard_words() -> tuple[str, ...]:
    """Words that start with a surname character and are not names (高血压, 白细胞, 黄疸 …)."""
    return tuple(sorted(_ZH_NOT_NAME_STARTS))


def tagger_lists() -> tuple[frozenset[str], ...]:
    """The lists the name tagger's features use: English first and last names, single and compound Chinese
    surnames, given-name characters, characters that end a given name, English function words (never a lowercase
    candidate)."""
    single, compound = _zh_surnames()
    return (frozenset(name_list("en_first_names")), frozenset(name_list("en_last_names")), single, compound,
            frozenset(name_list("zh_given_chars")), _ZH_STOP, _stop_words())


@functools.lru_cache(maxsize=1)
def name_tagger():
    """The shipped name tagger (server/deid/tagger.py), or None when the package has no model file."""
    from .tagger import NameTagger, load_model_json

    try:
        model = load_model_json()
    except FileNotFoundError:
        return None
    return NameTagger(model, *tagger_lists())


def tagged_names_scored(text: str, latin: bool = True, han: bool = True) -> tuple[list[tuple[int, int]], list[tuple]]:
    """Spans the tagger finds and its near misses (start, end, probability, threshold), both through the same guards
    as the rules: no eponym ("Parkinson disease"), no section word, no place or car, no surname character that starts
    a clinical word (高血压)."""
    tagger = name_tagger()
    if tagger is None:
        return [], []
    spans: list[tuple[int, int]] = []
    near: list[tuple] = []
    if latin:
        found, missed = tagger.english_scored(text)
        spans += [g for g in (_en_guarded(text, s, e) for s, e in found) if g]
        near += [(*g, p, t) for s, e, p, t in missed if (g := _en_guarded(text, s, e))]
    if han:
        guards = _guard_words()
        found, missed = tagger.chinese_scored(text)
        spans += [(s, e) for s, e in found if not any(text.startswith(w, s) for w in guards.get(text[s], ()))]
        near += [(s, e, p, t) for s, e, p, t in missed if not any(text.startswith(w, s) for w in guards.get(text[s], ()))]
    return spans, near


def tagged_names(text: str, latin: bool = True, han: bool = True) -> list[tuple[int, int]]:
    """Spans the tagger finds, through the guards (tagged_names_scored)."""
    return tagged_names_scored(text, latin, han)[0]


def find_names_scored(text: str) -> tuple[list[tuple[int, int]], list[tuple]]:
    """Spans of person names in English or Chinese text, recurrences included (overlaps are resolved later), and the
    tagger's near misses that no name span overlaps (start, end, probability, threshold)."""
    latin, han = _has_latin(text), _has_han(text)
    spans = english_names(text) if latin else []
    if han:
        spans += chinese_names(text)
    tagged, near = tagged_names_scored(text, latin, han)
    spans += tagged
    if not spans:
        return [], near
    spans += _recurrences(text, spans)
    return spans, [n for n in near if not any(s < n[1] and n[0] < e for s, e in spans)]


def find_names(text: str) -> list[tuple[int, int]]:
    """Spans of person names in English or Chinese text, recurrences included (overlaps are resolved later)."""
    return find_names_scored(text)[0]


def _has_han(text: str) -> bool:
    return re.search(f"[{_HAN}]", text) is not None


def _has_latin(text: str) -> bool:
    """Any Latin letter: a chat note in lower case ("ask mike") has names too."""
    return re.search(f"[{LATIN}]", text) is not None


class PersonNameRecognizer(EntityRecognizer):
    """PERSON spans from find_names, as a Presidio recognizer (no NLP model needed); the tagger's near misses as
    REVIEW spans (review.py: not masked, listed for a person)."""

    def __init__(self, language: str) -> None:
        super().__init__(supported_entities=["PERSON", REVIEW_ENTITY], supported_language=language,
                         name=f"person_names_{language}")

    def load(self) -> None:
        """The name lists load on first use."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        if entities and "PERSON" not in entities:
            return []
        meta = {RecognizerResult.RECOGNIZER_NAME_KEY: self.name, RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id}
        spans, near = find_names_scored(text)
        results = [RecognizerResult("PERSON", s, e, 0.8, recognition_metadata=dict(meta)) for s, e in set(spans)]
        results += [RecognizerResult(REVIEW_ENTITY, s, e, 0.5, recognition_metadata={
            **meta, **review_meta("NAME", "name tagger: probability under the threshold", p, t)}) for s, e, p, t in near]
        return results
