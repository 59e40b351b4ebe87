"""De-identification: recall per identifier type, precision, clinical words masked and notes/s, on synthetic English
and Chinese clinical notes (bench/deid_corpus.py), for the Presidio engine (server/deid) and the regular-expression
masker it replaced, side by side in one run; then the engine alone on the independent set (bench/deid_independent/:
notes written without seeing the generator or the recognizers, plus UniversalNER sentences with a person): recall per
PHI type and language with Wilson 95% intervals, and over-masking on real clinical text without PHI. Prints the
tables and writes JSON.

    .venv/bin/python bench/deid.py [--data ../shared/data] [--n-en 1000] [--n-zh 1000] [--out bench/results/deid.json]
    .venv/bin/python bench/deid.py --independent-only      # the independent tables alone, about a minute

A type is recalled when every non-space character of the inserted identifier is masked. Precision: masked spans that
touch an inserted identifier / all masked spans. Clinical words masked: annotated disease, symptom, drug … mentions of
the real fragments (and the template's drug and lab words) that any mask touches.
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import deid_independent  # noqa: E402
from bench.deid_corpus import NAMES, STRUCTURED, Note, build_notes, english_name_pool, fragments  # noqa: E402
from server.deid import DeidOptions, deidentify, find, redact  # noqa: E402
from server.deid.names import tagged_names  # noqa: E402
from server.deid.regex_baseline import mask_pii as regex_mask  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
TARGETS = {"structured": 0.99, "NAME_en": 0.95, "NAME_zh": 0.90, "precision": 0.95, "clinical_masked": 0.01,
           "notes_per_s": 200}


# Targets for the independent set, per PHI type (NAME per language); over-masking is a share of non-PHI tokens.
INDEPENDENT_TARGETS = {"NAME_en": 0.95, "NAME_zh": 0.90, "DATE": 0.98, "ID": 0.98, "PHONE": 0.98, "EMAIL": 0.98,
                       "PLATE": 0.98, "PASSPORT": 0.98, "FACILITY": 0.90, "over_masking": 0.01}
# a token is one CJK character or a run of letters and digits: Chinese has no spaces to split on
TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def masked_ranges(original: str, masked: str) -> list[tuple[int, int]]:
    """Ranges of the original that a masker replaced (from the diff of its output: for maskers that give no spans)."""
    matcher = difflib.SequenceMatcher(None, original, masked, autojunk=False)
    return [(i1, i2) for op, i1, i2, _, _ in matcher.get_opcodes() if op in ("replace", "delete") and i2 > i1]


def _covered(text: str, start: int, end: int, masks: list[tuple[int, int]]) -> bool:
    return all(ch.isspace() or any(s <= i < e for s, e in masks) for i, ch in enumerate(text[start:end], start))


def _touches(start: int, end: int, masks: list[tuple[int, int]]) -> bool:
    return any(s < end and start < e for s, e in masks)


def score(notes: list[Note], spans_of) -> dict:
    """Recall per type, precision and clinical words masked for one system; spans_of(note) → masked ranges."""
    hit, total = defaultdict(int), defaultdict(int)
    predicted = correct = clinical_total = clinical_masked = 0
    for note in notes:
        masks = spans_of(note)
        for kind, s, e in note.pii:
            total[kind] += 1
            hit[kind] += _covered(note.text, s, e, masks)
        predicted += len(masks)
        correct += sum(_touches(s, e, [(a, b) for _, a, b in note.pii]) for s, e in masks)
        clinical_total += len(note.clinical)
        clinical_masked += sum(_touches(s, e, masks) for s, e in note.clinical)
    recall = {k: hit[k] / total[k] for k in sorted(total)}
    structured = [k for k in STRUCTURED if k in total]
    return {
        "recall": recall,
        "counts": dict(total),
        "recall_structured": sum(hit[k] for k in structured) / max(1, sum(total[k] for k in structured)),
        "recall_names_all": sum(hit[k] for k in NAMES) / max(1, sum(total[k] for k in NAMES)),
        "recall_overall": sum(hit.values()) / max(1, sum(total.values())),
        "precision": correct / predicted if predicted else 1.0,
        "clinical_masked": clinical_masked / max(1, clinical_total),
        "clinical_words": clinical_total,
    }


def throughput(texts: list[str], fn, min_seconds: float = 2.0) -> tuple[float, float]:
    """Notes per wall-clock second and per CPU second of this process (the second is what one free core gives when
    other work shares the machine) of fn over the texts, repeated until min_seconds have passed."""
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        for t in texts:
            fn(t)
        done += len(texts)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed, done / max(1e-9, time.process_time() - cpu)


def run(data: Path, n_en: int, n_zh: int, seed: int = 0, min_seconds: float = 2.0, progress: bool = True) -> dict:
    """Both systems on the same notes; the result dict that is printed and written."""
    from tqdm import tqdm

    notes = build_notes(data, n_en, n_zh, seed)
    find("warm up the analyzer")  # build once, outside the timings
    systems = {
        "presidio": lambda note: [(f.start, f.end) for f in find(note.text)],
        "regex": lambda note: masked_ranges(note.text, regex_mask(note.text)[0]),
    }
    out = {"data": str(data), "seed": seed, "notes": {"en": n_en, "zh": n_zh}, "cpu_count": os.cpu_count(),
           "load_average": os.getloadavg()[0],
           "names": {"en_first_pool": len(english_name_pool()[0]), "en_last_pool": len(english_name_pool()[1])},
           "systems": {}}
    for name, spans_of in systems.items():
        per_lang = {}
        for lang in ("en", "zh"):
            subset = [n for n in notes if n.language == lang]
            per_lang[lang] = score(tqdm(subset, desc=f"{name} {lang}", disable=not progress, leave=False), spans_of)
        out["systems"][name] = per_lang
    sample = [n.text for n in notes[:200]] + [n.text for n in notes[n_en:n_en + 200]]
    for lang, texts in (("en", sample[:min(200, n_en)]), ("zh", sample[min(200, n_en):])):
        presidio, regex = out["systems"]["presidio"][lang], out["systems"]["regex"][lang]
        presidio["notes_per_s"], presidio["notes_per_cpu_s"] = throughput(texts, deidentify, min_seconds)
        presidio["notes_per_s_pseudonyms_dates"], presidio["notes_per_cpu_s_pseudonyms_dates"] = throughput(
            texts, lambda t: deidentify(t, DeidOptions(pseudonymize=True, shift_dates=True)), min_seconds)
        regex["notes_per_s"], regex["notes_per_cpu_s"] = throughput(texts, regex_mask, min_seconds)
    out["fragments_alone"] = fragment_masks(data)
    out["targets"] = TARGETS
    return out


def fragment_masks(data: Path) -> dict:
    """Over-masking on the real fragments with nothing inserted: every mask there is a false positive unless the
    fragment itself names a person or a date. Counts per kind, the name tagger's spans with their text, and the
    fragments the import would flag for review (a borderline span left unmasked)."""
    from collections import Counter

    out = {}
    for lang, frags in zip(("en", "zh"), fragments(data)):
        kinds, tagged, review = Counter(), Counter(), 0
        for text, _ in frags:
            result = redact(text)
            kinds.update(result.counts)
            review += bool(result.borderline)
            tagged.update(text[s:e] for s, e in tagged_names(text, lang == "en", lang == "zh"))
        out[lang] = {"fragments": len(frags), "masks": dict(kinds), "tagger_spans": sum(tagged.values()),
                     "tagger_texts": dict(tagged.most_common()), "review_documents": review}
    return out


def wilson(hit: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion: honest at n of a few dozen and at 0 or 1, unlike the normal one."""
    if n == 0:
        return 0.0, 1.0
    p = hit / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(hit: int, n: int) -> dict:
    lo, hi = wilson(hit, n)
    return {"hit": hit, "n": n, "rate": hit / n if n else None, "ci95": [lo, hi]}


