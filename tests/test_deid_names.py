"""The learned name tagger: names in sentences no rule covers (chat notes in lower case, accented and multi-part names,
Chinese names without context, nicknames), words it must leave alone (eponyms, instruments, cars, residences, clinical
words), the shipped JSON model, the trainer end to end, and the training data's disjointness from the benchmark
(bench/train_names.py vs bench/deid_corpus.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import train_names, train_names_frames
from bench.deid_corpus import ZH_GIVEN, build_notes, english_name_pool
from server.deid import deidentify, find, redact
from server.deid.names import name_list, name_tagger, tagged_names
from server.deid.tagger import MODEL_FILE

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "server" / "deid" / "data" / MODEL_FILE
SHARED = ROOT.parent / "shared" / "data"


def masked_names(text: str) -> list[str]:
    return [text[s:e] for s, e in sorted(set(tagged_names(text)))]


def test_the_model_is_plain_json_with_both_languages():
    model = json.loads(MODEL.read_text(encoding="utf-8"))
    assert set(model) >= {"en", "zh", "heldout", "seed", "corpora"}
    assert all(isinstance(w, float) for w in list(model["en"]["weights"].values())[:100])
    assert all(len(w) == 3 for w in list(model["zh"]["weights"].values())[:100])
    # held-out figures of the real corpora's test splits, none of which trained the model
    assert set(model["heldout"]) == set(train_names.TEST_SPLITS)
    assert not set(model["heldout"]) & {s for split in model["corpora"]["train"].values() for s in split}
    assert model["heldout"]["btc-test"]["recall"] > 0.7 and model["heldout"]["ewt-test"]["recall"] > 0.55
    assert name_tagger() is not None


@pytest.mark.parametrize("text, name", [
    ("The infusion pump alarm was silenced by Marisol Quenby at 02:00.", "Marisol Quenby"),
    ("Plan reviewed with Imogen Tresidder before discharge.", "Imogen Tresidder"),
    ("Bed bath given by Thaddeus Okonkwo-Reyes.", "Thaddeus Okonkwo-Reyes"),
])
def test_english_names_without_a_rule_are_masked(text, name):
    assert name not in deidentify(text)[0]
    assert name in " ".join(masked_names(text))


@pytest.mark.parametrize("text", [
    "Huntington disease is an autosomal dominant neurodegenerative disorder.",
    "Duchenne muscular dystrophy is caused by mutations in the dystrophin gene.",
    "Mutations in BRCA1 were screened in 120 families with breast cancer.",
    "Patients with Parkinson disease received levodopa.",
])
def test_english_clinical_capitals_are_not_names(text):
    assert masked_names(text) == []
    assert deidentify(text)[0] == text


@pytest.mark.parametrize("text, name", [("下午由钱立伟送来外院化验单，已交主管医生。", "钱立伟"), ("今天宋佳琪来送饭。", "宋佳琪")])
def test_chinese_name_without_a_rule_is_masked(text, name):
    masked = deidentify(text)[0]
    assert name not in masked and "[NAME]" in masked


@pytest.mark.parametrize("text", ["高血压患者平时饮食要注意什么？", "祝您健康，早日康复。", "白细胞偏高是什么原因？",
                                  "宝宝黄疸需要照蓝光吗？"])
def test_chinese_clinical_words_are_not_names(text):
    assert masked_names(text) == []


def test_training_names_are_disjoint_from_the_benchmark():
    first, last = train_names.english_training_names()
    bench_first, bench_last = english_name_pool()
    assert set(first) == set(name_list("en_first_names")) and not (set(first) | set(last)) & (
        set(bench_first) | set(bench_last))
    given = train_names.chinese_given_pool()
    assert len(given) > 100 and not set(given) & set(ZH_GIVEN)


def test_training_frames_share_no_wording_with_the_benchmark_frames():
    frames = " ".join(train_names_frames.EN_FRAMES + train_names_frames.ZH_FRAMES + train_names_frames.EN_NEGATIVES
                      + train_names_frames.ZH_NEGATIVES)
    notes = build_notes(ROOT / "tests" / "data", 40, 40, seed=1) if (ROOT / "tests" / "data" / "ncbi_disease").exists() \
        else build_notes(SHARED, 40, 40, seed=1)
    for note in notes:
        for kind, s, e in note.pii:
            if not kind.startswith("NAME"):
                continue
            # the words right around every benchmark name never stand around a name in a training frame
            before, after = note.text[max(0, s - 12):s].split("\n")[-1], note.text[e:e + 8].split("\n")[0]
            if note.language == "en":
                before, after = " ".join(before.split()[-2:]), " ".join(after.split()[:2])
            else:
                before, after = before[-3:], after[:3]
            frames_n = frames.replace("{M}", "{N}")
            # punctuation alone ("Name.") is no wording
            assert not (any(c.isalpha() for c in before) and before + "{N}" in frames_n), before
            assert not (any(c.isalpha() for c in after) and "{N}" + after in frames_n), after


def test_the_trainer_runs_end_to_end_on_a_tiny_sample_and_is_reproducible(tmp_path):
    """The stored corpus extracts alone (no generated notes, so no ../shared/data needed), 40 documents a split."""
    for name in ("a.json", "b.json"):
        assert train_names.main(["--docs", "0", "--limit", "40", "--seed", "3", "--out", str(tmp_path / name)]) == 0
    a, b = (json.loads((tmp_path / n).read_text(encoding="utf-8")) for n in ("a.json", "b.json"))
    assert a == b and a["en"]["weights"] and a["zh"]["weights"] and set(a["heldout"]) == set(train_names.TEST_SPLITS)


def test_the_gsdsimp_test_split_never_trains():
    assert "gsdsimp-test" not in train_names.TRAIN_SPLITS["zh"] + train_names.DEV_SPLITS["zh"]
    assert all(not s.endswith("-test") for lang in ("en", "zh") for s in train_names.TRAIN_SPLITS[lang])


@pytest.mark.parametrize("text", [
    "Crohn disease activity: Harvey-Bradshaw Index 6 today.",
    "Harvey-Bradshaw index 7, Mayo score 3.",
    "Charlson Comorbidity Index 4. Barthel Index 60. Wells Score 4. Braden Scale 14.",
    "Ranson Criteria met; Bishop Score 6; Morse Fall Scale 45.",
    "Honda Civic was parked outside.",
    "He drove his Honda Civic to clinic.",
    "MVA: driver of a Toyota Camry hit by Ford F-150.",
    "Car: Nissan Altima.",
    "Discharged to Senior Living.",
])
def test_instruments_cars_and_residences_are_not_names(text):
    """The outside probe's over-masking: an eponym index, a car make and model, "Senior Living"."""
    assert [f.kind for f in find(text) if f.kind == "NAME"] == []


