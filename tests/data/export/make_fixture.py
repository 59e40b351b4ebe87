"""Rebuild tasks.json (Label Studio task-export shape) from the source corpora; run by hand, never by tests.

Usage: python tests/data/export/make_fixture.py /work/shared/data
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
EN_IDS = ["9856499", "8678979", "9831355", "8661102", "9090524", "9450866", "9744473", "8589722", "8696339", "9554743"]
ZH_IDS = ["cMedQANER_test_00000", "cMedQANER_test_00001", "cMedQANER_test_00002", "cMedQANER_test_00003",
          "cMedQANER_test_00007"]
# topic per document: annotator 1, annotator 2 (3 disagreements, hand-checked kappa in tests/test_agreement.py)
TOPIC_A = ["hereditary", "hereditary", "cancer", "hereditary", "cancer", "hereditary", "hereditary", "cancer",
           "hereditary", "hereditary", "other", "other", "cancer", "other", "other"]
TOPIC_B = ["hereditary", "cancer", "cancer", "hereditary", "cancer", "other", "hereditary", "cancer",
           "hereditary", "hereditary", "other", "other", "cancer", "cancer", "other"]


def task_ids(n: int) -> list[int]:
    """n task ids, the smallest that give roughly 9 train, 3 dev, 3 test documents (splits.split_of)."""
    sys.path.insert(0, str(HERE.parents[2]))
    from ml_backend.splits import split_of

    quota = {"train": n - 2 * (n // 5), "dev": n // 5, "test": n // 5}
    out, i = [], 0
    while len(out) < n:
        i += 1
        if quota[split_of(i)] > 0:
            quota[split_of(i)] -= 1
            out.append(i)
    return out


def first_sentences(doc: dict, limit: int = 320) -> dict:
    """Cut a document after the last sentence end before `limit` chars; keep the spans inside."""
    text = doc["text"]
    cut = len(text)
    if len(text) > limit:
        cut = text.rfind(". ", 0, limit) + 1 or limit
    spans = [s for s in doc["spans"] if s["end"] <= cut]
    return {"id": doc["id"], "text": text[:cut], "spans": spans}


def result_of(doc: dict, topic: str, aspects: list[str], drop: int | None = None) -> list[dict]:
    """Label Studio result items for a document's spans and choices."""
    out = []
    for i, s in enumerate(doc["spans"]):
        if drop is not None and i == drop:
            continue
        out.append({"id": f"{doc['id']}-{i}", "from_name": "entities", "to_name": "text", "type": "labels",
                    "value": {"start": s["start"], "end": s["end"], "text": doc["text"][s["start"]:s["end"]],
                              "labels": [s["label"]]}})
    out.append({"id": f"{doc['id']}-topic", "from_name": "topic", "to_name": "text", "type": "choices",
                "value": {"choices": [topic]}})
    if aspects:
        out.append({"id": f"{doc['id']}-aspects", "from_name": "aspects", "to_name": "text", "type": "choices",
                    "value": {"choices": aspects}})
    return out


def main(root: Path) -> None:
    """Write tasks.json."""
    def load(path: Path, ids: list[str]) -> list[dict]:
        rows = {d["id"]: d for d in map(json.loads, path.read_text(encoding="utf-8").splitlines())}
        return [first_sentences(rows[i]) for i in ids if i in rows]

    en_rows = load(root / "ncbi_disease/test.jsonl", EN_IDS) + load(root / "ncbi_disease/dev.jsonl", EN_IDS)
    en = sorted(en_rows, key=lambda d: EN_IDS.index(d["id"]))
    zh = load(root / "zh_cmedqaner/test.jsonl", ZH_IDS)
    docs = en + zh
    tasks = []
    for n, (doc, tid) in enumerate(zip(docs, task_ids(len(docs)))):
        aspects = ["genetic"] if n < 10 and "gene" in doc["text"] else (["clinical"] if n >= 10 else [])
        res_a = result_of(doc, TOPIC_A[n], aspects)
        drop = 0 if n in (2, 6, 11) and len(doc["spans"]) > 1 else None
        res_b = result_of(doc, TOPIC_B[n], aspects, drop=drop)
        # annotator 2 updates later on even tasks, annotator 1 on odd tasks
        t_a = f"2026-11-2{1 + (n % 2)}T05:58:28.513430Z"
        t_b = f"2026-11-2{2 - (n % 2)}T06:10:00.000000Z"
        # every third task was pre-annotated; its latest annotation accepted the prediction (even n: annotator 2
        # saved it unchanged) or changed it (odd n: annotator 1 added the choices)
        preds, parent_a, parent_b = [], None, None
        if n % 3 == 0:
            base = res_b if n % 2 == 0 else [r for r in res_a if r["from_name"] == "entities"]
            preds = [{"id": 900 + tid, "model_version": f"m-{1 + n % 2}", "score": round(0.5 + n / 100, 2),
                      "result": [dict(r, id=f"p{r['id']}") for r in base]}]
            parent_a, parent_b = (None, 900 + tid) if n % 2 == 0 else (900 + tid, None)
        anns = [
            {"id": 1000 + tid, "completed_by": 1, "result": res_a, "was_cancelled": False, "ground_truth": n == 4,
             "created_at": t_a, "updated_at": t_a, "lead_time": 3.2, "parent_prediction": parent_a},
            {"id": 2000 + tid, "completed_by": {"id": 2, "email": "annotator2@example.org"}, "result": res_b,
             "was_cancelled": False, "ground_truth": False, "created_at": t_b, "updated_at": t_b, "lead_time": 5.0,
             "parent_prediction": parent_b},
        ]
        if n == 7:
            anns.append({"id": 3000 + tid, "completed_by": 3, "result": [], "was_cancelled": True,
                         "ground_truth": False, "created_at": t_b, "updated_at": t_b, "lead_time": 0.4,
                         "parent_prediction": None})
        tasks.append({"id": tid, "data": {"text": doc["text"], "source_id": doc["id"]},
                      "meta": {}, "annotations": anns, "predictions": preds})
    (HERE / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data"))