def phi_recall(notes: list[dict], spans_of) -> dict:
    """Recall per language and PHI type on independent-set notes ({"lang", "text", "phi"}); spans_of(note) → masked
    ranges. An occurrence counts as found when every non-space character of it is masked (as for the templates)."""
    hit, total = defaultdict(int), defaultdict(int)
    for note in notes:
        masks = spans_of(note)
        for s in note["phi"]:
            key = (note["lang"], s["type"])
            total[key] += 1
            hit[key] += _covered(note["text"], s["start"], s["end"], masks)
    out: dict = {}
    for lang in sorted({lang for lang, _ in total}):
        kinds = sorted(k for lg, k in total if lg == lang)
        out[lang] = {k: _rate(hit[(lang, k)], total[(lang, k)]) for k in kinds}
        out[lang]["ALL"] = _rate(sum(hit[(lang, k)] for k in kinds), sum(total[(lang, k)] for k in kinds))
    return out


def over_masking(items: list[tuple[str, list[tuple[int, int]]]], spans_of_text) -> dict:
    """Share of non-PHI tokens that a mask touches. items: (text, gold PHI ranges, excluded from the count);
    spans_of_text(text) → masked ranges."""
    tokens = masked = 0
    for text, gold in items:
        masks = spans_of_text(text)
        for m in TOKEN.finditer(text):
            if _touches(m.start(), m.end(), gold):
                continue
            tokens += 1
            masked += _touches(m.start(), m.end(), masks)
    return {**_rate(masked, tokens), "documents": len(items)}


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def independent(data: Path, min_seconds: float = 2.0) -> dict:
    """The engine on the independent set: recall with intervals, precision, over-masking, notes/s."""
    notes = deid_independent.load()
    find("warm up the analyzer")  # build once, outside the timings
    cache: dict[str, list[tuple[int, int]]] = {}

    def spans_of_text(text: str) -> list[tuple[int, int]]:
        if text not in cache:
            cache[text] = [(f.start, f.end) for f in find(text)]
        return cache[text]

    def spans_of(note: dict) -> list[tuple[int, int]]:
        return spans_of_text(note["text"])

    out: dict = {"counts": deid_independent.counts(notes), "recall": phi_recall(notes, spans_of)}
    with_phi = [n for n in notes if n["phi"]]
    masks = [(n, m) for n in with_phi for m in spans_of(n)]
    gold = {id(n): [(s["start"], s["end"]) for s in n["phi"]] for n in with_phi}
    out["precision"] = _rate(sum(_touches(a, b, gold[id(n)]) for n, (a, b) in masks), len(masks))
    over: dict = {}
    for lang in ("en", "zh"):
        free = [(n["text"], []) for n in notes if n["lang"] == lang and not n["phi"]]
        over[f"phi_free_notes_{lang}"] = over_masking(free, spans_of_text)
        rest = [(n["text"], gold[id(n)]) for n in with_phi if n["lang"] == lang]
        over[f"non_phi_tokens_of_phi_notes_{lang}"] = over_masking(rest, spans_of_text)
    for name, rel in (("ncbi_disease_test", "ncbi_disease/test.jsonl"), ("cmedqaner_test", "zh_cmedqaner/test.jsonl")):
        path = data / rel
        if path.exists():  # real text without PHI (a stray real date or author name counts against the engine)
            over[name] = over_masking([(r["text"], []) for r in _read_jsonl(path)], spans_of_text)
    out["over_masking"] = over
    uner = deid_independent.load_uner()
    if uner:
        out["uner_person_recall"] = {lang: rec["NAME"] for lang, rec in phi_recall(uner, spans_of).items()}
    for lang in ("en", "zh"):
        texts = [n["text"] for n in notes if n["lang"] == lang]
        wall, cpu = throughput(texts, deidentify, min_seconds)
        out.setdefault("notes_per_s", {})[lang] = {"wall": wall, "cpu": cpu, "notes": len(texts)}
    out["targets"] = INDEPENDENT_TARGETS
    return out