@pytest.mark.parametrize("text, name", [
    ("Mercedes Okonkwo reports less pain.", "Mercedes Okonkwo"),  # a make that is also a first name
    ("Patient: Lincoln Avery", "Lincoln Avery"),
    ("Seen by Dr. Ford today.", "Ford"),
    ("Imogen Tresidder, daughter, visited.", "Imogen Tresidder"),
])
def test_names_next_to_the_new_guards_stay_names(text, name):
    assert ("NAME", name) in [(f.kind, text[f.start:f.end]) for f in find(text)]


def masked_by_engine(text: str) -> list[str]:
    return [text[f.start:f.end] for f in find(text) if f.kind == "NAME"]


@pytest.mark.parametrize("text, name", [
    # chat-style notes in lower case
    ("rose will be late today, she texted me", "rose"),
    ("tell kevin the bloods came back normal", "kevin"),
    # names in no list, accented Latin letters
    ("Dressing changed together with Zbigniew Kowalczyk this morning.", "Zbigniew Kowalczyk"),
    ("Message from Kowalczyk: the family will arrive at noon.", "Kowalczyk"),
    ("Handover to Siobhán Ní Bhriain at 19:00.", "Siobhán Ní Bhriain"),
    ("Interpreter Élodie Dubois joined by phone.", "Élodie Dubois"),
    ("Jamie Lee will pick him up after discharge.", "Jamie Lee"),
    # multi-part names and names that are common words: the whole name, not half of it
    ("Emergency contact: Will Hope, brother.", "Will Hope"),
    ("Results discussed with Nguyen Van An and his daughter.", "Nguyen Van An"),
    ("Consent signed by María José García-López.", "María José García-López"),
])
def test_english_leaks_are_masked(text, name):
    masked = redact(text).text
    for word in name.split():
        assert word not in masked.split() and word + "," not in masked, masked


@pytest.mark.parametrize("text, name", [
    ("can mike check the iv in room 3 before lunch", "mike"),
])
def test_lowercase_chat_names_are_masked_or_listed_for_review(text, name):
    """A lowercase name with weak cues ("can mike check") scores near the threshold: if it is not masked, it is on
    the review list, never silently passed."""
    result = redact(text)
    assert name not in result.text.split() or name in [text[b.start:b.end] for b in result.borderline]


@pytest.mark.parametrize("text, name", [
    ("司马光今天下午复诊，血压平稳。", "司马光"),
    ("陈晓明昨晚发热，体温38.5度。", "陈晓明"),
    ("小刘说病人已经睡了。", "小刘"),
    ("刘洋头痛三天，来门诊就诊。", "刘洋"),
    ("李娜咨询孩子的用药剂量。", "李娜"),
])
def test_chinese_leaks_are_masked(text, name):
    masked = redact(text).text
    assert name not in masked and "[NAME]" in masked, masked


@pytest.mark.parametrize("text", [
    "Crohn disease, Harvey-Bradshaw index 9 at the last visit.",
    "harvey-bradshaw index 5 today",
    "He was driving a Honda Civic when the accident happened.",
    "Lives at Maplewood Senior Living with her husband.",
    "Her blood pressure rose to 180 overnight and fell after labetalol.",
    "Patient reports mild pain and some grace period for the insurance.",
])
def test_english_words_that_look_like_names_stay(text):
    assert masked_by_engine(text) == []


@pytest.mark.parametrize("text", [
    "每小时测一次血压，老师说孩子发热。", "小于5毫米的结节需要定期复查吗？", "阿莫西林和小柴胡可以一起吃吗？",
    "衰老和高血压有关系吗？", "老年人骨质疏松怎么补钙？",
])
def test_chinese_words_that_look_like_nicknames_stay(text):
    assert masked_by_engine(text) == []


def test_uncertain_names_go_to_review_not_silently_through():
    """A candidate the tagger is unsure about is listed for review (review.py), not masked and not dropped."""
    from server.deid.names import tagged_names_scored

    near = []
    for text in ("Follow-up arranged with Brannagh tomorrow.", "Ask Quill about the dressing.",
                 "ok so tell mo the meds are due"):
        near += tagged_names_scored(text)[1]
        masked = {text[f.start:f.end] for f in find(text)}
        review = {text[b.start:b.end] for b in redact(text).borderline}
        assert masked or review, text
    assert all(p < t for *_, p, t in near)
