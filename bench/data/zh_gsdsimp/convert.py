"""Convert UniversalNER Chinese-GSDSIMP (CC BY-SA 4.0) to the span files server/starters/build.py and
bench/annotation_effort.py read: ``{"id", "text", "spans": [{"start", "end", "label"}]}``, one sentence a line, with
the PER, ORG and LOC spans (the label map to Person / Company / Location is the starter's, in build.py).

    .venv/bin/python -m bench.data.zh_gsdsimp.convert [MIRRORS]   # default /work/.mirror

Reads the bare clone at the pinned commit with bench/data/names/convert.py's parser, so a rerun writes the same bytes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.data.names.convert import blocks

HERE = Path(__file__).resolve().parent
REPO, COMMIT = "UniversalNER/UNER_Chinese-GSDSIMP", "1f0307599dece7b83f4cba90ce9b63ef37a7b162"
SPLITS = {"train": "zh_gsdsimp-ud-train.iob2", "test": "zh_gsdsimp-ud-test.iob2"}  # dev: not needed


def spans(tokens: list[tuple[str, str]]) -> dict:
    """Tokens joined with nothing; a B- tag, or an I- tag that does not continue a span of its type, opens a span."""
    text, out = "", []
    for tok, tag in tokens:
        start, text = len(text), text + tok
        kind = tag[2:] if tag[:2] in ("B-", "I-") else None
        if kind and tag.startswith("I-") and out and out[-1]["label"] == kind and out[-1]["end"] == start:
            out[-1]["end"] = len(text)
        elif kind:
            out.append({"start": start, "end": len(text), "label": kind})
    return {"text": text, "spans": out}


def main(argv: list[str]) -> int:
    git_dir = Path(argv[0] if argv else "/work/.mirror") / REPO.replace("/", "+") / "repo"
    show = lambda path: subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{COMMIT}:{path}"], check=True,  # noqa: E731
                                       capture_output=True).stdout.decode("utf-8")
    for split, path in SPLITS.items():
        docs = [spans(d) for d in blocks(show(path), 1, 2, "zh")]
        with (HERE / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for i, d in enumerate(docs):
                fh.write(json.dumps({"id": f"{split}-{i:05d}", **d}, ensure_ascii=False) + "\n")
        print(f"{split}: {len(docs)} sentences, {sum(len(d['spans']) for d in docs)} entities")
    (HERE / "LICENSE.txt").write_text(
        "License for dataset 'zh_gsdsimp': Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0), "
        "https://creativecommons.org/licenses/by-sa/4.0/legalcode\n\n"
        "Attribution: Stephen Mayhew, Terra Blevins, Shuheng Liu, Marek Suppa, Hila Gonen, Joseph Marvin Imperial, "
        "Borje F. Karlsson, Peiqin Lin, Nikola Ljubesic, LJ Miranda, Barbara Plank, Arij Riabi, Yuval Pinter (2024), "
        "Universal NER: A Gold-Standard Multilingual Named Entity Recognition Benchmark, NAACL 2024 "
        "(https://aclanthology.org/2024.naacl-long.243/); on the Universal Dependencies treebank UD_Chinese-GSDSimp.\n"
        "Changes: IOB2 tags converted to character spans (tokens joined with nothing), one sentence per record; the "
        "starter maps ORG/PER/LOC to Company/Person/Location. ShareAlike: this extract is distributed under CC BY-SA 4.0.\n\n"
        f"Data source: github {REPO} @ {COMMIT}: {', '.join(SPLITS.values())}\n\n"
        + "-" * 78 + f"\nVerbatim copy of LICENSE.txt from github {REPO} @ {COMMIT}:\n" + "-" * 78 + "\n"
        + show("LICENSE.txt"), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
