"""Train the name tagger (server/deid/tagger.py) and write its weights as JSON (server/deid/data/name_tagger.json).

    .venv/bin/python bench/train_names.py [--data ../shared/data] [--docs 6000] [--seed 0] [--out ...]

The training notes are disjoint from bench/deid.py's evaluation set: their own sentence frames (none of the
benchmark's), English names from Faker's en_US lists (the benchmark draws from other locales minus exactly those
lists), Chinese given names from Faker zh_CN / zh_TW characters minus the benchmark's character pool, and as text
without names BC5CDR abstracts (the benchmark uses NCBI abstracts) and Faker's zh_CN word list with goldloop's own
clinical sentences (the benchmark uses cMedQANER). Both disjointness checks are asserted before training. A fifth of
the generated notes is held out; the script prints precision and recall on it and writes them into the model file.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.deid_corpus import ZH_GIVEN, english_name_pool  # noqa: E402
from bench.train_names_frames import (EN_EPONYMS, EN_FRAMES, EN_NEGATIVES, EN_TERMS, ZH_CLINICAL, ZH_FRAMES,  # noqa: E402
                                      ZH_NEGATIVES)
from server.deid.names import guard_words, name_list, tagger_lists  # noqa: E402
from server.deid.tagger import MODEL_FILE, en_candidate, en_features, en_tokens, zh_features  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "server" / "deid" / "data" / MODEL_FILE
LIST_DROPOUT = 0.5  # benchmark and real names are often in no list: context must carry the decision
# decision thresholds: a single capitalised word (Jews, Canada, Duchenne) or a two-character Chinese name (羊肉, 花生)
# is far more often a word than a name, so it needs more confidence than a full name
EN_THRESHOLDS = (0.5, 0.9)
ZH_MARGINS = (0.0, 3.0)


# ------------------------------------------------------------------------------------------------ name sources


def english_training_names() -> tuple[list[str], list[str]]:
    first, last = list(name_list("en_first_names")), list(name_list("en_last_names"))
    bench_first, bench_last = english_name_pool()
    assert not (set(first) | set(last)) & (set(bench_first) | set(bench_last)), "training names overlap the benchmark"
    return first, last


def chinese_given_pool() -> list[str]:
    from faker import Faker

    chars = set()
    for loc in ("zh_CN", "zh_TW"):
        chars |= set("".join(Faker(loc).provider("faker.providers.person").first_names))
    pool = sorted(c for c in chars - set(ZH_GIVEN) if "\u4e00" <= c <= "\u9fff")
    assert not set(pool) & set(ZH_GIVEN), "training given-name characters overlap the benchmark"
    return pool


def zh_filler_words() -> list[str]:
    from faker import Faker

    return list(Faker("zh_CN").provider("faker.providers.lorem").word_list)


def place_names() -> list[str]:
    """Countries and US states (Faker en_US): capitalised words in running text that are no person."""
    from faker import Faker

    p = Faker("en_US").provider("faker.providers.address")
    return [n for n in (*p.countries, *p.states) if "(" not in n]


def bc5cdr_sentences(data: Path, limit: int = 12000) -> list[str]:
    out = []
    for split in ("train", "dev", "test"):
        path = data / "bc5cdr" / f"{split}.jsonl"
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                out += [s for s in re.split(r"(?<=\.)\s+", json.loads(line)["text"]) if 20 < len(s) < 400]
    if not out:
        raise SystemExit(f"{data}: needs bc5cdr/*.jsonl")
    return out[:limit]


# ------------------------------------------------------------------------------------------------ notes


def en_name(rng: random.Random, first: list[str], last: list[str]) -> str:
    r = rng.random()
    f, la = rng.choice(first), rng.choice(last)
    if r < 0.55:
        return f"{f} {la}"
    if r < 0.65:
        return f"{f} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {la}"
    if r < 0.8:
        return f
    if r < 0.9:
        return la
    return f"{f} {rng.choice(last)}-{la}" if rng.random() < 0.3 else f"{f} {la}"


def fill(frame: str, names: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The frame with {N} / {M} replaced by the names, and the names' spans."""
    text, spans, k = "", [], 0
    for part in re.split(r"(\{[NM]\})", frame):
        if part in ("{N}", "{M}"):
            spans.append((len(text), len(text) + len(names[k])))
            text += names[k]
            k += 1
        else:
            text += part
    return text, spans