def _fmt(r: dict | None, pct: bool = False) -> str:
    if not r or not r["n"]:
        return "–"
    f = "{:.2%}" if pct else "{:.3f}"
    return f"{f.format(r['rate'])} [{f.format(r['ci95'][0])}, {f.format(r['ci95'][1])}] ({r['hit']}/{r['n']})"


def independent_table(ind: dict) -> str:
    """Markdown tables: recall per type and language with 95% intervals and n; over-masking; UNER; throughput."""
    rec, targets = ind["recall"], ind["targets"]
    kinds = [k for k in deid_independent.TYPES if any(k in rec.get(lang, {}) for lang in ("en", "zh"))]
    lines = ["| PHI type | EN recall [95% CI] (found/n) | ZH recall [95% CI] (found/n) | target |",
             "|---|---|---|---|"]
    for k in kinds + ["ALL"]:
        if k == "NAME":
            target = f"≥{targets['NAME_en']:.2f} EN / ≥{targets['NAME_zh']:.2f} ZH"
        else:
            target = f"≥{targets[k]:.2f}" if k in targets else "–"
        lines.append(f"| {k if k != 'ALL' else 'all PHI'} | {_fmt(rec.get('en', {}).get(k))} | "
                     f"{_fmt(rec.get('zh', {}).get(k))} | {target} |")
    # one figure for both languages (masks of EN and ZH notes pooled), so it spans the two recall columns' place
    lines.append(f"| precision, EN + ZH pooled (masks touching PHI) | {_fmt(ind['precision'])} | | – |")
    lines += ["", "| over-masking: non-PHI tokens masked | share [95% CI] (masked/tokens) | documents | target |",
              "|---|---|---|---|"]
    for name, r in ind["over_masking"].items():
        lines.append(f"| {name} | {_fmt(r, pct=True)} | {r['documents']} | ≤{targets['over_masking']:.0%} |")
    if "uner_person_recall" in ind:
        lines += ["", "| UniversalNER test, sentences with a person (CC BY-SA 4.0) | person recall [95% CI] (found/n) "
                  "| target |", "|---|---|---|"]
        for lang, r in ind["uner_person_recall"].items():
            lines.append(f"| {lang.upper()} | {_fmt(r)} | ≥{targets['NAME_' + lang]:.2f} |")
    lines += ["", "| throughput, independent notes | notes/s wall | notes/s per CPU second | notes |",
              "|---|---|---|---|"]
    for lang, r in ind["notes_per_s"].items():
        lines.append(f"| {lang.upper()} | {r['wall']:.0f} | {r['cpu']:.0f} | {r['notes']} |")
    return "\n".join(lines)


