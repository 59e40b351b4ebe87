"""The independent de-identification evaluation set (bench/deid_independent/): parse, check, build, load.

The notes were written by an author who did not see the template generator (bench/deid_corpus.py) or the
recognizers (server/deid), so no design choice of the engine looked at them. Sources are plain text,
``notes_en_*.txt`` and ``notes_zh_*.txt``: a line ``@@ <style>`` starts a note, the lines up to the next ``@@``
are its text (trailing blank lines dropped), and ``[[TYPE|text]]`` marks one PHI occurrence. Lines before the
first ``@@`` are a file comment. Styles starting ``nophi_`` must carry no PHI: they measure over-masking.
``build()`` turns them into ``notes.jsonl``, one ``{"id", "lang", "style", "text", "phi": [{"start", "end",
"type", "text"}]}`` per note, with exact character offsets; ``load()`` reads it back.

    .venv/bin/python bench/deid_independent.py          # rebuild notes.jsonl and print counts
    .venv/bin/python bench/deid_independent.py --uner en_ewt-ud-test.iob2 en   # write uner_en.jsonl

The UniversalNER sentences (``uner_*.jsonl``, CC BY-SA 4.0, see ``LICENSE_UNER.txt``) are separate:
``load_uner()`` reads them, each ``{"id", "lang", "text", "phi"}`` with only PERSON spans typed NAME.
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

DIR = Path(__file__).resolve().parent / "deid_independent"
JSONL = DIR / "notes.jsonl"
TYPES = ("NAME", "DATE", "AGE", "ADDRESS", "PHONE", "EMAIL", "ID", "FACILITY", "PLATE", "PASSPORT", "URL", "IP")
MARK = re.compile(r"\[\[([A-Z]+)\|([^\]|]+)\]\]")


def parse_note(marked: str) -> tuple[str, list[dict]]:
    """Strip the ``[[TYPE|text]]`` marks; return the plain text and its spans with offsets into it."""
    out: list[str] = []
    spans: list[dict] = []
    pos = 0  # length of the plain text written so far
    last = 0
    for m in MARK.finditer(marked):
        kind, span_text = m.group(1), m.group(2)
        if kind not in TYPES:
            raise ValueError(f"unknown PHI type {kind!r} in {marked[:60]!r}")
        before = marked[last:m.start()]
        out.append(before)
        pos += len(before)
        spans.append({"start": pos, "end": pos + len(span_text), "type": kind, "text": span_text})
        out.append(span_text)
        pos += len(span_text)
        last = m.end()
    out.append(marked[last:])
    text = "".join(out)
    # a stray bracket means a mark was mistyped and its PHI would silently count as plain text
    if "[[" in text or "]]" in text:
        raise ValueError(f"malformed mark in {marked[:80]!r}")
    return text, spans


def parse_file(path: Path) -> list[tuple[str, str]]:
    """(style, marked text) per note of one source file."""
    notes: list[tuple[str, list[str]]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("@@"):
            notes.append((line[2:].strip(), []))
        elif notes:
            notes[-1][1].append(line.rstrip())
    result = []
    for style, lines in notes:
        while lines and not lines[-1].strip():
            lines.pop()
        if not style or not lines:
            raise ValueError(f"{path.name}: empty note or style near {style!r}")
        result.append((style, "\n".join(lines)))
    return result


def check(note: dict) -> None:
    """Offsets exact, spans sorted and disjoint, PHI-free styles really free of PHI."""
    prev_end = 0
    for s in note["phi"]:
        assert note["text"][s["start"]:s["end"]] == s["text"], (note["id"], s)
        assert s["start"] >= prev_end, (note["id"], "overlap", s)
        assert s["text"] == s["text"].strip() and s["text"], (note["id"], "untrimmed span", s)
        prev_end = s["end"]
    assert not (note["style"].startswith("nophi_") and note["phi"]), (note["id"], "PHI in a nophi_ note")


def sources() -> list[Path]:
    return sorted(DIR.glob("notes_en_*.txt")) + sorted(DIR.glob("notes_zh_*.txt"))


def build(write: bool = True) -> list[dict]:
    notes = []
    for path in sources():
        lang = path.name.split("_")[1]
        for i, (style, marked) in enumerate(parse_file(path)):
            text, phi = parse_note(marked)
            note = {"id": f"{path.stem}-{i:03d}", "lang": lang, "style": style, "text": text, "phi": phi}
            check(note)
            notes.append(note)
    if write:
        with JSONL.open("w", encoding="utf-8") as f:
            for n in notes:
                f.write(json.dumps(n, ensure_ascii=False) + "\n")
    return notes


def load() -> list[dict]:
    """The notes from notes.jsonl (built from the sources in memory when it is absent; loading never writes, and
    tests/test_deid_independent.py checks that the file is what the sources build to)."""
    if not JSONL.exists():
        return build(write=False)
    with JSONL.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_uner() -> list[dict]:
    """UniversalNER test sentences with a person (empty list when the files are absent)."""
    rows = []
    for path in sorted(DIR.glob("uner_*.jsonl")):
        with path.open(encoding="utf-8") as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


def uner_sentences(iob2: str, lang: str, prefix: str) -> list[dict]:
    """Sentences of a UniversalNER .iob2 file that contain a PER entity, PER spans as NAME with character offsets.

    Tokens are located in the sentence's ``# text`` line in order (Chinese text has no spaces between tokens)."""
    rows = []
    for block in iob2.strip().split("\n\n"):
        text, sent_id, tokens = None, None, []
        for line in block.splitlines():
            if line.startswith("# text = "):
                text = line[len("# text = "):]
            elif line.startswith("# sent_id = "):
                sent_id = line[len("# sent_id = "):]
            elif line and not line.startswith("#"):
                cols = line.split("\t")
                tokens.append((cols[1], cols[2]))
        if text is None or not any(tag.endswith("PER") for _, tag in tokens):
            continue
        spans, pos, current = [], 0, None
        for word, tag in tokens:
            start = text.index(word, pos)
            pos = start + len(word)
            if tag == "B-PER" or (tag == "I-PER" and current is None):
                current = [start, pos]
                spans.append(current)
            elif tag == "I-PER":
                current[1] = pos
            else:
                current = None
        phi = [{"start": a, "end": b, "type": "NAME", "text": text[a:b]} for a, b in spans]
        rows.append({"id": f"{prefix}-{sent_id}", "lang": lang, "text": text, "phi": phi})
    return rows