def english_doc(rng: random.Random, first, last, abstracts, others) -> tuple[str, list[tuple[int, int]]]:
    parts: list[tuple[str, list]] = []
    for _ in range(rng.randint(1, 3)):
        parts.append((rng.choice(abstracts), []))
    for _ in range(rng.randint(1, 3)):
        frame = rng.choice(EN_NEGATIVES)
        parts.append((frame.format(E=rng.choice(others), T=rng.choice(EN_TERMS)), []))
    for _ in range(rng.randint(1, 4)):
        frame = rng.choice(EN_FRAMES)
        parts.append(fill(frame, [en_name(rng, first, last) for _ in range(frame.count("{"))]))
    rng.shuffle(parts)
    return _join(parts, rng.choice((" ", "\n")))


def zh_name(rng: random.Random, surnames: list[str], given: list[str]) -> str:
    return rng.choice(surnames) + "".join(rng.choice(given) for _ in range(1 if rng.random() < 0.3 else 2))


def chinese_doc(rng: random.Random, surnames, given, words) -> tuple[str, list[tuple[int, int]]]:
    parts: list[tuple[str, list]] = []
    for _ in range(rng.randint(1, 2)):  # word salad of everyday words: surname characters inside words
        parts.append(("".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + rng.choice("，。？"), []))
    for _ in range(rng.randint(2, 4)):
        frame = rng.choice(ZH_NEGATIVES)
        parts.append((frame.format(W=rng.choice(ZH_CLINICAL), V=rng.choice(ZH_CLINICAL)), []))
    for _ in range(rng.randint(1, 3)):
        frame = rng.choice(ZH_FRAMES)
        parts.append(fill(frame, [zh_name(rng, surnames, given) for _ in range(frame.count("{"))]))
    for _ in range(rng.randint(0, 2)):  # a name between arbitrary words: the name itself, not its frame, decides
        name = zh_name(rng, surnames, given)
        before = "".join(rng.choice(words) for _ in range(rng.randint(0, 4)))
        after = "".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
        parts.append((before + name + after + rng.choice("，。"), [(len(before), len(before) + len(name))]))
    rng.shuffle(parts)
    return _join(parts, rng.choice(("", "\n")))


def _join(parts, sep: str) -> tuple[str, list[tuple[int, int]]]:
    text, spans = "", []
    for part, part_spans in parts:
        if text:
            text += sep
        spans += [(len(text) + s, len(text) + e) for s, e in part_spans]
        text += part
    return text, spans


# ------------------------------------------------------------------------------------------------ samples


def en_samples(doc, rng, lists):
    text, spans = doc
    tokens = en_tokens(text)
    lower_words = frozenset(t for t, *_ in tokens if t.islower())
    X, y, prev = [], [], False
    for i, (tok, start, end, _) in enumerate(tokens):
        gold = any(s <= start and end <= e for s, e in spans)
        if en_candidate(tok):
            X.append(en_features(tokens, i, lower_words, lists, prev, use_lists=rng.random() >= LIST_DROPOUT))
            y.append(int(gold))
        if not (tok == "." and prev):
            prev = gold and en_candidate(tok)
    return X, y


def zh_samples(doc, rng, single, compound, given_list, stop):
    text, spans = doc
    starts = {s: e for s, e in spans}
    inside = {i for s, e in spans for i in range(s + 1, e)}
    X, y = [], []
    for i, ch in enumerate(text):
        if i in inside or not (ch in single or text[i:i + 2] in compound):
            continue
        surname_len = 2 if text[i:i + 2] in compound else 1
        label = 0
        if i in starts:
            label = starts[i] - i - surname_len
            if label not in (1, 2):
                continue
        X.append(zh_features(text, i, surname_len, stop, given_list, use_lists=rng.random() >= LIST_DROPOUT))
        y.append(label)
    return X, y


