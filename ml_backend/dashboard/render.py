"""The dashboard's HTML: one page per project (numbers, charts, tables) and an index of projects. Flask-free.

A project page merges the server's snapshot (``ml_backend.dashboard.read_snapshot``: labels, every round with its
gate decision, annotator time, queue, stopping criterion) with the registry's version records (metrics per control,
the version serving). Without a snapshot it shows what the registry has and says what is missing. Every value from
a file is escaped; the page holds no script and loads nothing (inline CSS, inline SVG), so it works offline.
"""
from __future__ import annotations

import time
from html import escape

from ..errors import NotFound
from ..evaluation import primary_metric, primary_metric_name
from . import read_snapshot, svg

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#1f2937;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header .sub{color:#cbd5e1;font-size:13px;margin-top:4px}header a{color:#cbd5e1}header code{background:#374151;color:#fff}
main{padding:16px 24px;max-width:1220px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:16px}
.card{background:#fff;border:1px solid #e3e5e8;border-radius:8px;padding:10px 14px;min-width:150px}
.card .v{font-size:22px;font-weight:600}.card .k{font-size:12px;color:#666}
.grid{display:flex;flex-wrap:wrap;gap:16px}
section{background:#fff;border:1px solid #e3e5e8;border-radius:8px;padding:12px 16px;margin-bottom:16px}
section h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;font-size:12px}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.promoted{color:#1a7f37;font-weight:600}.rejected{color:#b42318}.failed,.interrupted{color:#b42318}
.notice{background:#fff8e1;border:1px solid #f1d48a;border-radius:8px;padding:8px 12px;margin-bottom:12px;font-size:13px}
.muted{color:#777;font-size:12px}code{background:#f0f1f3;padding:1px 4px;border-radius:3px}
svg.chart{max-width:100%;height:auto}
"""


def _e(x: object) -> str:
    return escape("" if x is None else str(x), quote=True)


def _f(x: object, digits: int = 3) -> str:
    return "" if not isinstance(x, (int, float)) or isinstance(x, bool) else f"{x:.{digits}f}"


def _when(ts: object) -> str:
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _page(title: str, sub: str, body: list[str]) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{_e(title)}</h1><div class=\"sub\">{sub}</div></header><main>{''.join(body)}</main></body></html>")


def _card(value: str, key: str, ident: str) -> str:
    return f'<div class="card" id="card-{ident}"><div class="v">{value}</div><div class="k">{_e(key)}</div></div>'


def _control_metrics(record: dict) -> dict[str, float]:
    """A registry record's primary metric per control (entity F1 for spans, macro F1 for choices)."""
    out = {}
    for name, m in ((record.get("metrics") or {}).get("controls") or {}).items():
        try:
            out[name] = primary_metric(m)
        except (KeyError, TypeError, ValueError):  # a control the round skipped has no metrics
            continue
    return out


def merged_versions(snap: dict | None, records: list[dict]) -> list[dict]:
    """Rounds oldest first: the snapshot's rows (every round, with gate decisions) joined with the registry's records
    by version name; registry versions the snapshot lacks (or all, without a snapshot) are added."""
    by_name = {r.get("version"): r for r in records}
    rows = []
    for v in (snap or {}).get("versions") or []:
        rec = by_name.pop(v.get("version"), None)
        rows.append({**v, "controls": _control_metrics(rec) if rec else {}, "serving": bool(rec and rec.get("serving")),
                     "metric_name": _metric_name(rec)})
    for rec in sorted(by_name.values(), key=lambda r: r.get("promoted_at") or 0):
        metrics = rec.get("metrics") or {}
        rows.append({"version": rec.get("version"), "status": "promoted", "started_at": rec.get("promoted_at"),
                     "primary": metrics.get("primary"), "decision": rec.get("decision"), "trigger": rec.get("dataset_version"),
                     "controls": _control_metrics(rec), "serving": bool(rec.get("serving")), "metric_name": _metric_name(rec),
                     "from_registry": True})
    rows.sort(key=lambda r: r.get("started_at") or 0)
    return rows


def _metric_name(rec: dict | None) -> str:
    controls = ((rec or {}).get("metrics") or {}).get("controls") or {}
    names = {primary_metric_name(m) for m in controls.values() if isinstance(m, dict)}
    return "/".join(sorted(names))


def learning_curve(rows: list[dict]) -> str:
    """Primary test metric against labeled documents (every evaluated round; rejected ones hollow), promoted joined.
    Without label counts (no snapshot): against the order of promotion."""
    pts = [r for r in rows if isinstance(r.get("primary"), (int, float))]
    if any(r.get("labeled_docs") for r in pts):
        pts = [r for r in pts if r.get("labeled_docs")]
        series = [{"name": "promoted", "points": [(r["labeled_docs"], r["primary"]) for r in pts if r.get("status") == "promoted"],
                   "color": svg.COLORS[0]},
                  {"name": "rejected", "line": False, "color": svg.COLORS[4],
                   "points": [(r["labeled_docs"], r["primary"]) for r in pts if r.get("status") != "promoted"],
                   "hollow": [True] * sum(1 for r in pts if r.get("status") != "promoted")}]
        return svg.line_chart("Learning curve: test metric vs labels", series, "labeled documents", "primary metric (test split)", (0.0, 1.0))
    series = [{"name": "promoted", "points": [(i + 1, r["primary"]) for i, r in enumerate(pts)]}]
    return svg.line_chart("Test metric by promoted version", series, "promoted version (order)", "primary metric (test split)", (0.0, 1.0))


def _versions_table(rows: list[dict]) -> str:
    controls = sorted({c for r in rows for c in r.get("controls") or {}})
    head = "".join(f'<th class="n">{_e(c)}</th>' for c in controls)
    out = ['<table id="versions"><thead><tr><th>version</th><th>trigger</th><th>status</th><th class="n">labeled</th>'
           f'<th class="n">primary</th><th class="n">serving before</th>{head}<th>gate decision</th></tr></thead><tbody>']
    for r in reversed(rows):  # newest first: the one people look for
        status = _e(r.get("status"))
        star = " ★" if r.get("serving") else ""
        cells = "".join(f'<td class="n">{_f((r.get("controls") or {}).get(c))}</td>' for c in controls)
        out.append(f'<tr><td><code>{_e(r.get("version"))}</code>{star}<div class="muted">{_when(r.get("started_at"))}</div></td>'
                   f'<td>{_e(r.get("trigger"))}</td><td class="{status}">{status}</td><td class="n">{_e(r.get("labeled_docs"))}</td>'
                   f'<td class="n">{_f(r.get("primary"))}</td><td class="n">{_f(r.get("serving_primary"))}</td>{cells}'
                   f'<td>{_e(r.get("decision"))}</td></tr>')
    out.append("</tbody></table>")
    if controls:
        out.append('<p class="muted">Per-control columns: entity F1 (spans) or macro F1 (choices) on the test split; ★ serving.</p>')
    return "".join(out)


EFFORT_GROUPS = (("with_suggestions", "with suggestions", svg.COLORS[0]), ("control", "control group", svg.COLORS[1]),
                 ("without_suggestions", "no suggestion shown", svg.COLORS[2]))


def effort_charts(effort: dict, buckets: list[dict]) -> list[str]:
    """Seconds and edits per document over time (by group), and per group and model version with 95% intervals."""
    charts = []
    for measure, label in (("seconds_mean", "seconds per document"), ("edits_mean", "edits per document")):
        series = [{"name": name, "color": color, "points": [(b["until"], (b.get(key) or {}).get(measure)) for b in buckets]}
                  for key, name, color in EFFORT_GROUPS if any((b.get(key) or {}).get(measure) is not None for b in buckets)]
        charts.append(svg.line_chart(f"{label.capitalize()} over time", series, "annotations so far", label))
    bars = []
    for key, name, color in EFFORT_GROUPS:
        g = effort.get(key) or {}
        lo, hi = (g.get("seconds_ci") or [None, None])[:2]
        bars.append({"name": name, "value": g.get("seconds_mean"), "low": lo, "high": hi, "color": color,
                     "note": f"{g['seconds_mean']:.1f} s, n={g.get('annotations')}" if g.get("seconds_mean") is not None else ""})
    for version, g in list((effort.get("by_version") or {}).items())[-12:]:  # the newest versions: a readable chart
        lo, hi = (g.get("seconds_ci") or [None, None])[:2]
        bars.append({"name": f"version {version}", "value": g.get("seconds_mean"), "low": lo, "high": hi, "color": svg.COLORS[5],
                     "note": f"{g['seconds_mean']:.1f} s, {_f(g.get('edits_mean'), 1)} edits" if g.get("seconds_mean") is not None else ""})
    charts.append(svg.bar_chart("Seconds per document by group and model version (95% CI)", bars, "seconds per document (mean)"))
    return charts


def _effort_section(snap: dict) -> str:
    effort = snap.get("effort") or {}
    saved = effort.get("seconds_saved_per_doc")
    if saved:
        line = (f'<p id="time-saved">Time saved by suggestions: <b>{saved["mean"]:.1f} s a document</b> (95% CI {saved["ci"][0]:.1f} to '
                f'{saved["ci"][1]:.1f}; {saved["control_n"]} control and {saved["suggested_n"]} suggested annotations).</p>')
    else:
        line = ('<p id="time-saved">Time saved by suggestions: not measured yet (it needs two or more annotations of control-group '
                "tasks and of suggested ones).</p>")
    rows = ['<table id="effort"><thead><tr><th>annotations of</th><th class="n">n</th><th class="n">seconds / doc (95% CI)</th>'
            '<th class="n">median s</th><th class="n">edits / doc</th></tr></thead><tbody>']
    groups = [(name, effort.get(key) or {}) for key, name, _ in EFFORT_GROUPS]
    groups += [(f"version {v}", g) for v, g in list((effort.get("by_version") or {}).items())[-12:]]
    for name, g in groups:
        lo, hi = (g.get("seconds_ci") or [None, None])[:2]
        ci = f" ({lo:.1f}-{hi:.1f})" if lo is not None and hi is not None else ""
        rows.append(f'<tr><td>{_e(name)}</td><td class="n">{_e(g.get("annotations"))}</td><td class="n">{_f(g.get("seconds_mean"), 1)}{ci}</td>'
                    f'<td class="n">{_f(g.get("seconds_median"), 1)}</td><td class="n">{_f(g.get("edits_mean"), 2)}</td></tr>')
    rows.append("</tbody></table>")
    charts = effort_charts(effort, snap.get("effort_over_time") or [])
    return (f'<section id="annotator-time"><h2>Annotator time</h2>{line}<p class="muted">{_e(effort.get("annotations"))} annotations '
            f'({_e(effort.get("skipped"))} skipped) by {_e(effort.get("annotators"))} annotator(s); seconds are Label Studio\'s lead '
            f'time, capped at 600 s a document.</p><div class="grid">{"".join(charts)}</div>{"".join(rows)}</section>')


def _queue_section(queue: dict | None) -> str:
    if not queue:
        return ('<section id="queue"><h2>Queue</h2><p class="muted">No queue scores yet: they are read from Label Studio by '
                "`goldloop report` (or a round that passes them).</p></section>")
    note = ("score = the model's confidence: the least confident documents come first" if queue.get("strategy") in (None, "", "least_confidence")
            else f"score = rank under {queue.get('strategy')} (lowest first)")
    chart = svg.histogram("Queue: order scores of unlabeled tasks", queue.get("bins") or [], 0.0, 1.0, "prediction score (lowest served first)")
    return (f'<section id="queue"><h2>Queue</h2><p><b>{_e(queue.get("tasks"))}</b> unlabeled task(s) with a prediction; mean score '
            f'{_f(queue.get("mean"))}, median {_f(queue.get("median"))} ({_e(note)}). <span class="muted">As of {_when(queue.get("as_of"))}.'
            f"</span></p>{chart}</section>")


def _status_section(snap: dict) -> str:
    stop = snap.get("stopping")
    items = []
    if stop:
        items.append(f'<li id="stopping">Stop labeling: <b>{"yes" if stop.get("stop") else "no"}</b> — {_e(stop.get("reason"))}; '
                     f'pool agreement of the last two versions {_f(stop.get("pool_agreement"))}, test-metric gain per 100 labels '
                     f'{_f(stop.get("metric_gain_per_100_labels"), 4)}</li>')
    else:
        items.append('<li id="stopping">Stopping criterion: not computed yet.</li>')
    starter = snap.get("starter")
    if starter:
        items.append(f'<li id="starter">Starter: {_e(starter.get("status"))} {_e(starter.get("version") or "")} '
                     f'({_e(starter.get("schema"))}, {_e(starter.get("language"))}) — {_e(starter.get("decision"))} '
                     f'<span class="muted">as of {_when(starter.get("as_of"))}</span></li>')
    else:
        items.append('<li id="starter">Starter: none recorded.</li>')
    last = snap.get("last_round")
    if last:
        items.append(f'<li id="last-round">Last round: <code>{_e(last.get("line"))}</code> <span class="muted">{_when(last.get("started_at"))}</span></li>')
    log_line = snap.get("log_line")
    if log_line:
        items.append(f'<li id="log-line">Round log, last line: <code>{_e(log_line.get("line"))}</code> '
                     f'<span class="muted">as of {_when(log_line.get("as_of"))}</span></li>')
    return f'<section id="status"><h2>Stopping criterion, starter, last round</h2><ul>{"".join(items)}</ul></section>'


def project_page(registry, project: str) -> str:
    """The dashboard of one project; NotFound when the backend has no models dir (no version, no snapshot) for it."""
    if project not in registry.projects():
        raise NotFound(f"no project {project} on this backend: known {', '.join(registry.projects()) or 'none'}")
    snap, missing = read_snapshot(registry, project)
    records = registry.versions(project)
    rows = merged_versions(snap, records)
    serving = next((r for r in records if r.get("serving")), None)
    promoted = [r for r in rows if r.get("status") == "promoted"]
    title = (snap or {}).get("title") or f"project {project}"
    body = []
    if missing:
        body.append(f'<div class="notice" id="missing">{_e(missing)}. Shown: the registry\'s versions and metrics; label counts, '
                    "annotator time, queue, stopping criterion and the last round appear once the snapshot is written.</div>")
    labels = (snap or {}).get("labels") or {}
    effort = (snap or {}).get("effort") or {}
    saved = effort.get("seconds_saved_per_doc")
    stop = (snap or {}).get("stopping")
    cards = [_card(_e(labels.get("labeled_docs") if labels.get("labeled_docs") is not None else "–"), "labeled documents (last round)", "labels"),
             _card(_e(labels.get("completed", "–")), "annotations timed", "annotations"),
             _card(f"{len(promoted)} / {len(rows)}", "versions promoted / rounds", "versions"),
             _card(_f((promoted[-1] if promoted else {}).get("primary")) or "–", "serving primary metric", "metric"),
             _card(f"{saved['mean']:.1f} s" if saved else "–", "time saved per document", "saved"),
             _card(("stop" if stop.get("stop") else "keep labeling") if stop else "–", "stopping criterion", "stop")]
    body.append(f'<div class="cards">{"".join(cards)}</div>')
    body.append(f'<section id="learning"><h2>Model versions</h2><div class="grid">{learning_curve(rows)}</div>{_versions_table(rows)}</section>')
    if snap:
        body.append(_effort_section(snap))
        body.append(_queue_section(snap.get("queue")))
        body.append(_status_section(snap))
    sub = (f"project <code>{_e(project)}</code> · serving <code>{_e((serving or {}).get('version') or 'cold start')}</code>"
           f" · snapshot {_e(_when(snap.get('written_at'))) if snap else 'missing'} · <a href=\"/dashboard\">all projects</a>")
    return _page(f"goldloop · {title}", sub, body)


def index_page(registry) -> str:
    """Every project the backend has a models dir for, with its serving version and snapshot's label count."""
    rows = []
    for project in registry.projects():
        snap, _ = read_snapshot(registry, project)
        serving = (registry.pointer(project) or {}).get("version")
        labels = ((snap or {}).get("labels") or {}).get("labeled_docs")
        rows.append(f'<tr><td><a href="/dashboard?project={_e(project)}">{_e((snap or {}).get("title") or f"project {project}")}</a></td>'
                    f'<td><code>{_e(project)}</code></td><td><code>{_e(serving or "cold start")}</code></td><td class="n">{_e(labels)}</td>'
                    f'<td>{_e(_when((snap or {}).get("written_at")) or "no snapshot")}</td></tr>')
    table = ('<section><table id="projects"><thead><tr><th>project</th><th>key</th><th>serving</th><th class="n">labeled</th>'
             f'<th>snapshot</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>') if rows else \
        '<div class="notice">No project on this backend yet: a project appears after its first round or `goldloop report`.</div>'
    return _page("goldloop · projects", f"{len(rows)} project(s)", [table])