def table(result: dict) -> str:
    """The Markdown table: one row per type, a column per (language, system)."""
    systems = result["systems"]
    cols = [(lang, name) for lang in ("en", "zh") for name in ("presidio", "regex")]
    kinds = sorted({k for name in systems for lang in systems[name] for k in systems[name][lang]["recall"]})
    head = "| metric | " + " | ".join(f"{lang.upper()} {name}" for lang, name in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]

    def row(label, get, fmt="{:.3f}"):
        cells = []
        for lang, name in cols:
            value = get(systems[name][lang])
            cells.append("–" if value is None else fmt.format(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    for kind in kinds:
        row(f"recall {kind} (n EN/ZH {systems['presidio']['en']['counts'].get(kind, 0)}/"
            f"{systems['presidio']['zh']['counts'].get(kind, 0)})", lambda r, k=kind: r["recall"].get(k))
    row("recall names, all contexts (NAME + NAME_FREE)", lambda r: r["recall_names_all"])
    row("recall structured (ID, MRN, phone, e-mail, date)", lambda r: r["recall_structured"])
    row("recall overall", lambda r: r["recall_overall"])
    row("precision (masks on an identifier)", lambda r: r["precision"])
    row("clinical words masked", lambda r: r["clinical_masked"], "{:.2%}")
    row("notes/s wall (placeholders)", lambda r: r.get("notes_per_s"), "{:.0f}")
    row("notes/s per CPU core (placeholders)", lambda r: r.get("notes_per_cpu_s"), "{:.0f}")
    row("notes/s per CPU core (pseudonyms + date shift)", lambda r: r.get("notes_per_cpu_s_pseudonyms_dates"), "{:.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else ROOT / "tests" / "data",
                        help="folder with ncbi_disease/ and zh_cmedqaner/ (default: ../shared/data when present)")
    parser.add_argument("--n-en", type=int, default=1000)
    parser.add_argument("--n-zh", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--independent-only", action="store_true",
                        help="skip the synthetic notes; JSON to bench/results/deid_independent.json unless --out")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/deid.json")
    args = parser.parse_args(argv)
    if args.independent_only:
        # a separate file by default, so a quick run does not overwrite the full benchmark's JSON
        out_path = args.out or ROOT / "bench" / "results" / "deid_independent.json"
        result = {"data": str(args.data), "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0]}
    else:
        out_path = args.out or ROOT / "bench" / "results" / "deid.json"
        result = run(args.data, args.n_en, args.n_zh, args.seed, progress=sys.stderr.isatty())
        print(f"de-identification: {args.n_en} EN + {args.n_zh} ZH synthetic notes from {args.data}, seed {args.seed}")
        print(table(result))
        for lang, r in result["fragments_alone"].items():
            top = ", ".join(f"{t} ×{n}" for t, n in list(r["tagger_texts"].items())[:12])
            print(f"{lang} fragments alone ({r['fragments']}): masks {r['masks']}; flagged for review "
                  f"{r['review_documents']}; name tagger {r['tagger_spans']}: {top}")
    result["independent"] = independent(args.data)
    c = result["independent"]["counts"]
    print(f"\nindependent set (bench/deid_independent/): {c['notes']} notes, PHI-free {c['phi_free_notes']}")
    print(independent_table(result["independent"]))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
