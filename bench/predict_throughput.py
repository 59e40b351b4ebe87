"""Throughput of goldloop's batched /predict path vs the common per-task pattern, in one process run.

Baseline: a Hugging Face ``pipeline("token-classification", aggregation_strategy="simple")`` called once
per task — same weights, same threads. Also: single-document /predict latency over HTTP (waitress),
model FLOP/s against the machine's measured fp32 matmul peak, and the entity-F1 cost of int8 (ONNX Runtime,
the default int8 mode, and PyTorch dynamic quantization) and bf16. Paths are timed interleaved, best of
--repeats passes each. ``--device`` (auto, cpu, cuda, cuda:N) is where the fine-tune and the fp32/bf16 paths run;
the int8 paths are CPU paths on any device. The device is printed and recorded.

    .venv/bin/python bench/predict_throughput.py [--data DIR] [--docs N] [--model PATH] [--device auto] [--out JSON]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ml_backend.models import Examples, TokenClassifier  # noqa: E402
from ml_backend.models.torch_utils import available_cores, device_name, set_process_device, set_torch_threads  # noqa: E402
from server.config import Settings, default_model  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
NCBI_LABELS = ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"]
NCBI_CONFIG = "<View><Labels name='entities' toName='text'>" + "".join(f"<Label value='{x}'/>" for x in NCBI_LABELS) + "</Labels><Text name='text' value='$text'/></View>"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def matmul_peak(n: int = 2048, reps: int = 5, device: str = "cpu") -> float:
    """Measured fp32 matmul GFLOP/s on the device (best of reps)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    torch.mm(a, b)
    sync()
    best = min(_timed(lambda: (torch.mm(a, b), sync())) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def model_flops(model: TokenClassifier, texts: list[str]) -> float:
    """FLOPs of goldloop's forward passes over texts: linear layers (2·params·tokens) + attention (4·L·T²·H)."""
    cfg = model.model.config
    linear_params = sum(m.weight.numel() for m in model.model.modules() if isinstance(m, torch.nn.Linear))
    ids, _ = model.tokenize(texts)
    total = 0.0
    from ml_backend.alignment import windows

    for doc in ids:
        for a, b in windows(len(doc), model.max_length - 2, model.stride):
            t = b - a + 2
            total += 2 * linear_params * t + 4 * cfg.num_hidden_layers * t * t * cfg.hidden_size
    return total


def entity_f1(gold: list[list[tuple]], pred: list[list[tuple]]) -> float:
    tp = fp = fn = 0
    for g, p in zip(gold, pred):
        g, p = set(g), set(p)
        tp, fp, fn = tp + len(g & p), fp + len(p - g), fn + len(g - p)
    return 2 * tp / max(1, 2 * tp + fp + fn)


def finetune(train: list[dict], out: Path, epochs: int) -> tuple[Path, dict]:
    m = TokenClassifier(NCBI_LABELS, model_name=default_model(), train_length=128)
    info = m.fit(Examples([d["text"] for d in train], [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in train]), epochs=epochs, lr=1e-4)
    m.save(out)
    print(f"fine-tuned on {len(train)} docs in {info['seconds']} s ({info['steps']} steps, {info['device']})")
    return out, {"docs": len(train), "epochs": epochs, "steps": info["steps"], "seconds": info["seconds"], "device": info["device"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_latency(model_dir: Path, texts: list[str], quantize: str, n: int, device: str = "auto") -> dict:
    """p50/p95 of single-document /predict over HTTP against a waitress-served backend."""
    import requests
    import waitress

    from ml_backend import create_app
    from ml_backend.models import load_model
    from ml_backend.registry import ProjectModel
    from ml_backend.schema import parse_label_config

    settings = Settings(home=Path(os.environ.get("TMPDIR", "/tmp")) / f"goldloop-bench-{os.getpid()}", cache_size=0, quantize=quantize,
                        device=device)
    app = create_app(settings.backend_settings())
    spec = parse_label_config(NCBI_CONFIG)
    state = app.extensions["goldloop"]
    pm = ProjectModel(spec, f"bench-{quantize}", {"entities": load_model(model_dir, quantize=quantize)})
    state.registry.install("1", pm)
    state.specs["1"] = spec
    port = free_port()
    server = waitress.create_server(app, host="127.0.0.1", port=port, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}/predict"
    sess = requests.Session()
    times = []
    for i in range(n):
        body = {"project": "1.0", "label_config": NCBI_CONFIG, "tasks": [{"id": i, "data": {"text": texts[i % len(texts)]}}]}
        t0 = time.perf_counter()
        r = sess.post(url, json=body, timeout=60)
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
    server.close()
    times = times[3:]
    return {"p50_ms": 1000 * statistics.median(times), "p95_ms": 1000 * float(np.percentile(times, 95)), "requests": len(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else ROOT / "tests" / "data")
    ap.add_argument("--docs", type=int, default=100, help="medical test documents to predict")
    ap.add_argument("--model", type=Path, default=None, help="a fine-tuned token classifier dir (default: fine-tune one now)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train-docs", type=int, default=300)
    ap.add_argument("--http-requests", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per path (interleaved; best counts)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when torch sees one), cpu, cuda or cuda:N")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "predict_throughput.json")
    args = ap.parse_args()

    device = set_process_device(args.device)  # every model below runs there (the int8 twins on the CPU)
    print(f"device {device_name(device)}")
    threads = set_torch_threads(0)
    ncbi = args.data / "ncbi_disease"
    train, test = read_jsonl(ncbi / "train.jsonl")[: args.train_docs], read_jsonl(ncbi / "test.jsonl")[: args.docs]
    texts = [d["text"] for d in test]
    gold = [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in test]
    model_dir, fit = (args.model, None) if args.model else finetune(train, ROOT / "bench" / "results" / "ncbi-token-classifier", args.epochs)

    fp32 = TokenClassifier.load(model_dir, batch_size=16)
    served = {  # name in the table -> the model goldloop serves with that --quantize mode
        "goldloop batched fp32": fp32,
        "goldloop batched int8 (ONNX Runtime)": TokenClassifier.load(model_dir, batch_size=16, quantize="int8"),
        "goldloop batched int8-torch": TokenClassifier.load(model_dir, batch_size=16, quantize="int8-torch"),
        "goldloop batched bf16": TokenClassifier.load(model_dir, batch_size=16, quantize="bf16"),
    }
    from transformers import pipeline

    pipe = pipeline("token-classification", model=fp32.model, tokenizer=fp32.tokenizer, aggregation_strategy="simple", device=fp32.device)

    def per_task():
        return [pipe(t) for t in texts]

    tokens = sum(len(x) for x in fp32.tokenize(texts)[0])
    paths = {"per-task HF pipeline (baseline)": per_task, **{k: (lambda m=m: m.predict(texts)) for k, m in served.items()}}
    per_task()  # warm-up
    for m in served.values():
        m.predict(texts[:4])
    best = {k: float("inf") for k in paths}
    peak = 0.0
    for rep in range(args.repeats):  # interleaved, best of repeats: the machine's drift hits every path alike
        peak = max(peak, matmul_peak(device=str(device)))  # the peak too, so the share of peak compares like with like
        for k, fn in paths.items():
            if rep and "bf16" in k:
                continue  # ~25x slower than fp32 on CPUs without bf16 units: once is enough to show it
            best[k] = min(best[k], _timed(fn))
    rows = list(best.items())
    base_s, fp_s = best["per-task HF pipeline (baseline)"], best["goldloop batched fp32"]

    flops = model_flops(fp32, texts)
    f1 = {k.replace("goldloop batched ", "").split(" ")[0]: entity_f1(gold, [[sp.key() for sp in p.spans] for p in m.predict(texts)])
          for k, m in served.items()}
    f1_fp32 = f1["fp32"]
    latency = {q: http_latency(model_dir, texts, q, args.http_requests, args.device) for q in ("none", "int8", "int8-torch")}
    latency["fp32"] = latency.pop("none")

    # long contract: one CUAD contract (tens of thousands of characters) through the windowed path
    long_case = None
    cuad = args.data / "cuad" / "cuad_contracts_spans.jsonl"
    if cuad.exists():
        with cuad.open(encoding="utf-8") as fh:
            contract = json.loads(fh.readline())["text"]
        n_tok = len(fp32.tokenize([contract])[0][0])
        long_case = {"chars": len(contract), "tokens": n_tok, "windows": len(fp32.windows_for(n_tok)),
                     **{f"{q}_s": _timed(lambda m=served[k]: m.predict([contract]))
                        for q, k in (("fp32", "goldloop batched fp32"), ("int8", "goldloop batched int8 (ONNX Runtime)"),
                                     ("int8_torch", "goldloop batched int8-torch"))}}

    result = {
        "machine": {"cores": available_cores(), "torch_threads": threads, "torch": torch.__version__, "device": device_name(device)},
        "finetune": fit,
        "docs": len(texts), "tokens": tokens, "data": str(ncbi),
        "throughput_docs_per_s": {name: len(texts) / s for name, s in rows},
        "speedup_vs_per_task": {name: base_s / s for name, s in rows},
        "fp32_matmul_peak_gflops": peak,
        "model_gflops_fp32_path": flops / fp_s / 1e9,
        "fp32_share_of_peak": flops / fp_s / 1e9 / peak,
        "entity_f1": f1,
        "entity_f1_loss_points": {k: 100 * (f1_fp32 - v) for k, v in f1.items() if k != "fp32"},
        "http_single_doc": latency,
        "long_contract": long_case,
    }
    print(f"\n{'path':<40}{'docs/s':>10}{'speedup':>10}")
    for name, s in rows:
        print(f"{name:<40}{len(texts) / s:>10.1f}{base_s / s:>10.2f}x")
    print(f"\n{device_name(device)} fp32 matmul peak {peak:.0f} GFLOP/s; goldloop fp32 path {flops / fp_s / 1e9:.0f} GFLOP/s = {100 * flops / fp_s / 1e9 / peak:.0f}% of peak")
    print("entity F1 " + "  ".join(f"{k} {v:.4f}" + ("" if k == "fp32" else f" (loss {100 * (f1_fp32 - v):.2f} points)")
                                   for k, v in f1.items()))
    for k, v in result["http_single_doc"].items():
        print(f"HTTP single-document /predict {k}: p50 {v['p50_ms']:.1f} ms, p95 {v['p95_ms']:.1f} ms")
    if long_case:
        print(f"long contract ({long_case['chars']} chars, {long_case['tokens']} tokens, {long_case['windows']} windows): "
              f"fp32 {long_case['fp32_s']:.2f} s, int8 {long_case['int8_s']:.2f} s, int8-torch {long_case['int8_torch_s']:.2f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
