"""The evidence pack's human-readable report: one self-contained HTML page (inline CSS, inline SVG charts,
no external assets) per period, with drift, fairness and performance over time per system, each
incident's timeline, and the controls evidenced (and not evidenced) in the period.

``ReportData`` is fed the period's records one at a time while the pack is written, so a period of any
size is read once; series are thinned to a bounded number of points per chart (keeping each bucket's
minimum and maximum, so a spike or a drop stays visible).
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.evidence import Record

MAX_POINTS = 240  # buckets per series; each keeps its min and max
MAX_LINES = 10  # lines per chart (per-feature drift: the features that moved most)
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22"]
REPORTED_KINDS = frozenset({"check_run", "check_failed", "incident_opened", "incident_updated", "incident_resolved",
                            "notification_delivered", "notification_failed", "human_override"})
INCIDENT_KINDS = {"incident_opened": "opened", "incident_updated": "updated", "incident_resolved": "resolved",
                  "notification_delivered": "notified", "notification_failed": "notification failed",
                  "human_override": "human decision"}


@dataclass(frozen=True)
class ControlRow:
    framework: str
    control: str
    title: str
    records: int
    kinds: list[str]
    first: str | None
    last: str | None
    agent: str  # primary | supporting | organisational | "" (frameworks other than ISO 42001)
    applicable: bool = True


@dataclass
class _System:
    runs: int = 0
    failed: int = 0
    drift_share: list[tuple[float, float]] = field(default_factory=list)
    drift_threshold: float | None = None
    feature: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    feature_threshold: dict[str, float] = field(default_factory=dict)
    fairness: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    fairness_threshold: dict[str, float] = field(default_factory=dict)
    performance: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    performance_threshold: dict[str, float] = field(default_factory=dict)
    controls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    kinds: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


class ReportData:
    """Everything the report draws, accumulated from the period's records in ledger order."""

    def __init__(self) -> None:
        self.systems: dict[str, _System] = defaultdict(_System)
        self.incidents: dict[int, dict[str, Any]] = {}
        self.records = 0
        self.first_ts: str | None = None
        self.last_ts: str | None = None

    def count(self, ts: str, kind: str, system_id: str | None, controls: list[str]) -> None:
        """A record the report only counts (its payload is not drawn)."""
        self.records += 1
        self.first_ts = min(self.first_ts or ts, ts)
        self.last_ts = max(self.last_ts or ts, ts)
        sysd = self.systems[system_id or "(agent)"]
        sysd.kinds[kind] += 1
        for c in controls:
            sysd.controls[c] += 1

    def add(self, rec: Record) -> None:
        self.count(rec.ts, rec.kind, rec.system_id, rec.controls)
        sysd = self.systems[rec.system_id or "(agent)"]
        if rec.kind == "check_run":
            self._run(sysd, rec)
        elif rec.kind == "check_failed":
            sysd.failed += 1
        elif rec.kind in INCIDENT_KINDS:
            self._incident(rec)

    def _run(self, sysd: _System, rec: Record) -> None:
        sysd.runs += 1
        p = rec.payload
        window = p.get("window") or {}
        x = _epoch(str(window.get("end") or rec.ts))
        results = p.get("results") or {}
        drift = results.get("drift")
        if isinstance(drift, dict):
            share = _num(drift.get("share"))
            if share is not None:
                sysd.drift_share.append((x, share))
            sysd.drift_threshold = _num(drift.get("drift_share")) or sysd.drift_threshold
            for col in drift.get("columns") or []:
                score = _num(col.get("score"))
                if score is not None and col.get("status", "ok") == "ok":
                    name = f"{col.get('column')} ({col.get('method')})"
                    sysd.feature[name].append((x, score))
                    thr = _num(col.get("threshold"))
                    if thr is not None:
                        sysd.feature_threshold[name] = thr
        for entry in results.get("fairness") or []:
            for metric, value in (entry.get("metrics") or {}).items():
                v = _num(value)
                if v is not None:
                    sysd.fairness[f"{entry.get('sensitive')}: {metric}"].append((x, v))
        perf = results.get("performance")
        if isinstance(perf, dict):
            for metric, value in perf.items():
                v = _num(value)
                if v is not None and metric != "count":
                    sysd.performance[metric].append((x, v))
        gaps = {str(e.get("sensitive")): e.get("metrics") or {} for e in results.get("fairness") or []}
        for v in p.get("verdicts") or []:
            thr = _num(v.get("threshold"))
            if thr is None:
                continue
            if v.get("check") == "fairness":
                # the verdict judges one configured metric: the one whose value it carries
                subject = str(v.get("subject"))
                judged = next((m for m, x in gaps.get(subject, {}).items() if x is not None and x == v.get("value")),
                              None)
                if judged:
                    sysd.fairness_threshold[f"{subject}: {judged}"] = thr
            elif v.get("check") == "performance":
                sysd.performance_threshold[str(v.get("subject"))] = thr

    def _incident(self, rec: Record) -> None:
        p = rec.payload
        iid = p.get("incident_id")
        if not isinstance(iid, int):
            return
        inc = self.incidents.setdefault(iid, {"system": rec.system_id, "title": f"incident {iid}", "events": [],
                                              "severity": "", "kind": "", "status": "open"})
        if rec.kind == "incident_opened":
            inc.update(title=str(p.get("title", inc["title"])), severity=str(p.get("severity", "")),
                       kind=str(p.get("kind", "")))
            detail = f"{p.get('severity')}: {p.get('summary', '')}"
        elif rec.kind == "incident_updated":
            detail = f"{p.get('reason')}: {p.get('severity_before')} -> {p.get('severity')}"
        elif rec.kind == "incident_resolved":
            inc["status"] = "resolved"
            dur = _num(p.get("duration_s"))
            detail = f"{p.get('reason', '')}" + (f" (open {dur / 3600:.1f} h)" if dur is not None else "")
        elif rec.kind in ("notification_delivered", "notification_failed"):
            detail = f"{p.get('action')} via {p.get('sink')}" + (
                f" ({p.get('channel')}), ticket {p.get('remote_id')}" if rec.kind == "notification_delivered"
                else f": {p.get('error', '')}")
        else:
            detail = f"{p.get('action')} by {p.get('by')}: {p.get('reason', '')}"
        inc["events"].append((rec.ts, INCIDENT_KINDS[rec.kind], detail, rec.seq))


