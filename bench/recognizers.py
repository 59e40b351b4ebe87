"""The built-in pattern recognizers (ml_backend/models/recognizers.py) on CUAD v1's 510 contracts: suggestions per
contract for every kind, and recall / precision against CUAD's clause and answer spans where those mean something.
Prints a table and writes JSON.

    .venv/bin/python bench/recognizers.py [--data /work/shared/data] [--out bench/results/recognizers.json] [--show 0]

Each kind runs alone (as in a project with that one label). CUAD marks one occurrence per answer and only the
clauses of its 41 categories, not every party, date or amount, so every precision here is a lower bound: a
suggestion outside CUAD's marks may still be right. Matching by string (Party) ignores case, quotes and spacing.
``--show N`` prints N random suggestions per kind with context, for checking precision by hand where CUAD has no
marks (Date, Amount, Percent).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml_backend.models.recognizers import RECOGNIZERS, recognize  # noqa: E402

TERM_CLAUSES = ("Expiration Date", "Renewal Term")


def norm(s: str) -> str:
    return " ".join(re.sub(r"[\"“”'‘’(),.;:]", " ", s).casefold().split())


def inside(span: tuple[int, int], marks: list[tuple[int, int]]) -> bool:
    return any(a <= span[0] and span[1] <= b for a, b in marks)


def overlaps(span: tuple[int, int], marks: list[tuple[int, int]]) -> bool:
    return any(span[0] < b and a < span[1] for a, b in marks)


def share(hit: int, n: int) -> float | None:
    return round(hit / n, 3) if n else None


def load(data: Path) -> list[dict]:
    path = data / "cuad" / "cuad_contracts_spans.jsonl"
    if not path.is_file():
        sys.exit(f"error: {path} not found (pass --data, the folder that holds cuad/)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(docs: list[dict], show: int, seed: int = 0) -> dict:
    found: dict[str, list[list[tuple[int, int]]]] = {}
    seconds = {}
    for rec in RECOGNIZERS:
        t0 = time.perf_counter()
        found[rec.kind] = [[(s.start, s.end) for s in recognize(d["text"], {rec.kind: rec})] for d in docs]
        seconds[rec.kind] = time.perf_counter() - t0
    marks = [defaultdict(list) for _ in docs]
    for m, d in zip(marks, docs):
        for s in d["spans"]:
            m[s["label"]].append((s["start"], s["end"]))

    out = {}
    for rec in RECOGNIZERS:
        per = [len(f) for f in found[rec.kind]]
        out[rec.kind] = {"suggestions": sum(per), "per_contract_mean": round(statistics.mean(per), 2),
                         "per_contract_median": statistics.median(per),
                         "contracts_with_any": share(sum(1 for n in per if n), len(per)),
                         "seconds": round(seconds[rec.kind], 2), "score": rec.score}

    # Party: CUAD "Parties" answers are names and roles, each marked once
    hit = n = good = total = 0
    for d, m, f in zip(docs, marks, found["Party"]):
        answers = [norm(d["text"][a:b]) for a, b in m["Parties"]]
        sugg = [norm(d["text"][a:b]) for a, b in f]
        n += len(answers)
        hit += sum(1 for a in answers if any(s and (s == a or f" {s} " in f" {a} ") for s in sugg))
        total += len(sugg)
        good += sum(1 for s in sugg if any(s and f" {s} " in f" {a} " for a in answers))
    out["Party"].update(recall=share(hit, n), recall_of=f"{n} CUAD Parties answers a suggestion equals or lies inside",
                        precision=share(good, total), precision_of="suggestions inside a CUAD Parties answer (lower bound)")

    # Date: the agreement / effective date answers; "written" = those with a year and no blank to fill in
    for label in ("Agreement Date", "Effective Date"):
        spans = [(d, sp, f) for d, m, f in zip(docs, marks, found["Date"]) for sp in m[label]]
        written = [x for x in spans if re.search(r"\d{4}", x[0]["text"][x[1][0]:x[1][1]]) and "_" not in x[0]["text"][x[1][0]:x[1][1]]]
        key = label.split()[0].casefold()
        out["Date"][f"recall_{key}"] = share(sum(1 for _, sp, f in spans if any(inside(s, [sp]) for s in f)), len(spans))
        out["Date"][f"recall_{key}_written"] = share(sum(1 for _, sp, f in written if any(inside(s, [sp]) for s in f)), len(written))
        out["Date"][f"n_{key}"], out["Date"][f"n_{key}_written"] = len(spans), len(written)

    # Governing law: the clause should hold a suggestion; a suggestion should lie in the clause
    clauses = [(sp, f) for m, f in zip(marks, found["Governing law"]) for sp in m["Governing Law"]]
    sugg = [(s, m["Governing Law"]) for m, f in zip(marks, found["Governing law"]) for s in f]
    out["Governing law"].update(
        recall=share(sum(1 for sp, f in clauses if any(inside(s, [sp]) for s in f)), len(clauses)),
        recall_of=f"{len(clauses)} CUAD Governing Law clauses holding a suggestion",
        precision=share(sum(1 for s, gl in sugg if inside(s, gl)), len(sugg)),
        precision_of="suggestions inside a CUAD Governing Law clause (lower bound)")

    # Term: the agreement's duration sits in CUAD's Expiration Date / Renewal Term clauses (not all state one)
    clauses = [(sp, f) for m, f in zip(marks, found["Term"]) for lab in TERM_CLAUSES for sp in m[lab]]
    sugg = [(s, [sp for lab in TERM_CLAUSES for sp in m[lab]]) for m, f in zip(marks, found["Term"]) for s in f]
    out["Term"].update(
        recall=share(sum(1 for sp, f in clauses if any(inside(s, [sp]) for s in f)), len(clauses)),
        recall_of=f"{len(clauses)} CUAD Expiration Date / Renewal Term clauses holding a suggestion (not all state a duration)",
        precision=share(sum(1 for s, c in sugg if inside(s, c)), len(sugg)),
        precision_of="suggestions inside an Expiration Date / Renewal Term clause (lower bound: notice periods miss)")

    for kind in ("Amount", "Percent", "Dosage"):
        sugg = [(s, [sp for v in m.values() for sp in v]) for m, f in zip(marks, found[kind]) for s in f]
        out[kind]["inside_any_cuad_clause"] = share(sum(1 for s, c in sugg if overlaps(s, c)), len(sugg))

    if show:
        rng = random.Random(seed)
        for rec in RECOGNIZERS:
            pool = [(i, s) for i, f in enumerate(found[rec.kind]) for s in f]
            print(f"\n== {rec.kind}: {min(show, len(pool))} of {len(pool)}")
            for i, (a, b) in rng.sample(pool, min(show, len(pool))):
                t = docs[i]["text"]
                print(f"  [{t[a:b]}]  …{' '.join(t[max(0, a - 50):b + 30].split())}…")
    return out


def table(res: dict, n_docs: int) -> str:
    rows = [f"{'kind':<14} {'sugg/contract':>13} {'contracts≥1':>11} {'recall':>7} {'precision':>9}  score"]
    for kind, r in res.items():
        rec = r.get("recall", r.get("recall_agreement"))
        prec = r.get("precision")
        rows.append(f"{kind:<14} {r['per_contract_mean']:>13} {r['contracts_with_any']:>11} "
                    f"{'' if rec is None else rec:>7} {'' if prec is None else prec:>9}  {r['score']}")
    d = res["Date"]
    rows.append(f"Date recall: Agreement Date {d['recall_agreement']} ({d['n_agreement']}; with a written date "
                f"{d['recall_agreement_written']} of {d['n_agreement_written']}), Effective Date {d['recall_effective']} "
                f"({d['n_effective']}; written {d['recall_effective_written']} of {d['n_effective_written']})")
    rows.append(f"{n_docs} CUAD v1 contracts; precision = inside CUAD's marks, a lower bound")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"), help="folder holding cuad/")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "recognizers.json")
    ap.add_argument("--show", type=int, default=0, help="print N random suggestions per kind, for a hand check")
    args = ap.parse_args(argv)
    docs = load(args.data)
    res = run(docs, args.show)
    print(table(res, len(docs)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dataset": "CUAD v1 (CC BY 4.0), cuad_contracts_spans.jsonl",
                                    "contracts": len(docs), "kinds": res}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
