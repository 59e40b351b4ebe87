"""End to end: annotator time and edits read from a real Label Studio, and the control group served empty.

Documents imported with pre-annotation through the backend (control share 0.3); annotations posted with known
lead times, from the prediction shown, with known edits; `goldloop report` stores exactly those seconds and edits
and writes the annotator-time section.
"""
from __future__ import annotations

import json
import re

import pytest
import requests

from ml_backend.control_group import in_control_group
from server import effort, ls_client, store
from tests.plugins.backend import DATA, read_jsonl
from tests.plugins.label_studio import goldloop, goldloop_stack

pytestmark = pytest.mark.e2e
SHARE = 0.3
FLIP = {"positive": "negative", "negative": "positive", "neutral": "positive"}


@pytest.fixture(scope="module")
def stack_up(ls_template, tmp_path_factory):
    env = {"GOLDLOOP_CONTROL_SHARE": str(SHARE), "GOLDLOOP_COLD_START_LABELS": "500", "GOLDLOOP_MIN_ANNOTATIONS_TO_TRAIN": "1000"}
    with goldloop_stack(ls_template, tmp_path_factory.mktemp("e2e-effort"), env) as up:
        yield {**up, "env": env}


def sentiment_of(result: list) -> str | None:
    return next((r["value"]["choices"][0] for r in result if r.get("from_name") == "sentiment"), None)


def test_seconds_and_edits_of_real_annotations_and_the_control_group(stack_up, tmp_path):
    home, client, settings = stack_up["home"], stack_up["client"], stack_up["settings"]
    db = store.open_db(home / "goldloop.db")
    pid = store.get_project_by_name(db, "financial_news")["id"]
    tweets = read_jsonl(DATA / "twitter_financial_news" / "train.jsonl")[:24]
    path = tmp_path / "tweets.jsonl"
    path.write_text("".join(json.dumps({"text": t["text"]}) + "\n" for t in tweets))
    goldloop("import", "financial_news", str(path), home=home, env=stack_up["env"])
    tasks = list(ls_client.iter_tasks(client, pid))
    assert len(tasks) == 24
    control = [t for t in tasks if in_control_group(t["id"], SHARE)]
    suggested = [t for t in tasks if not in_control_group(t["id"], SHARE)]
    assert control and len(suggested) >= 3 and all(t["predictions"] for t in suggested)
    assert all(p["result"] == [] for t in control for p in t["predictions"])  # served empty, as an empty task
    assert all(sentiment_of(t["predictions"][0]["result"]) for t in suggested)  # the others carry a suggestion

    expected = {}
    for i, t in enumerate(suggested[:3]):  # accepted as shown, or with the sentiment changed (one off, one on)
        pred = t["predictions"][0]
        result = pred["result"]
        if i:
            result = [r for r in result if r["from_name"] != "sentiment"] + [
                {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [FLIP[sentiment_of(result)]]}}]
        ann = client.annotations.create(id=t["id"], result=result, lead_time=12.5 + i, parent_prediction=pred["id"])
        expected[ann.id] = (12.5 + i, 0 if i == 0 else 2, True)
    t = control[0]
    parent = {"parent_prediction": t["predictions"][0]["id"]} if t["predictions"] else {}
    ann = client.annotations.create(id=t["id"], lead_time=4000.0, **parent,
                                    result=[{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["neutral"]}}])
    expected[ann.id] = (effort.LEAD_TIME_CAP_S, 1, False)  # left open: capped; typed from scratch: one choice

    out = goldloop("report", "financial_news", "--out", str(tmp_path / "report"), home=home,
                   env={**stack_up["env"], "LABEL_STUDIO_URL": settings.ls_url, "LABEL_STUDIO_API_KEY": settings.ls_api_key})
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r["annotation_id"]: r for r in store.list_effort(db, pid)}
    assert {a: (r["seconds"], r["edits"], r["suggested"]) for a, r in rows.items()} == expected
    assert all(rows[a]["control"] == (not expected[a][2]) for a in rows)
    assert {rows[a]["model_version"] for a in rows if expected[a][2]} == {suggested[0]["predictions"][0]["model_version"]}
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Annotator time" in report and "4 annotations (0 skipped)" in report
    assert (tmp_path / "report" / "annotator_time.png").stat().st_size > 1000

    # the same figures on the backend's dashboard page (the report wrote its snapshot), linked from the project
    page = requests.get(f"{stack_up['be']}/dashboard", params={"project": pid}, timeout=30)
    assert page.status_code == 200, page.text[:500]
    table = re.search(r'<table id="effort">(.*?)</table>', page.text, re.S).group(1)
    cells = {re.sub(r"<.*?>", "", row.split("</td>")[0]): re.findall(r'<td class="n">([^<]*)</td>', row)
             for row in table.split("<tr>")[2:]}
    suggested_row, control_row = cells["with suggestions"], cells["control group"]  # n, seconds (CI), median, edits
    assert suggested_row[0] == "3" and suggested_row[1].startswith("13.5") and suggested_row[3] == "1.33", suggested_row
    assert control_row[0] == "1" and control_row[1].startswith("600.0") and control_row[3] == "1.00", control_row
    assert "4 annotations (0 skipped)" in page.text
    assert f"/dashboard?project={pid}" in (ls_client.get_project(client, pid).description or "")
