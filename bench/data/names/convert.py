"""Convert the annotated corpora in this folder's README to the compact extracts bench/train_names.py reads.

    .venv/bin/python bench/data/names/convert.py MIRRORS

MIRRORS holds one bare git directory per corpus, named owner+name/repo (what the fetch tool writes, e.g.
/work/.mirror); each is read at the commit pinned in SOURCES, so a rerun writes the same bytes. Every record is one
document (a tweet, an English web-text document, a Chinese sentence) as {"text": ..., "names": [[start, end], ...]}:
tokens joined with a space (English) or nothing (Chinese), and the character spans of the person entities. Every
other entity type counts as no name. Only PERSON labels are kept; the text is kept as published.
"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (output name, repository, commit, file, token column, label column, person label, "en"/"zh")
SOURCES = (
    ("wnut17-train", "leondz/emerging_entities_17", "e52a2d2a71ac1a051ca2d532eef28653c5c02603", "wnut17train.conll",
     0, 1, "person", "en"),
    ("wnut17-dev", "leondz/emerging_entities_17", "e52a2d2a71ac1a051ca2d532eef28653c5c02603", "emerging.dev.conll",
     0, 1, "person", "en"),
    ("wnut17-test", "leondz/emerging_entities_17", "e52a2d2a71ac1a051ca2d532eef28653c5c02603",
     "emerging.test.annotated", 0, 1, "person", "en"),
    ("btc-train", "GateNLP/broad_twitter_corpus", "0c45ef7b1924a6b8115bceab388781590b1b553a",
     "train_dev_test_conll/btc.train", 0, 1, "PER", "en"),
    ("btc-dev", "GateNLP/broad_twitter_corpus", "0c45ef7b1924a6b8115bceab388781590b1b553a",
     "train_dev_test_conll/btc.dev", 0, 1, "PER", "en"),
    ("btc-test", "GateNLP/broad_twitter_corpus", "0c45ef7b1924a6b8115bceab388781590b1b553a",
     "train_dev_test_conll/btc.test", 0, 1, "PER", "en"),
    ("ewt-dev", "UniversalNER/UNER_English-EWT", "8ed072de2fd24022cc62458997fe96a8fe191ea4", "en_ewt-ud-dev.iob2",
     1, 2, "PER", "en"),
    ("ewt-test", "UniversalNER/UNER_English-EWT", "8ed072de2fd24022cc62458997fe96a8fe191ea4", "en_ewt-ud-test.iob2",
     1, 2, "PER", "en"),
    ("gsdsimp-train", "UniversalNER/UNER_Chinese-GSDSIMP", "1f0307599dece7b83f4cba90ce9b63ef37a7b162",
     "zh_gsdsimp-ud-train.iob2", 1, 2, "PER", "zh"),
    ("gsdsimp-dev", "UniversalNER/UNER_Chinese-GSDSIMP", "1f0307599dece7b83f4cba90ce9b63ef37a7b162",
     "zh_gsdsimp-ud-dev.iob2", 1, 2, "PER", "zh"),
    ("gsdsimp-test", "UniversalNER/UNER_Chinese-GSDSIMP", "1f0307599dece7b83f4cba90ce9b63ef37a7b162",
     "zh_gsdsimp-ud-test.iob2", 1, 2, "PER", "zh"),
)


def blocks(raw: str, tok_col: int, lab_col: int, lang: str) -> list[list[tuple[str, str]]]:
    """Token/label lists, one per document: a blank line ends a tweet; UD files group sentences by '# newdoc'
    (English) or keep one sentence per record (Chinese)."""
    docs, cur, ud = [], [], tok_col == 1
    for line in raw.splitlines():
        if line.startswith("# newdoc") and ud and lang == "en":
            if cur:
                docs.append(cur)
            cur = []
            continue
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur and not (ud and lang == "en"):
                docs.append(cur)
                cur = []
            continue
        cols = line.split("\t")
        if ud and not cols[0].isdigit():  # multi-word token ranges (3-4) and empty nodes (3.1) are no tokens
            continue
        cur.append((cols[tok_col], cols[lab_col] if len(cols) > lab_col else "O"))
    if cur:
        docs.append(cur)
    return docs


def record(tokens: list[tuple[str, str]], person: str, lang: str) -> dict:
    sep = " " if lang == "en" else ""
    text, names = "", []
    for tok, label in tokens:
        if text:
            text += sep
        start = len(text)
        text += tok
        if label == f"B-{person}" or (label == f"I-{person}" and not (names and names[-1][1] == start - len(sep))):
            names.append([start, len(text)])
        elif label == f"I-{person}":
            names[-1][1] = len(text)
    return {"text": text, "names": names}


def main(argv: list[str]) -> int:
    mirrors = Path(argv[0]) if argv else Path("/work/.mirror")
    for out, repo, commit, path, tok_col, lab_col, person, lang in SOURCES:
        git_dir = mirrors / repo.replace("/", "+") / "repo"
        raw = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], check=True,
                             capture_output=True).stdout.decode("utf-8")
        docs = [record(d, person, lang) for d in blocks(raw, tok_col, lab_col, lang)]
        # mtime 0 in the gzip header: the same input writes the same bytes
        with open(HERE / f"{out}.jsonl.gz", "wb") as raw_out, gzip.GzipFile(fileobj=raw_out, mode="wb",
                                                                              mtime=0, filename="") as f:
            for doc in docs:
                f.write((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))
        print(f"{out}: {len(docs)} documents, {sum(len(d['names']) for d in docs)} names")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
