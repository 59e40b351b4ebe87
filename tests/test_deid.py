"""server.deid: each recognizer with positive and negative cases, overlap resolution, the offline engine."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import pytest

from server.deid import deidentify, find
from server.deid.rules import cn_id_check_char, cn_resident_id_valid, luhn_valid

DATA = Path(__file__).resolve().parent / "data"


def kinds(text: str) -> list[tuple[str, str]]:
    """(kind, masked text) of every finding."""
    return [(f.kind, text[f.start:f.end]) for f in find(text)]


def valid_cn_id(first17: str = "11010119790101123") -> str:
    return first17 + cn_id_check_char(first17)


# ------------------------------------------------------------------------------------------------ the two examples


def test_english_example_loses_name_dates_ids_and_contacts():
    text = ("Patient John Smith (DOB 03/14/1962, MRN 123456) was admitted with chest pain. Phone 555-123-4567, "
            "email john.smith@example.com")
    masked, counts = deidentify(text)
    assert masked == ("Patient [NAME] (DOB [DATE], MRN [MRN]) was admitted with chest pain. Phone [PHONE], "
                      "email [EMAIL]")
    assert counts == Counter({"NAME": 1, "DATE": 1, "MRN": 1, "PHONE": 1, "EMAIL": 1})


def test_chinese_example_loses_name_id_and_phone_and_keeps_the_clinical_text():
    text = "患者张伟，男，45岁，身份证号110101197901011234，电话13800138000，因胸痛3天入院。"
    # its check character is wrong (a made-up number): 身份证号 in front masks it all the same
    assert not cn_resident_id_valid("110101197901011234")
    masked, counts = deidentify(text)
    assert masked == "患者[NAME]，男，45岁，身份证号[ID]，电话[PHONE]，因胸痛3天入院。"
    assert counts == Counter({"NAME": 1, "ID": 1, "PHONE": 1})


# ------------------------------------------------------------------------------------------------ checksums


def test_resident_id_checksum_and_birth_date():
    good = valid_cn_id()
    assert cn_resident_id_valid(good) and cn_resident_id_valid(good.lower())
    wrong_check = good[:17] + ("0" if good[17] != "0" else "1")
    assert not cn_resident_id_valid(wrong_check)
    bad_date = "11010119790231" + "123"  # 31 February
    assert not cn_resident_id_valid(bad_date + cn_id_check_char(bad_date))
    future = f"110101{dt.date.today().year + 1}0101123"
    assert not cn_resident_id_valid(future + cn_id_check_char(future))
    assert not cn_resident_id_valid("01010119790101123" + cn_id_check_char("01010119790101123"))  # region 0…


def luhn_complete(prefix: str) -> str:
    """The prefix with the check digit that makes it pass Luhn."""
    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


def test_x_check_character():
    first17 = next(f"11010119800101{i:03d}" for i in range(1000) if cn_id_check_char(f"11010119800101{i:03d}") == "X")
    assert kinds(f"编号 {first17}X 已登记") == [("ID", f"{first17}X")]


def test_luhn():
    assert luhn_valid("4539578763621486") and luhn_valid(luhn_complete("621226220100123456"))
    assert not luhn_valid("4539578763621487")


# ------------------------------------------------------------------------------------------------ Chinese recognizers


@pytest.mark.parametrize("text, expected", [
    ("证件 {id} 已核对", [("ID", "{id}")]),
    ("身份证号码：{id}。", [("ID", "{id}")]),
    ("手机13912345678联系", [("PHONE", "13912345678")]),
    ("联系电话：139-1234-5678", [("PHONE", "139-1234-5678")]),
    ("电话 +86 139 1234 5678", [("PHONE", "+86 139 1234 5678")]),
    ("座机010-62345678转", [("PHONE", "010-62345678")]),
    ("银行卡号：{card}，", [("ACCOUNT", "{card}")]),
    ("转入{card}", [("ACCOUNT", "{card}")]),  # a 62 UnionPay number needs no card word
    ("住院号：ZY2023001，", [("MRN", "ZY2023001")]),
    ("病案号 1234567", [("MRN", "1234567")]),
    ("患者93岁，", [("AGE", "93")]),
    ("年龄：101", [("AGE", "101")]),
    ("于2023年3月5日入院", [("DATE", "2023年3月5日")]),
    ("入院日期2023-03-05，", [("DATE", "2023-03-05")]),
    ("住址：北京市朝阳区建国路88号3号楼501室，", [("ADDRESS", "北京市朝阳区建国路88号3号楼501室")]),
    ("家住上海市徐汇区，", [("ADDRESS", "上海市徐汇区")]),
    ("患者王芳于今日就诊", [("NAME", "王芳")]),
    ("姓名：欧阳娜娜 性别：女", [("NAME", "欧阳娜娜")]),
    ("家属李强（儿子）陪同", [("NAME", "李强")]),
    ("由王医生接诊", [("NAME", "王")]),
])
def test_chinese_positives(text, expected):
    fill = {"id": valid_cn_id(), "card": luhn_complete("621226220100123456"), "other": luhn_complete("880012345678901")}
    assert kinds(text.format(**fill)) == [(k, v.format(**fill)) for k, v in expected]


@pytest.mark.parametrize("text", [
    "证件 110101197901011235 已核对",  # checksum wrong and no 身份证 in front
    "编号110101197902301234",  # 30 February
    "阿莫西林500 mg 1380013800，每日3次",  # ten digits after a dose: no mobile number
    "每次0.5 mg/kg，静滴",
    "剂量13800138000mg",  # a number followed by a unit is a quantity
    "血压140/90mmHg，心率88次/分，白细胞12.3×10^9/L",
    "患者45岁，咳嗽3月余",
    "患者来院时查体：体温37.5℃",
    "既往高血压病史10年，白细胞升高，黄疸消退",
    "患者平素体健，否认糖尿病史",
    "向医生咨询用药",
    "主治医生建议复查",
    "谢谢医生的解答",
    "流水号{other}",  # Luhn passes, but no card word, no card prefix
    "银行卡号：{card_bad}",  # a card word, but the check digit is wrong
])
def test_chinese_negatives(text):
    card = luhn_complete("621226220100123456")
    fill = {"other": luhn_complete("880012345678901"), "card_bad": card[:-1] + str((int(card[-1]) + 1) % 10)}
    assert kinds(text.format(**fill)) == []


# ------------------------------------------------------------------------------------------------ English recognizers


@pytest.mark.parametrize("text, expected", [
    ("SSN 536-22-8437.", [("ID", "536-22-8437")]),
    ("Card 4539 5787 6362 1486 on file", [("ACCOUNT", "4539 5787 6362 1486")]),
    ("IBAN GB82 WEST 1234 5698 7654 32", [("ACCOUNT", "GB82 WEST 1234 5698 7654 32")]),
    ("login from 192.168.10.24 today", [("IP", "192.168.10.24")]),
    ("see https://portal.example.com/p/123.", [("URL", "https://portal.example.com/p/123")]),
    ("Call +44 20 7946 0958.", [("PHONE", "+44 20 7946 0958")]),
    ("Call (555) 123-4567 now", [("PHONE", "(555) 123-4567")]),
    ("Medical record number: A1234567", [("MRN", "A1234567")]),
    ("Acct #: 30318886.", [("MRN", "30318886")]),
    ("A 93-year-old woman", [("AGE", "93")]),
    ("Age: 91.", [("AGE", "91")]),
    ("seen on March 3, 2021", [("DATE", "March 3, 2021")]),
    ("seen on March 3 and on Sept. 14th.", [("DATE", "March 3"), ("DATE", "Sept. 14th")]),
    ("lives at 42 Oak Street, Springfield, IL 62704.", [("ADDRESS", "42 Oak Street, Springfield, IL 62704")]),
    ("Seen by Dr. Amara Okafor today", [("NAME", "Amara Okafor")]),
    ("Name: Okafor, Amara", [("NAME", "Okafor, Amara")]),
    ("Electronically signed by Amara Okafor, MD", [("NAME", "Amara Okafor")]),
    ("Discussed with his wife Nneka today", [("NAME", "Nneka")]),
    ("Tobias Wren was admitted on the ward", [("NAME", "Tobias Wren")]),
])
def test_english_positives(text, expected):
    assert kinds(text) == expected


@pytest.mark.parametrize("text", [
    "Metformin 500 mg 1380013800 twice daily",
    "dexamethasone 0.5 mg/kg IV",
    "BP 120/80, HR 88, pain 7/10, HbA1c 7.2%",
    "A 45-year-old man, age 67 at onset",
    "Addison disease and Graves disease were excluded; Wilson disease is rare.",
    "Parkinson disease, Hodgkin lymphoma and Down syndrome",
    "The patient denies chest pain. Patient Education: low-salt diet.",
    "In 1980 the study enrolled 250 patients.",
    "You may 2 doses; March 3.5 mg",
    "Version 1.2.3456 released",
    "Doses ranged 150 200 3000 mg over the trial.",
    "protein tyrosine phosphatase (PTPase) activity",
    "SSN 000-12-3456 is not an assigned number",
])
def test_english_negatives(text):
    assert kinds(text) == []


# ------------------------------------------------------------------------------------------------ documents


def test_a_name_found_once_is_masked_where_it_recurs():
    text = "Patient: Tobias Wren. Plan discussed. Mr. Wren agrees; Wren will return."
    assert [v for k, v in kinds(text) if k == "NAME"] == ["Tobias Wren", "Wren", "Wren"]
    zh = "姓名：范敏 性别：女。医生建议复查，范敏表示同意。"
    assert [v for k, v in kinds(zh) if k == "NAME"] == ["范敏", "范敏"]


def test_a_bare_surname_does_not_spread_into_words():
    masked, _ = deidentify("史医生建议复查。既往病史10年。")
    assert masked == "[NAME]医生建议复查。既往病史10年。"


def test_overlaps_keep_one_mask_and_placeholders_are_stable():
    text = "Write to lee@clinic.org (https://clinic.org/lee), MRN: 55501234, DOB: 12/05/1971."
    masked, counts = deidentify(text)
    assert masked == "Write to [EMAIL] ([URL]), MRN: [MRN], DOB: [DATE]."
    assert deidentify(masked) == (masked, Counter())


def test_real_clinical_fragments_lose_no_clinical_word():
    """Annotated disease / drug / symptom mentions of the in-repo fragments are never masked (≤ 1 % allowed)."""
    touched = total = 0
    for name in ("ncbi_disease/test.jsonl", "zh_cmedqaner/test.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            masks = [(f.start, f.end) for f in find(rec["text"])]
            for span in rec["spans"]:
                if span["label"] == "time":  # dates are identifiers
                    continue
                total += 1
                touched += any(s < span["end"] and span["start"] < e for s, e in masks)
    assert total > 300
    assert touched / total <= 0.01, touched


def test_runs_offline_without_network(monkeypatch):
    """No download at run time: tldextract and spaCy get no chance to reach the network."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert deidentify("mail ann@newdomain-example.org please")[0] == "mail [EMAIL] please"


