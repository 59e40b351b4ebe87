"""server.deid.recognizers_ids: passports, Hong Kong / Macau / Taiwan identity cards, SSNs after their name,
insurance numbers and licence plates, English and Chinese; their check digits; what stays unmasked."""
from __future__ import annotations

import pytest

from server.deid import deidentify, find
from server.deid.rules import hkid_check_char, hkid_valid, tw_id_valid


def kinds(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start:f.end]) for f in find(text)]


# ------------------------------------------------------------------------------------------------ check digits


def test_hkid_check_character():
    assert hkid_check_char("A", "123456") == "3" and hkid_valid("A123456(3)") and hkid_valid("A1234563")
    assert hkid_check_char("G", "123456") == "A" and hkid_valid("G123456(A)")
    assert not hkid_valid("A123456(7)") and not hkid_valid("A1234567")
    two = "AB987654" + hkid_check_char("AB", "987654")
    assert hkid_valid(two)


def test_taiwan_id_checksum():
    assert tw_id_valid("A123456789") and not tw_id_valid("A123456788") and not tw_id_valid("A323456789")


# ------------------------------------------------------------------------------------------------ positives


@pytest.mark.parametrize("text, expected", [
    # the strings the outside probe found unmasked
    ("Passport E12345678 on file.", [("PASSPORT", "E12345678")]),
    ("HKID A123456(7), seen today", [("ID", "A123456(7)")]),  # wrong check digit: bracketed, masked all the same
    ("车牌京A12345，停在门口", [("PLATE", "京A12345")]),
    ("SSN 078-05-1120 on file.", [("ID", "078-05-1120")]),
    ("Patient SSN 123-45-6789.", [("ID", "123-45-6789")]),
    ("Insurance member id: XYZ123456789", [("INSURANCE", "XYZ123456789")]),
    ("医保卡号：1234567890，", [("INSURANCE", "1234567890")]),
    # passports
    ("passport no. 512345678", [("PASSPORT", "512345678")]),
    ("US passport number: A12345678", [("PASSPORT", "A12345678")]),
    ("护照号码：G12345678", [("PASSPORT", "G12345678")]),
    ("护照EA1234567已复印", [("PASSPORT", "EA1234567")]),
    ("出示护照 E98765432 后办理", [("PASSPORT", "E98765432")]),
    # identity cards
    ("身份证明：香港身份证 A123456(3)", [("ID", "A123456(3)")]),
    ("ID A1234563 checked", [("ID", "A1234563")]),  # no brackets: the check digit decides
    ("HKID: AB9876543", [("ID", "AB9876543")]),
    ("澳门身份证 1234567(8)，", [("ID", "1234567(8)")]),
    ("Macau ID 5123456(1)", [("ID", "5123456(1)")]),
    ("證件 A123456789 已核", [("ID", "A123456789")]),  # Taiwan, checksum passes
    ("身分證字號：B223456789", [("ID", "B223456789")]),  # context: any shape
    # SSNs
    ("SSN: 666-12-3456", [("ID", "666-12-3456")]),
    ("Social Security Number 912 34 5678", [("ID", "912 34 5678")]),
    ("SS# 536228437", [("ID", "536228437")]),
    ("last 4 of SSN 6789 verified", [("ID", "6789")]),
    ("SSN xxx-xx-6789", [("ID", "xxx-xx-6789")]),
    # insurance
    ("Medicare number: 1EG4TE5MK73", [("INSURANCE", "1EG4TE5MK73")]),
    ("MBI 1EG4-TE5-MK73", [("INSURANCE", "1EG4-TE5-MK73")]),
    ("card 1EG4-TE5-MK73 scanned", [("INSURANCE", "1EG4-TE5-MK73")]),
    ("Medicaid ID: 98765432A", [("INSURANCE", "98765432A")]),
    ("Policy number: POL-2023-55821", [("INSURANCE", "POL-2023-55821")]),
    ("subscriber id W123456789", [("INSURANCE", "W123456789")]),
    ("医保卡号为J12345678", [("INSURANCE", "J12345678")]),
    ("社保卡号: 123456789012", [("INSURANCE", "123456789012")]),
    ("医保号：1101 0012 3456", [("INSURANCE", "1101 0012 3456")]),
    ("医疗保险号 SH20230001", [("INSURANCE", "SH20230001")]),
    # licence plates
    ("车牌号：粤B·D12345", [("PLATE", "粤B·D12345")]),
    ("车牌号粤BD12345", [("PLATE", "粤BD12345")]),  # new energy: six characters
    ("开着沪C8K2M7来院", [("PLATE", "沪C8K2M7")]),
    ("plate 7ABC123", [("PLATE", "7ABC123")]),
    ("license plate ABC-1234 noted by security", [("PLATE", "ABC-1234")]),
    ("Vehicle registration: AB12 CDE", [("PLATE", "AB12 CDE")]),
])
def test_identifier_positives(text, expected):
    assert kinds(text) == expected


@pytest.mark.parametrize("text", [
    "Metformin 500 mg twice daily, 12345678 tablets dispensed",  # an ordinary 8-digit number
    "Lot number 12345678 and order 87654321",
    "E12345 and G1234567 are not passports",  # wrong length
    "SE12345678X reference",  # inside a longer code
    "SSN 000-12-3456 is not an assigned number",  # a group of zeros: listed for review, not masked
    "Call 123-45-6789 extension",  # an SSN shape without the word: Presidio's own rules decide (it rejects this one)
    "skin tag 3 mm removed",
    "plate count 150",  # platelets
    "Member of the team since 2019.",
    "The policy covers 80% of costs.",
    "A1234567 is a lab accession",  # HKID shape without brackets, check digit wrong
    "A123456788 sample",  # Taiwan shape, checksum wrong
    "新A级别", "京A1234",  # plate too short
    "青霉素G 80万单位",
    "医保报销比例为70%",
])
def test_identifier_negatives(text):
    assert kinds(text) == []


def test_placeholders_and_pseudonyms_keep_the_kind():
    text = "Passport E12345678, plate 7ABC123, member id XYZ123456789, HKID A123456(3)."
    masked, counts = deidentify(text)
    assert masked == "Passport [PASSPORT], plate [PLATE], member id [INSURANCE], HKID [ID]."
    assert counts == {"PASSPORT": 1, "PLATE": 1, "INSURANCE": 1, "ID": 1}
    from server.deid import DeidOptions

    assert deidentify(text, DeidOptions(pseudonymize=True, shift_dates=True))[0] == masked  # no fake numbers


def test_new_kinds_are_counted_in_the_import_report():
    from server.ingest import CleanOptions, RawDocument, clean_documents

    record = RawDocument(text="Transferred from Massachusetts General Hospital; passport E12345678, plate 7ABC123, "
                              "member id XYZ123456789.", data={}, source="n.jsonl", line=1)
    tasks, report = clean_documents([record], CleanOptions(mask_pii=True))
    assert {k: v for k, v in report.masked.items() if v} == {"FACILITY": 1, "PASSPORT": 1, "PLATE": 1, "INSURANCE": 1}
    assert "masked: FACILITY 1, PLATE 1, PASSPORT 1, INSURANCE 1" in report.summary_lines()
    assert tasks[0]["data"]["text"] == "Transferred from [FACILITY]; passport [PASSPORT], plate [PLATE], member id [INSURANCE]."