# -- SVG ------------------------------------------------------------------------------------------
def thin(points: list[tuple[float, float]], n: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most 2n points: per bucket of x, the points with the lowest and the highest y, in x order."""
    if len(points) <= 2 * n:
        return points
    pts = sorted(points)
    lo, hi = pts[0][0], pts[-1][0]
    width = (hi - lo) / n or 1.0
    buckets: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for p in pts:
        buckets[min(int((p[0] - lo) / width), n - 1)].append(p)
    out: list[tuple[float, float]] = []
    for b in sorted(buckets):
        bp = buckets[b]
        mn, mx = min(bp, key=lambda q: q[1]), max(bp, key=lambda q: q[1])
        out.extend(sorted({mn, mx}))
    return out


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], *, threshold: float | None = None,
               thresholds: dict[str, float] | None = None) -> str:
    """An inline SVG line chart over time; a dashed line marks the threshold."""
    w, h, left, right, top, bottom = 720, 240, 56, 12, 24, 34
    lines = {k: thin(v) for k, v in series.items() if v}
    if not lines:
        return ""
    xs = [p[0] for pts in lines.values() for p in pts]
    ys = [p[1] for pts in lines.values() for p in pts]
    marks = [t for t in ([threshold] if threshold is not None else []) + list((thresholds or {}).values())]
    y0, y1 = min([0.0, *ys, *marks]), max([*ys, *marks, 1e-9])
    y1 += (y1 - y0) * 0.05 or 1.0
    x0, x1 = min(xs), max(xs)
    xspan = (x1 - x0) or 1.0

    def px(x: float) -> float:
        return left + (x - x0) / xspan * (w - left - right)

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * (h - top - bottom)

    out = [f'<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{html.escape(title)}</title>',
           f'<text x="{left}" y="15" class="ct">{html.escape(title)}</text>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" class="ax"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" class="ax"/>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{left - 4}" y="{py(yv) + 4:.1f}" class="tk" text-anchor="end">{yv:.3g}</text>')
        out.append(f'<line x1="{left}" y1="{py(yv):.1f}" x2="{w - right}" y2="{py(yv):.1f}" class="gr"/>')
    for i in range(4):
        xv = x0 + xspan * i / 3
        label = datetime.fromtimestamp(xv, UTC).strftime("%Y-%m-%d %H:%M")
        anchor = "start" if i == 0 else ("end" if i == 3 else "middle")
        out.append(f'<text x="{px(xv):.1f}" y="{h - 12}" class="tk" text-anchor="{anchor}">{label}</text>')
    names = list(lines)[:MAX_LINES]
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in lines[name])
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}">'
                   f'<title>{html.escape(name)}</title></polyline>')
        t = (thresholds or {}).get(name)
        if t is not None:
            out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{w - right}" y2="{py(t):.1f}" stroke="{colour}" '
                       'class="th"/>')
    if threshold is not None:
        out.append(f'<line x1="{left}" y1="{py(threshold):.1f}" x2="{w - right}" y2="{py(threshold):.1f}" '
                   'stroke="#d62728" class="th"><title>threshold</title></line>')
    out.append("</svg>")
    legend = "".join(f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{html.escape(n)}</span>'
                     for i, n in enumerate(names))
    more = f" <em>(+{len(lines) - len(names)} more not drawn)</em>" if len(lines) > len(names) else ""
    if marks:
        more += " <span>dashed: threshold</span>"
    return f'<figure>{"".join(out)}<figcaption class="legend">{legend}{more}</figcaption></figure>'


def incident_lanes(incidents: dict[int, dict[str, Any]], first_ts: str | None, last_ts: str | None) -> str:
    """Incidents as bars over time, one lane per kind: when each opened and how long it stayed open."""
    spans = []
    for iid, inc in incidents.items():
        times = [_epoch(ev[0]) for ev in inc["events"]]
        opened = next((_epoch(ev[0]) for ev in inc["events"] if ev[1] == "opened"), min(times))
        resolved = next((_epoch(ev[0]) for ev in inc["events"] if ev[1] == "resolved"), None)
        # an incident still open runs to the end of the period
        end = resolved if resolved is not None else max([*times, *([_epoch(last_ts)] if last_ts else [])])
        spans.append((inc["kind"] or "?", opened, end, resolved is None, iid, inc["title"]))
    if not spans:
        return ""
    kinds = sorted({k for k, *_ in spans})
    w, lane, left, right = 720, 22, 120, 12
    h = 30 + lane * len(kinds)
    # the whole period on the axis, so when in the period each incident happened is visible
    x0 = min([sp[1] for sp in spans] + ([_epoch(first_ts)] if first_ts else []))
    x1 = max([sp[2] for sp in spans] + ([_epoch(last_ts)] if last_ts else []))
    span = (x1 - x0) or 1.0

    def px(x: float) -> float:
        return left + (x - x0) / span * (w - left - right)

    out = [f'<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
           'xmlns="http://www.w3.org/2000/svg"><title>Incidents over time</title>']
    for i, k in enumerate(kinds):
        out.append(f'<text x="4" y="{20 + i * lane + 12}" class="tk">{html.escape(k)}</text>')
    for kind, start, end, still_open, iid, title in spans:
        y = 20 + kinds.index(kind) * lane
        colour = "#d62728" if still_open else "#1f77b4"
        out.append(f'<rect x="{px(start):.1f}" y="{y + 2}" width="{max(px(end) - px(start), 2.0):.1f}" height="14" '
                   f'fill="{colour}" opacity="0.75"><title>#{iid} {html.escape(title)}'
                   f'{" (open)" if still_open else ""}</title></rect>')
    for i in range(4):
        xv = x0 + span * i / 3
        anchor = "start" if i == 0 else ("end" if i == 3 else "middle")
        label = datetime.fromtimestamp(xv, UTC).strftime("%Y-%m-%d %H:%M")
        out.append(f'<text x="{px(xv):.1f}" y="{h - 2}" class="tk" text-anchor="{anchor}">{label}</text>')
    out.append("</svg>")
    return ('<figure>' + "".join(out) + '<figcaption class="legend"><span><i style="background:#1f77b4"></i>'
            'resolved</span><span><i style="background:#d62728"></i>still open</span></figcaption></figure>')


def _top_features(sysd: _System) -> dict[str, list[tuple[float, float]]]:
    """The features whose drift score moved most, relative to their threshold."""
    def reach(item: tuple[str, list[tuple[float, float]]]) -> float:
        name, pts = item
        thr = sysd.feature_threshold.get(name) or 1.0
        ys = [p[1] for p in pts]
        return (max(ys) - min(ys)) / thr
    return dict(sorted(sysd.feature.items(), key=reach, reverse=True)[:MAX_LINES])


# -- page -----------------------------------------------------------------------------------------
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;width:100%}th,td{border:1px solid #ddd;padding:.25rem .45rem;
text-align:left;vertical-align:top}th{background:#f4f4f4}tr.none td{color:#a00}tr.na td{color:#777}
code{font-size:12px;word-break:break-all}.chart{max-width:100%;height:auto}.ct{font-weight:600;font-size:13px}
.tk{font-size:10px;fill:#555}.ax{stroke:#333}.gr{stroke:#eee}.th{stroke-dasharray:5 4;stroke-width:1.2}
.legend span{display:inline-block;margin-right:1rem;font-size:12px}
.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
.kpi{display:inline-block;margin:0 1.4rem .6rem 0}.kpi b{display:block;font-size:1.3rem}
#status{color:#777;font-size:12px}input{padding:.2rem;width:18rem}
"""

SCRIPT = """
(function () {
  var box = document.getElementById('control-filter');
  var rows = document.querySelectorAll('#controls tbody tr');
  box.addEventListener('input', function () {
    var q = box.value.toLowerCase();
    rows.forEach(function (r) { r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none'; });
  });
  var status = document.getElementById('status');
  status.textContent = 'report rendered: ' + document.querySelectorAll('svg.chart').length + ' charts';
  status.setAttribute('data-rendered', 'true');
})();
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def render_html(data: ReportData, *, manifest: dict[str, Any], controls: list[ControlRow]) -> str:
    period = manifest.get("period", {})
    chain = manifest.get("chain", {})
    title = "Evidence report" + (f": system {manifest['system']}" if manifest.get("system") else "")
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           # nothing may load from elsewhere: the pack must be readable offline, years from now
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
           "script-src 'unsafe-inline'; img-src data:\">",
           f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{_e(title)}</h1>",
           f"<p>Period {_e(period.get('since') or 'start of ledger')} to {_e(period.get('until') or 'export time')}; "
           f"generated {_e(manifest.get('generated_at'))} by {_e(manifest.get('generator'))}.</p>",
           "<div>",
           f"<span class=kpi><b>{data.records}</b>records</span>",
           f"<span class=kpi><b>{sum(s.runs for s in data.systems.values())}</b>check runs</span>",
           f"<span class=kpi><b>{sum(s.failed for s in data.systems.values())}</b>failed checks</span>",
           f"<span class=kpi><b>{len(data.incidents)}</b>incidents</span>",
           f"<span class=kpi><b>{sum(1 for r in controls if r.records)}</b>controls evidenced</span>",
           "</div>",
           "<p>Chain: records " + _e(chain.get("first_seq")) + " to " + _e(chain.get("last_seq"))
           + f", anchored on <code>{_e(chain.get('anchor_prev_hash'))}</code>, head "
           f"<code>{_e(chain.get('head_hash'))}</code>. Verify offline with "
           "<code>aims-agent evidence verify &lt;this folder&gt;</code>.</p>"]
    excluded = {f"{r.framework}:{r.control}" for r in controls if not r.applicable}
    for system_id in sorted(data.systems):
        sysd = data.systems[system_id]
        if system_id == "(agent)" and not sysd.runs:
            continue
        out.append(f"<h2 id=\"system-{_e(system_id)}\">System {_e(system_id)}</h2>")
        out.append(f"<p>{sysd.runs} check runs, {sysd.failed} failed; records by kind: "
                   + ", ".join(f"{_e(k)} {n}" for k, n in sorted(sysd.kinds.items())) + ".</p>")
        out.append(line_chart("Dataset drift: share of drifted columns", {"drift share": sysd.drift_share},
                              threshold=sysd.drift_threshold))
        out.append(line_chart("Per-feature drift scores (p-values for tests, distances otherwise)",
                              _top_features(sysd), thresholds=sysd.feature_threshold))
        out.append(line_chart("Fairness gaps by sensitive feature", dict(sysd.fairness),
                              thresholds=sysd.fairness_threshold))
        out.append(line_chart("Performance", dict(sysd.performance), thresholds=sysd.performance_threshold))
        incs = {i: inc for i, inc in data.incidents.items() if inc["system"] == system_id}
        out.append(f"<h3>Incidents ({len(incs)})</h3>")
        out.append(incident_lanes(incs, data.first_ts, data.last_ts))
        for iid, inc in sorted(incs.items()):
            is_open = " open" if inc["status"] != "resolved" else ""
            out.append(f"<details{is_open}><summary>#{iid} {_e(inc['title'])} <small>[{_e(inc['kind'])}, "
                       f"{_e(inc['severity'])}, {_e(inc['status'])}]</small></summary><table><thead><tr><th>time "
                       "(UTC)</th><th>event</th><th>detail</th><th>record</th></tr></thead><tbody>")
            out += [f"<tr><td>{_e(ts)}</td><td>{_e(ev)}</td><td>{_e(detail)}</td><td>{seq}</td></tr>"
                    for ts, ev, detail, seq in inc["events"]]
            out.append("</tbody></table></details>")
        out.append("<h3>Controls evidenced by this system</h3><table><thead><tr><th>control</th><th>records</th>"
                   "</tr></thead><tbody>")
        out += [f"<tr><td>{_e(c)}</td><td>{n}</td></tr>" for c, n in sorted(sysd.controls.items())
                if c not in excluded]
        out.append("</tbody></table>")
    out.append("<h2 id=\"controls-section\">Controls</h2><p>Every control with evidence in the period, and every "
               "ISO/IEC 42001 Annex A control without any (organisational controls cannot be evidenced by a "
               "monitoring agent; rows marked not applicable are excluded by the Statement of Applicability)."
               "</p><p><input id=\"control-filter\" placeholder=\"filter controls\" aria-label=\"filter "
               "controls\"></p><table id=\"controls\"><thead><tr><th>framework</th><th>control</th><th>title</th>"
               "<th>records</th><th>kinds</th><th>first</th><th>last</th><th>agent</th></tr></thead><tbody>")
    for r in controls:
        cls = "na" if not r.applicable else ("none" if not r.records else "")
        out.append(f"<tr class=\"{cls}\"><td>{_e(r.framework)}</td><td>{_e(r.control)}</td><td>{_e(r.title)}</td>"
                   f"<td>{r.records if r.applicable else 'not applicable'}</td><td>{_e(' '.join(r.kinds))}</td>"
                   f"<td>{_e(r.first)}</td><td>{_e(r.last)}</td><td>{_e(r.agent)}</td></tr>")
    out.append("</tbody></table>")
    out.append("<p id=\"status\">report rendered without scripts</p>")
    out.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(x for x in out if x)