def fit(X, y, multiclass: bool, seed: int):
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = DictVectorizer()
    M = vec.fit_transform([{f: 1 for f in feats} for feats in X])
    model = LogisticRegression(C=0.5, max_iter=500, random_state=seed,
                               solver="lbfgs").fit(M, y)
    return vec, model


def export(vec, model, multiclass: bool, keep: float = 0.02) -> dict:
    names = vec.get_feature_names_out()
    coef = model.coef_
    if multiclass:
        weights = {n: [round(float(v), 4) for v in coef[:, j]] for j, n in enumerate(names)
                   if max(abs(coef[:, j])) >= keep}
        return {"bias": [round(float(v), 4) for v in model.intercept_], "weights": weights}
    weights = {n: round(float(coef[0, j]), 4) for j, n in enumerate(names) if abs(coef[0, j]) >= keep}
    return {"bias": round(float(model.intercept_[0]), 4), "weights": weights}


def span_scores(found: list[tuple[int, int]], gold: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(names fully covered, found spans touching a name, found spans)."""
    covered = sum(any(s <= gs and ge <= e for s, e in found) for gs, ge in gold)
    touching = sum(any(s < ge and gs < e for gs, ge in gold) for s, e in found)
    return covered, touching, len(found)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from server.deid.tagger import NameTagger

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="folder with bc5cdr/ (default ../shared/data)")
    parser.add_argument("--docs", type=int, default=6000, help="generated notes per language")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    first_l, last_l, single, compound, given_list, stop = tagger_lists()
    first, last = english_training_names()
    given = chinese_given_pool()
    surnames = sorted(single) + sorted(compound)
    assert not set(guard_words()) & set(ZH_GIVEN)  # nothing from the benchmark enters through the guard list
    abstracts = bc5cdr_sentences(args.data)
    words = zh_filler_words() + list(guard_words()) + list(ZH_CLINICAL)
    others = list(EN_EPONYMS) + place_names()
    en_docs = [english_doc(rng, first, last, abstracts, others) for _ in range(args.docs)]
    zh_docs = [chinese_doc(rng, surnames, given, words) for _ in range(args.docs)]
    cut = args.docs * 4 // 5
    model: dict = {"version": 1, "seed": args.seed, "docs": args.docs}
    Xe, ye, Xz, yz = [], [], [], []
    for doc in tqdm(en_docs[:cut], desc="features en", leave=False):
        a, b = en_samples(doc, rng, (first_l, last_l))
        Xe += a
        ye += b
    for doc in tqdm(zh_docs[:cut], desc="features zh", leave=False):
        a, b = zh_samples(doc, rng, single, compound, given_list, stop)
        Xz += a
        yz += b
    model["en"] = export(*fit(Xe, ye, False, args.seed), False)
    model["en"]["threshold"], model["en"]["threshold_one_word"] = EN_THRESHOLDS
    model["zh"] = export(*fit(Xz, yz, True, args.seed), True)
    model["zh"]["margin"], model["zh"]["margin_one_char"] = ZH_MARGINS
    tagger = NameTagger(model, first_l, last_l, single, compound, given_list, stop)
    dev = {}
    for lang, docs, find in (("en", en_docs[cut:], tagger.english), ("zh", zh_docs[cut:], tagger.chinese)):
        covered = touching = found = gold = 0
        for text, spans in docs:
            c, t, f = span_scores(find(text), spans)
            covered, touching, found, gold = covered + c, touching + t, found + f, gold + len(spans)
        dev[lang] = {"recall": round(covered / max(1, gold), 4), "precision": round(touching / max(1, found), 4),
                     "names": gold, "notes": len(docs)}
    model["heldout"] = dev
    model["features"] = {"en": len(model["en"]["weights"]), "zh": len(model["zh"]["weights"])}
    print("| held-out generated notes | names | recall | precision |\n|---|---|---|---|")
    for lang, r in dev.items():
        print(f"| {lang} ({r['notes']} notes) | {r['names']} | {r['recall']:.3f} | {r['precision']:.3f} |")
    args.out.write_text(json.dumps(model, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n",
                        encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB; features en {model['features']['en']}, "
          f"zh {model['features']['zh']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
