"""server.deid.facilities: named hospitals, clinics, nursing homes and senior residences, English and Chinese, and the
generic facility words that stay."""
from __future__ import annotations

import pytest

from server.deid import deidentify, find


def kinds(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start:f.end]) for f in find(text)]


@pytest.mark.parametrize("text, facility", [
    ("Transferred from Massachusetts General Hospital for ECMO.", "Massachusetts General Hospital"),
    ("Admitted to St. Mary's Medical Center on the ward.", "St. Mary's Medical Center"),
    ("Second opinion at Mayo Clinic.", "Mayo Clinic"),
    ("Moved to Sunrise Senior Living last year.", "Sunrise Senior Living"),
    ("Discharged to Brookdale Senior Living.", "Brookdale Senior Living"),
    ("Biopsy read at the Hospital of the University of Pennsylvania.", "Hospital of the University of Pennsylvania"),
    ("Followed at Brigham and Women's Hospital since birth.", "Brigham and Women's Hospital"),
    ("Resides at Maple Grove Nursing Home.", "Maple Grove Nursing Home"),
    ("Hospice care through Vitas Hospice.", "Vitas Hospice"),
    ("Contacted Cleveland Clinic for records.", "Cleveland Clinic"),
    ("患者转自北京协和医院。", "北京协和医院"),
    ("曾在复旦大学附属中山医院手术。", "复旦大学附属中山医院"),
    ("于市第一人民医院就诊", "市第一人民医院"),
    ("在自贡市第一人民医院检查", "自贡市第一人民医院"),
    ("送至城关镇卫生院", "城关镇卫生院"),
    ("在海淀区妇幼保健院分娩", "海淀区妇幼保健院"),
    ("到张氏诊所打针", "张氏诊所"),
    ("住在阳光养老院", "阳光养老院"),
    ("去301医院复查", "301医院"),
])
def test_named_facilities_are_masked(text, facility):
    assert ("FACILITY", facility) in kinds(text)
    assert facility not in deidentify(text)[0] and "[FACILITY]" in deidentify(text)[0]


@pytest.mark.parametrize("text", [
    "He was admitted to the hospital for observation.",
    "Hospital course was uncomplicated.",
    "Seen in General Hospital clinic.",  # generic words only
    "Follow up in Cardiology Clinic in two weeks.",
    "Transferred to University Hospital.",
    "Hospital Anxiety and Depression Scale score 12.",
    "Discussed hospice with the family.",
    "Patient lives in a senior living community.",
    "VA Medical Center records requested.",
    "患者住院治疗，已出院。",
    "建议去医院检查。",
    "医院",
    "在当地医院就诊，后转至上级医院。",
    "请到正规医院治疗",
    "三甲医院和专科医院都可以",
    "附近的社区卫生服务中心",
    "哪家医院治疗胃癌比较好？",
    "上海治疗皮肤病最好的医院是哪家",
    "县医院和乡卫生院",
    "入院后第3天",
])
def test_generic_facility_words_stay(text):
    assert [k for k, _ in kinds(text) if k == "FACILITY"] == []


def test_a_facility_is_not_a_name():
    """The tagger used to take "Senior Living" for a person: now the residence is a facility, the words no name."""
    found = kinds("Lives at Sunrise Senior Living with her daughter.")
    assert found == [("FACILITY", "Sunrise Senior Living")]
