"""Rebuild the starter sets shipped in this package from the converted public datasets (seeded, so a rebuild
gives the same files): ``python -m server.starters.build /path/to/data``.

Only permissively licensed sources are used; each set's licence text is copied beside it. Documents that the
samples (server/samples/) or the benchmarks' test splits hold are never taken: starters come from train splits.
A set with a "language" other than English goes to its own folder, ``<schema>/<language>/`` with its own
``starter.json`` (server/starters picks it for a project whose documents are in that language).
"""
from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 13
REPO_DATA = HERE.parents[1] / "bench" / "data"  # extracts committed with the code: a set naming it as "root" is read there

# schema → sets: (name, source folder, source file, documents, control, label map, licence line)
SETS: dict[str, list[dict]] = {
    "medical_records": [
        {"name": "ncbi_disease", "file": "train.jsonl", "docs": 150, "control": "entities",
         # Modifier mentions ("colorectal cancer" in "colorectal cancer genes") are disease names: BC5CDR labels them
         # Disease too, so both sets teach one notion of a disease mention
         "map": {"SpecificDisease": "Disease", "DiseaseClass": "Disease", "CompositeMention": "Disease", "Modifier": "Disease"},
         "licence": "public domain (US Government work, NLM)"},
        {"name": "bc5cdr", "file": "train.jsonl", "docs": 150, "control": "entities",
         "map": {"Disease": "Disease", "Chemical": "Medication"}, "licence": "Public Domain Mark 1.0 (as stated by BigBio)"},
        # Chinese consumer-health questions. treatment → Procedure: its mentions are mostly procedures (手术 surgery is
        # a quarter of them, 化疗 chemotherapy, 人流 abortion, 输液 infusion, 针灸 acupuncture, 激光 laser), the few drug
        # classes among them (抗生素, 激素) are a minority; test is dropped: it mixes examinations (胃镜, b超, ct) with
        # measured quantities (血糖 blood sugar, 视力 vision, 转氨酶 ALT) that are no procedure. body, crowd, physiology,
        # feature, time and department have no label in the schema.
        {"name": "zh_cmedqaner", "file": "train.jsonl", "docs": 200, "control": "entities", "language": "zh",
         "map": {"disease": "Disease", "symptom": "Symptom", "drug": "Medication", "treatment": "Procedure"},
         "licence": "Apache-2.0 (alibaba-research/ChineseBLUE repository licence)"},
    ],
    "financial_news": [
        {"name": "twitter_financial_news_sentiment", "file": "train.jsonl", "docs": 1500, "control": "sentiment",
         "map": {"Bullish": "positive", "Bearish": "negative", "Neutral": "neutral"}, "licence": "MIT"},
        {"name": "fin_ner_sec_filings", "file": "train.jsonl", "docs": 300, "control": "entities",
         # MISC has no label in the schema: dropped, and counted in the version record
         "map": {"ORG": "Company", "PER": "Person", "LOC": "Location"},
         "licence": "CC BY 3.0 Unported; attribution: Salinas Alvarado, Verspoor and Baldwin (2015), "
                    "Domain Adaption of Named Entity Recognition to Support Credit Risk Assessment, ALTA Workshop"},
        # Chinese: no permissively licensed Chinese financial-news NER set exists, so general Wikipedia-style sentences
        # (UD Chinese GSDSimp) with their people, organisations and places; Money and Percent stay untaught, as in
        # English. Read from the extract committed in bench/data (its README: conversion, counts).
        {"name": "zh_gsdsimp", "file": "train.jsonl", "docs": 400, "control": "entities", "language": "zh", "root": REPO_DATA,
         "map": {"ORG": "Company", "PER": "Person", "LOC": "Location"},
         "licence": "CC BY-SA 4.0; attribution: Mayhew et al. (2024), Universal NER: A Gold-Standard Multilingual Named "
                    "Entity Recognition Benchmark, NAACL 2024, on UD_Chinese-GSDSimp"},
    ],
}


def _pick(rows: list[dict], n: int, rng: random.Random, spans: bool) -> list[dict]:
    if spans:  # mostly sentences with entities: a set of empty sentences teaches little (fin_ner: 2 in 3 are empty)
        with_spans = [r for r in rows if r.get("spans")]
        without = [r for r in rows if not r.get("spans") and len(r["text"]) >= 20]
        k = min(len(with_spans), n * 2 // 3 if without else n)
        return rng.sample(with_spans, k) + rng.sample(without, min(len(without), n - k))
    return rng.sample(rows, min(n, len(rows)))


def build(data_root: Path) -> None:
    for schema, all_sets in SETS.items():
        for language in sorted({s.get("language", "en") for s in all_sets}):
            _build_folder(data_root, schema, language, [s for s in all_sets if s.get("language", "en") == language])


def _build_folder(data_root: Path, schema: str, language: str, sets: list[dict]) -> None:
    """One starter folder: the English sets in ``<schema>/``, another language's in ``<schema>/<language>/``."""
    out = HERE / schema if language == "en" else HERE / schema / language
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for s in sets:
        src = Path(s.get("root", data_root)) / s["name"]
        with (src / s["file"]).open(encoding="utf-8") as fh:  # not splitlines: texts hold U+2028
            rows = [json.loads(line) for line in fh if line.strip()]
        rng = random.Random(f"{SEED}-{s['name']}")
        picked = sorted(_pick(rows, s["docs"], rng, "spans" in rows[0]), key=lambda r: str(r["id"]))
        with (out / f"{s['name']}.jsonl").open("w", encoding="utf-8") as fh:
            for r in picked:
                rec = {"id": f"{s['name']}:{r['id']}", "text": r["text"]}
                if "spans" in r:
                    rec["spans"] = [{"start": x["start"], "end": x["end"], "label": x["label"]} for x in r["spans"]]
                else:
                    rec["label"] = r["label"]
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        shutil.copyfile(src / "LICENSE.txt", out / f"LICENSE-{s['name']}.txt")
        source = next((ln for ln in (src / "README.txt").read_text().splitlines() if ln.startswith("Source:")), "")
        manifest.append({"name": s["name"], "file": f"{s['name']}.jsonl", "control": s["control"], "map": s["map"],
                         "documents": len(picked), "split": s["file"].removesuffix(".jsonl"),
                         "source": source.removeprefix("Source: "), "licence": s["licence"],
                         "licence_file": f"LICENSE-{s['name']}.txt"})
    head = {"schema": schema} if language == "en" else {"schema": schema, "language": language}
    (out / "starter.json").write_text(json.dumps({**head, "seed": SEED, "sets": manifest}, indent=2) + "\n")


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data"))
