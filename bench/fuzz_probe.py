"""The outside probe's requests as a fixed corpus: what once took the backend down or ate its memory.

Each case is one request, then a short /predict on the same project (the backend must still answer it). The
corpus: labeled spans of 500 to 5,000 characters arriving by webhook (repetitive clauses, Unicode-heavy and
CJK text, hundreds of nested prefixes up to 1,500 characters), configs with 32 (the limit), 33 and 500 Choices controls, 500 and 3,000
choices in one control, and new project ids past the backend's limit. `bench/fuzz_backend.py` runs it after the
Hypothesis cases and reports the RSS ceiling and the slowest request; tests/test_fuzz_backend.py runs it on the
tiny encoder (statuses) and, marked slow, on the real one (RSS and latency).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SPAN_CONFIG = """<View><Text name="text" value="$text"/>
<Labels name="clauses" toName="text"><Label value="Obligation"/><Label value="Term"/></Labels></View>"""
CLAUSE = "The Supplier shall deliver the Goods in accordance with Schedule 2 and shall remain liable for defects; "
UNICODE = "Zbigniew Kowalczyk – Siobhán Ní Bhriain · Élodie ß ﬁ İı ΣΑΣ ǅ 司马光 北京协和医院 \U0001f600 \u0301e "


def choices_config(controls: int, choices: int) -> str:
    body = "".join(
        f'<Choices name="c{i}" toName="text">' + "".join(f'<Choice value="label {j}"/>' for j in range(choices)) + "</Choices>"
        for i in range(controls))
    return f'<View><Text name="text" value="$text"/>{body}</View>'


def repeat(base: str, n: int) -> str:
    return (base * (n // len(base) + 1))[:n]


def span_webhook(project: int, text: str, start: int, end: int) -> dict:
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project, "label_config": SPAN_CONFIG},
        "task": {"id": 1, "data": {"text": text}},
        "annotation": {"id": 1, "result": [{"from_name": "clauses", "to_name": "text", "type": "labels",
                                            "value": {"start": start, "end": end, "labels": ["Obligation"]}}]},
    }


@dataclass
class Case:
    name: str
    path: str
    body: dict
    project: int
    config: str  # the config of the follow-up /predict


def cases(project_ids: int = 600, nested: int = 300) -> Iterator[Case]:
    """The corpus, in order: ``nested`` labeled strings each a prefix of the next (the longest 1,500 characters), and
    ``project_ids`` new ids at the end (past the default limit of 500)."""
    p = 100
    for n in (500, 1000, 5000):
        for name, base in (("clause", CLAUSE), ("unicode", UNICODE), ("cjk", "甲方应当按照合同约定交付货物并承担责任。")):
            span = repeat(base, n).strip()
            text = "Preamble. " + span + " End."
            p += 1
            yield Case(f"webhook: {n}-char {name} span", "/webhook", span_webhook(p, text, 10, 10 + len(span)), p, SPAN_CONFIG)
    p += 1
    step = 1500 // nested
    for i in range(step, step * nested + 1, step):  # nested prefixes learned into one project, one per annotation
        yield Case(f"webhook: {nested} nested prefixes" if i == step * nested else "", "/webhook", span_webhook(p, "a" * i + " x", 0, i),
                   p, SPAN_CONFIG)
    for controls, choices in ((32, 20), (33, 2), (500, 2), (1, 500), (1, 3000)):
        p += 1
        config = choices_config(controls, choices)
        yield Case(f"predict: {controls} controls x {choices} choices", "/predict",
                   {"project": p, "label_config": config, "tasks": [{"id": 1, "data": {"text": "Shares of Acme rose 3%."}}]}, p,
                   config if controls <= 32 and choices <= 500 else SPAN_CONFIG)
    for i in range(project_ids):
        q = 10_000 + i
        yield Case(f"webhook: {project_ids} new project ids" if i == project_ids - 1 else "", "/webhook",
                   span_webhook(q, "The Supplier shall deliver.", 0, 12), q, SPAN_CONFIG)


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@dataclass
class Row:
    name: str
    status: int
    follow_up: int
    seconds: float
    rss_mb: float


def next_name(corpus: list[Case], case: Case) -> str:
    """The name of the group an unnamed case belongs to (the next named case)."""
    return next(c.name for c in corpus[corpus.index(case):] if c.name)


def run(client, project_ids: int = 600, nested: int = 300, progress: bool = False) -> tuple[list[Row], dict]:
    """Send every case and its follow-up /predict; the named rows (the last request of a group names it) and a
    summary: 5xx count, follow-ups that failed, the RSS ceiling and the slowest request."""
    from tqdm import tqdm

    rows, slowest, fives, broken = [], (0.0, ""), 0, 0
    start_rss = rss_mb()[0]
    corpus = list(cases(project_ids, nested))
    for case in tqdm(corpus, desc="probe corpus", disable=not progress, leave=False):
        t0 = time.perf_counter()
        resp = client.post(case.path, data=json.dumps(case.body), content_type="application/json")
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        follow = client.post("/predict", data=json.dumps({"project": case.project, "label_config": case.config,
                                                          "tasks": [{"id": 2, "data": {"text": "Another short text."}}]}),
                             content_type="application/json")
        follow_s = time.perf_counter() - t1
        fives += (resp.status_code >= 500) + (follow.status_code >= 500)
        # a follow-up may be refused (400) only where the case itself was: a config or project past a limit
        broken += follow.status_code != 200 and resp.status_code == 200
        for s, what in ((seconds, case.path), (follow_s, "/predict after it")):
            if s > slowest[0]:
                slowest = (s, f"{what} in '{case.name or next_name(corpus, case)}'")
        if case.name:
            rows.append(Row(case.name, resp.status_code, follow.status_code, seconds, rss_mb()[0]))
    current, peak = rss_mb()
    return rows, {"requests": 2 * len(corpus), "5xx": fives, "broken_follow_ups": broken, "rss_start_mb": round(start_rss),
                  "rss_end_mb": round(current), "rss_peak_mb": round(peak), "slowest_s": round(slowest[0], 2), "slowest": slowest[1]}


def table(rows: list[Row], summary: dict) -> str:
    out = [f"{'case':<42} {'status':>6} {'then /predict':>13} {'seconds':>8} {'RSS MB':>7}"]
    out += [f"{r.name:<42} {r.status:>6} {r.follow_up:>13} {r.seconds:>8.2f} {r.rss_mb:>7.0f}" for r in rows]
    out.append(f"{summary['requests']} requests, 5xx: {summary['5xx']}, broken follow-ups: {summary['broken_follow_ups']}, "
               f"RSS {summary['rss_start_mb']} -> {summary['rss_end_mb']} MB (peak {summary['rss_peak_mb']}), "
               f"slowest {summary['slowest_s']} s ({summary['slowest']})")
    return "\n".join(out)