# ------------------------------------------------------------------------------------------------ partial dates, ages
# in words, European and UK addresses (issue 45: the outside probe's leaks)


@pytest.mark.parametrize("text, expected", [
    ("Follow-up planned for 09/2031.", [("DATE", "09/2031")]),
    ("Colonoscopy due 9/2031", [("DATE", "9/2031")]),
    ("Last seen 4/18 in clinic.", [("DATE", "4/18")]),
    ("Admitted 4/18 - 4/20 for pneumonia", [("DATE", "4/18 - 4/20")]),
    ("Started apixaban on 3/2, stopped since 3/9.", [("DATE", "3/2"), ("DATE", "3/9")]),
    ("Diagnosed in March 2021 with CKD.", [("DATE", "March 2021")]),
    ("Surgery Sept. 2019 at an outside facility", [("DATE", "Sept. 2019")]),
    ("Lab drawn 2021/03, repeat pending", [("DATE", "2021/03")]),
    ("He died at 101 in hospice.", [("AGE", "101")]),
    ("She is ninety-two and lives alone.", [("AGE", "ninety-two")]),
    ("A one hundred and one year old woman", [("AGE", "one hundred and one")]),
    ("aged 95, retired teacher", [("AGE", "95")]),
    ("seen at age 103 for a fall", [("AGE", "103")]),
    ("She turned 94 last week.", [("AGE", "94")]),
    ("A centenarian with CHF", [("AGE", "centenarian")]),
    ("Lives at 27 Rue de la Paix, 75002 Paris.", [("ADDRESS", "27 Rue de la Paix, 75002 Paris")]),
    ("Address: Via Roma 10, 00184 Roma", [("ADDRESS", "Via Roma 10, 00184 Roma")]),
    ("wohnt Hauptstraße 5, 10115 Berlin", [("ADDRESS", "Hauptstraße 5, 10115 Berlin")]),
    ("Calle Mayor 5, 28013 Madrid", [("ADDRESS", "Calle Mayor 5, 28013 Madrid")]),
    ("Home address 10 Downing Street, London SW1A 2AA", [("ADDRESS", "10 Downing Street, London"), ("ADDRESS", "SW1A 2AA")]),
    ("Postcode: M1 1AE", [("ADDRESS", "M1 1AE")]),
])
def test_english_partial_dates_ages_and_addresses(text, expected):
    assert kinds(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("患者九十二岁，因跌倒入院", [("AGE", "九十二岁")]),
    ("一百零一岁老人", [("AGE", "一百零一岁")]),
    ("九十多岁，独居", [("AGE", "九十多岁")]),
    ("九旬老人，咳嗽3天", [("AGE", "九旬")]),
    ("2021年3月复查", [("DATE", "2021年3月")]),
    ("3月份开始服药", [("DATE", "3月份")]),
    ("10月底复查CT", [("DATE", "10月底")]),
])
def test_chinese_ages_in_numerals_and_months(text, expected):
    assert kinds(text) == expected


@pytest.mark.parametrize("text", [
    "Pain 7/10, BP 120/80, strength 4/5 in both legs.",
    "pain on 7/10 scale, 3/4 of the dose",
    "Take 1/2 tablet since 3/4 tabs caused nausea",
    "Metastases in 4/18 lymph nodes.",
    "Dilution 1/2000 for the assay",
    "ninety-two patients were enrolled; one hundred mg daily",
    "HR is 92, RR 18; patient was 95 kg",
    "He is 100% compliant with the regimen.",
    "He died at the age of 67.",
    "During 3 days of monitoring, Monitoring 2 showed nothing.",
    "Brigade 4 and Blockade 2 in the protocol",
    "Place 2 tablets under the tongue via the NG tube.",
    "咳嗽3月余，3月前曾住院",
    "患者89岁，体健",
    "祝您长命百岁",
])
def test_partial_date_age_address_negatives(text):
    assert kinds(text) == []