def counts(notes: list[dict]) -> dict:
    """Notes per language (with and without PHI) and PHI spans per language and type."""
    per_lang = Counter(n["lang"] for n in notes)
    phi_free = Counter(n["lang"] for n in notes if not n["phi"])
    spans = Counter((n["lang"], s["type"]) for n in notes for s in n["phi"])
    styles = Counter((n["lang"], n["style"]) for n in notes)
    return {
        "notes": dict(per_lang),
        "phi_free_notes": dict(phi_free),
        "spans": {lang: {t: spans[(lang, t)] for t in TYPES} for lang in sorted(per_lang)},
        "styles": {lang: {st: c for (lg, st), c in sorted(styles.items()) if lg == lang} for lang in sorted(per_lang)},
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--uner":
        # .venv/bin/python bench/deid_independent.py --uner FILE.iob2 en|zh  (writes uner_<lang>.jsonl)
        path, lang = Path(sys.argv[2]), sys.argv[3]
        rows = uner_sentences(path.read_text(encoding="utf-8"), lang, path.stem)
        out = DIR / f"uner_{lang}.jsonl"
        with out.open("w", encoding="utf-8") as f:
            for r in rows:
                check({**r, "style": "uner"})
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"wrote {out.name}: {len(rows)} sentences, {sum(len(r['phi']) for r in rows)} person spans")
        return
    notes = build()
    c = counts(notes)
    print(f"wrote {JSONL.relative_to(DIR.parents[1])}: {len(notes)} notes {c['notes']}, PHI-free {c['phi_free_notes']}")
    print("type       " + "  ".join(f"{lang:>5}" for lang in c["spans"]))
    for t in TYPES:
        print(f"{t:<10} " + "  ".join(f"{c['spans'][lang][t]:>5}" for lang in c["spans"]))
    for lang, st in c["styles"].items():
        print(lang, ", ".join(f"{k} {v}" for k, v in st.items()))


if __name__ == "__main__":
    sys.exit(main())
