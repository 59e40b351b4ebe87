"""Property-based fuzzing of every backend route: never a 5xx, always JSON, the app healthy afterwards.

Hypothesis draws requests to /setup, /predict, /webhook, /versions, /metrics, /health, /openapi.json and
unknown paths: random bytes, random JSON (NUL bytes, lone surrogates, huge numbers, deep nesting), valid
Label Studio requests with random fields, truncated and strange labeling configs (no Text, two Texts,
unknown tags, DOCTYPEs, billion laughs), wrong content types and 10 MB bodies. tests/test_fuzz_backend.py
runs a few hundred cases in every test run; this script runs many more and prints a table. Then it sends the
outside probe's corpus (bench/fuzz_probe.py: long labeled spans by webhook, many-control configs, thousands of
choices, hundreds of new project ids) to a backend on the real encoder, and prints each case's status, seconds and
RSS, the RSS ceiling and the slowest request.

    .venv/bin/python bench/fuzz_backend.py [--cases 10000] [--seed 0] [--probe-model MODEL] [--out bench/results/fuzz_backend.json]
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SCHEMAS = sorted((ROOT / "schemas").glob("*.xml"))
CONFIGS = [p.read_text() for p in SCHEMAS]
ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "START_TRAINING", "TASKS_CREATED", "PROJECT_UPDATED"]
NASTY = ["\0", "\ud800", "\udfff", "\udc80x", "../", "..", "/", "\\", ".", "é", "中文", "\U0001f600", "\u202e", "%00", "$text", "<", "&amp;"]
STRANGE_CONFIGS = [
    '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    '<View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="&c;"/></Choices></View>',
    '<!DOCTYPE v [<!ENTITY x SYSTEM "file:///etc/passwd">]><View><Text name="t" value="&x;"/></View>',
    '<View><Choices name="c" toName="text"><Choice value="a"/></Choices></View>',
    '<View><Text name="a" value="$title"/><Text name="b" value="$body"/><Labels name="l" toName="a,b"><Label value="X"/></Labels>'
    '<Choices name="c" toName="b"><Choice value="y"/><Choice value="n"/></Choices></View>',
    '<View><Unknown foo="1"><Text name="t" value="$text"/></Unknown><Rating name="r" toName="t"/></View>',
    '<View><Text name="t" value="text"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>',
    '<View><Text name="t" value="$text"/><Choices name="c" toName="t"/></View>',
    '<View><Text name="t" value="$text"/><Labels name="../../x" toName="t"><Label value="A"/><Label value="A"/></Labels></View>',
    '<View><Text name="t" value="$text"/><Labels name="../../x" toName="t"><Label value="A"/></Labels></View>',
    "<View>" + "<V>" * 2000 + "</V>" * 2000 + "</View>",
    "<?xml-stylesheet href='x'?><View/>",
]
BIG = 10 * 1024 * 1024
RAW_BODIES = [
    b"", b"null", b"[]", b"1e999999", b"-0", b'"\\ud800"', b"\xff\xfe\xfd", b"\x00" * 64, b"{" * 50_000,
    b"[" * 200_000 + b"]" * 200_000, b'{"project": 1' + b"0" * 5000 + b"}", b'{"tasks": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
    b'{"project": "1.1", "tasks": ["' + b"x" * BIG + b'"]}',  # over the size limit: 413
    b'{"action": "START_TRAINING", "project": 1, "pad": "' + b"\\ud800" * (BIG // 6) + b'"}',
]

text = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(NASTY + list("ab1 .-_")), max_size=12).map("".join),
    st.sampled_from(NASTY),
)
numbers = st.one_of(st.integers(), st.integers(min_value=-10**40, max_value=10**40), st.sampled_from([0, -1, 2**63, 10**300]),
                    st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
                           max_leaves=12)
projects = st.one_of(
    st.sampled_from([1, 2, 3, "3.1795327106", "medical_records", None, "", 0, -1, True, 1.5, 10**20]),
    st.sampled_from(["/tmp/x", "../x", "1/../../x", "a\0b", "..", "/", "\ud800", "1.\ud800", "C:\\x"]),
    text, json_values,
)
configs = st.one_of(
    st.sampled_from(CONFIGS + STRANGE_CONFIGS),
    st.tuples(st.sampled_from(CONFIGS), st.integers(0, 2000)).map(lambda t: t[0][: t[1]]),  # truncated
    st.tuples(st.sampled_from(CONFIGS), st.sampled_from(NASTY)).map(lambda t: t[0].replace('"$text"', f'"${t[1]}"', 1)),
    text, json_values,
)
task_data = st.one_of(st.fixed_dictionaries({"text": st.one_of(text, st.text(max_size=300), json_values)},
                                            optional={"title": text, "body": text}),
                      json_values)
tasks = st.lists(st.one_of(st.fixed_dictionaries({"id": json_values, "data": task_data}), json_values), max_size=9)
result_items = st.lists(st.one_of(json_values, st.fixed_dictionaries({
    "from_name": st.sampled_from(["entities", "sentiment", "risk", "c", "x"]) | text, "to_name": st.just("text") | text,
    "type": st.sampled_from(["labels", "choices"]) | text,
    "value": st.fixed_dictionaries({}, optional={"start": numbers, "end": numbers, "text": text,
                                                 "labels": st.lists(text, max_size=2), "choices": st.lists(text, max_size=2)}),
})), max_size=4)


def _body(d: dict) -> bytes:
    return json.dumps(d, allow_nan=True).encode("utf-8")


def _optional(draw, d: dict, key: str, strategy) -> None:
    if draw(st.booleans()):
        d[key] = draw(strategy)


@st.composite
def requests(draw) -> dict:
    """One HTTP request: method, path, query bytes, body bytes, content type."""
    kind = draw(st.sampled_from(["setup", "predict", "predict", "webhook", "webhook", "get", "raw", "json"]))
    ctype = draw(st.sampled_from(["application/json"] * 20 + ["text/plain", "application/x-www-form-urlencoded",
                                                               "multipart/form-data; boundary=x", "application/json; charset=latin-1", None]))
    req = {"method": "POST", "query": b"", "ctype": ctype}
    if kind == "setup":
        d = {}
        _optional(draw, d, "project", projects)
        _optional(draw, d, "schema", configs)
        req.update(path="/setup", body=_body(d))
    elif kind == "predict":
        d = {"tasks": draw(tasks)} if draw(st.integers(0, 9)) else {}
        _optional(draw, d, "project", projects)
        _optional(draw, d, "label_config", configs)
        req.update(path="/predict", body=_body(d))
    elif kind == "webhook":
        d = {"action": draw(st.sampled_from(ACTIONS) | text)}
        _optional(draw, d, "project", st.one_of(projects, st.fixed_dictionaries({"id": projects})))
        if draw(st.booleans()):
            d["task"] = {"id": draw(json_values), "data": draw(task_data)}
            d["annotation"] = draw(st.one_of(json_values, st.fixed_dictionaries({"result": result_items},
                                                                                 optional={"was_cancelled": json_values})))
        req.update(path="/webhook", body=_body(d))
    elif kind == "get":
        path = draw(st.sampled_from(["/versions", "/versions", "/metrics", "/health", "/", "/openapi.json", "/nope", "/predict"]))
        query = draw(st.one_of(st.sampled_from([b"project=1", b"project=%00", b"project=../x", b"project=%ED%A0%80", b"project=%FF",
                                                b"project=/tmp/x&project=2", b"project=" + b"9" * 400]),
                               st.binary(max_size=40)))
        req.update(method="GET", path=path, query=query, body=b"", ctype=None)
    elif kind == "raw":
        req.update(path=draw(st.sampled_from(["/setup", "/predict", "/webhook"])),
                   body=draw(st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=200))))
    else:
        req.update(path=draw(st.sampled_from(["/setup", "/predict", "/webhook", "/health", "/versions"])),
                   body=_body(draw(json_values)), method=draw(st.sampled_from(["POST", "POST", "PUT", "DELETE", "PATCH"])))
    return req


def send(client, req: dict):
    headers = {"Content-Type": req["ctype"]} if req["ctype"] else {}
    # raw query bytes as the WSGI server hands them over (latin-1), so percent-escapes and invalid UTF-8 arrive as sent
    return client.open(req["path"], method=req["method"], data=req["body"], headers=headers,
                       environ_overrides={"QUERY_STRING": req["query"].decode("latin-1")})


def check(client, req: dict) -> int:
    """Send one request; assert the property (no 5xx, a JSON answer); return the status code."""
    resp = send(client, req)
    shown = {k: (v[:200] if isinstance(v, bytes) else v) for k, v in req.items()}
    assert resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True)[:500], shown)
    if not (req["path"] == "/metrics" and resp.status_code == 200):
        assert resp.is_json and isinstance(json.loads(resp.get_data()), dict), (resp.status_code, resp.content_type, shown)
    return resp.status_code


def assert_healthy(client, project: str | int = "1.1") -> None:
    """The app still answers /health, /metrics and a real prediction (of a project it accepts) after the fuzzing."""
    assert client.get("/health").json["status"] == "UP"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "goldloop_requests_total" in metrics.get_data(as_text=True)
    config = (ROOT / "schemas" / "financial_news.xml").read_text()
    resp = client.post("/predict", json={"project": project, "label_config": config, "tasks": [{"id": 1, "data": {"text": "Shares rose 3%."}}]})
    assert resp.status_code == 200 and resp.json["results"][0]["result"]


def fuzz(client, cases: int, random_seed: int = 0, progress: bool = False) -> collections.Counter:
    """Run `cases` Hypothesis requests against a test client; return the count of each status code."""
    counts: collections.Counter = collections.Counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cases, desc="fuzz", unit="req")

    @seed(random_seed)
    @settings(max_examples=cases, deadline=None, database=None, derandomize=False, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(requests())
    def one(req):
        counts[check(client, req)] += 1
        if bar is not None:
            bar.update(1)

    one()
    if bar is not None:
        bar.close()
    return counts


def tiny_encoder(path: Path) -> str:
    """A tiny randomly initialised BERT with the real MiniLM tokenizer: the model code runs, fast."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from server.config import default_model

    tok = AutoTokenizer.from_pretrained(default_model())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe-model", default=None, help="encoder of the probe corpus' backend (default: the configured one)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz_backend.json")
    args = ap.parse_args()
    logging.getLogger("ml_backend").setLevel(logging.ERROR)  # every bad task logs a warning: keep the table readable

    from ml_backend import create_app
    from server.config import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home", testing=True).backend_settings().with_overrides(model=tiny_encoder(Path(tmp) / "enc"))
        client = create_app(settings, trainer=lambda project, event: None).test_client()
        t0 = time.perf_counter()
        counts = fuzz(client, args.cases, args.seed, progress=True)
        seconds = time.perf_counter() - t0
        assert_healthy(client)
        outside = [p for p in Path(tmp).rglob("*") if p.is_file() and not str(p).startswith((str(Path(tmp) / "home"), str(Path(tmp) / "enc")))]
    total = sum(counts.values())
    five = sum(n for code, n in counts.items() if code >= 500)
    print(f"\n{'status':>8} {'requests':>9}")
    for code, n in sorted(counts.items()):
        print(f"{code:>8} {n:>9}")
    print(f"{'total':>8} {total:>9}   5xx: {five}   files outside the data dir: {len(outside)}   {seconds:.1f} s ({total / seconds:.0f} req/s)")

    from bench import fuzz_probe

    with tempfile.TemporaryDirectory() as tmp:  # a fresh process state would be cleaner; a fresh app and data dir is close
        backend = Settings(home=Path(tmp) / "home", testing=True).backend_settings()
        if args.probe_model:
            backend = backend.with_overrides(model=args.probe_model)
        probe_client = create_app(backend, trainer=lambda project, event: None).test_client()
        rows, summary = fuzz_probe.run(probe_client, progress=True)
        assert_healthy(probe_client, project=101)  # every new id is refused by now: one the corpus used
    model_label = "/".join(Path(backend.model).parts[-2:])
    print(f"\nprobe corpus on {model_label}:")
    print(fuzz_probe.table(rows, summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cases": total, "seed": args.seed, "status_counts": {str(k): v for k, v in sorted(counts.items())},
                                    "5xx": five, "seconds": round(seconds, 1), "healthy_after": True,
                                    "probe": {"model": model_label, **summary,
                                              "rows": [vars(r) for r in rows]}}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
