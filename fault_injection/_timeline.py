"""A chaos run as one self-contained HTML page: operations over time, faults, latency, anomalies.

``render_timeline(history, anomalies)`` returns the page (inline CSS, SVG and a few lines of
script; nothing is fetched, so it opens offline): a lane per workload client with each operation
from invocation to answer (green ok, orange a definite error, red unknown), the run's own calls
(health probes, resolving, draining) in a lane of their own; above them a lane per faulted link or
process with its fault and crash windows, shaded across the lanes below; latency of every call
over time; each anomaly marked at its time with a link to its entry, and the entry linked to its
task's history (events and the calls made on it).
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from collections.abc import Sequence

from fault_injection._checker import RULES, Anomaly
from fault_injection._history import History, Operation

__all__ = ["render_timeline"]

_LEFT, _WIDTH, _LANE, _FAULT_LANE = 170, 1100, 12, 16
_COLORS = {"ok": "#2e7d32", "fail": "#ef6c00", "unknown": "#c62828", None: "#9e9e9e"}
_TITLES_UP_TO = 6000
"""Per-operation tooltips only up to this many operations (they make up most of the page's size)."""
_OP_REF = re.compile(r"\bop (\d+)\b")


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _task_anchor(task_id: str) -> str:
    return "task-" + re.sub(r"[^A-Za-z0-9_-]", "_", task_id)


class _Scale:
    """Wall-clock nanoseconds to x pixels."""

    def __init__(self, start_ns: int, end_ns: int) -> None:
        self.start_ns = start_ns
        self.span_ns = max(end_ns - start_ns, 1)

    def x(self, ns: int) -> float:
        return round(_LEFT + (ns - self.start_ns) / self.span_ns * _WIDTH, 1)

    def seconds(self, ns: int) -> float:
        return (ns - self.start_ns) / 1e9


def _anomaly_time(anomaly: Anomaly, history: History) -> int | None:
    """When an anomaly happened: the first operation its evidence names, else its task's first event."""
    for match in _OP_REF.finditer(anomaly.evidence):
        index = int(match.group(1))
        if 0 <= index < len(history.operations):
            op = history.operations[index]
            return op.complete_ns or op.invoke_ns
    events = history.events.get(anomaly.task_id or "")
    if events:
        return events[-1].at_ns or None
    ops = [op for op in history.operations if op.task_id == anomaly.task_id]
    return ops[0].invoke_ns if ops else None


def _bounds(history: History) -> tuple[int, int]:
    times = [op.invoke_ns for op in history.operations]
    times += [op.complete_ns for op in history.operations if op.complete_ns is not None]
    times += [w.start_ns for w in history.windows] + [w.until_ns() or w.start_ns for w in history.windows]
    return (min(times), max(times)) if times else (0, 1)


def _op_title(op: Operation) -> str:
    what = f"op {op.id} {op.kind}"
    if op.idempotency_key:
        what += f" key={op.idempotency_key}"
    if op.task_id:
        what += f" task={op.task_id}"
    ms = (op.complete_ns - op.invoke_ns) / 1e6 if op.complete_ns is not None else None
    took = f"{ms:.0f} ms" if ms is not None else "no answer"
    return f"{what}: {op.outcome or 'in flight'} {op.code or ''} ({took})"


def _timeline_svg(history: History, scale: _Scale, marks: list[tuple[int, int, Anomaly]]) -> str:
    targets = sorted({w.target for w in history.windows})
    clients = sorted({op.client for op in history.operations if op.client is not None})
    lanes: list[int | None] = [*clients, None]
    top = 24
    fault_y = {target: top + i * _FAULT_LANE for i, target in enumerate(targets)}
    ops_top = top + len(targets) * _FAULT_LANE + 8
    lane_y = {client: ops_top + i * _LANE for i, client in enumerate(lanes)}
    height = ops_top + len(lanes) * _LANE + 30
    parts = [f'<svg id="timeline" width="{_LEFT + _WIDTH + 20}" height="{height}" role="img">']
    for target, y in fault_y.items():
        parts.append(f'<text x="4" y="{y + 11}" class="lane">{_esc(target)}</text>')
    for client, y in lane_y.items():
        label = f"client {client}" if client is not None else "run (health, resolve, drain)"
        parts.append(f'<text x="4" y="{y + 9}" class="lane">{_esc(label)}</text>')
    for window in history.windows:
        x0, x1 = scale.x(window.start_ns), scale.x(window.until_ns() or window.start_ns)
        width = max(x1 - x0, 2)
        css = "crash" if window.process else "fault"
        parts.append(
            f'<rect class="{css}-band" x="{x0}" y="{ops_top}" width="{width}" height="{len(lanes) * _LANE}">'
            f"<title>{_esc(window.detail or window.kind)}</title></rect>"
        )
        parts.append(
            f'<rect class="{css}" x="{x0}" y="{fault_y[window.target]}" width="{width}" '
            f'height="{_FAULT_LANE - 3}">'
            f"<title>{_esc(window.detail or window.kind)} on {_esc(window.target)}</title></rect>"
        )
    titled = len(history.operations) <= _TITLES_UP_TO
    for op in history.operations:
        y = lane_y[op.client if op.client in lane_y else None]
        x0 = scale.x(op.invoke_ns)
        x1 = scale.x(op.complete_ns) if op.complete_ns is not None else _LEFT + _WIDTH
        title = f"<title>{_esc(_op_title(op))}</title>" if titled else ""
        parts.append(
            f'<rect class="op" x="{x0}" y="{y + 2}" width="{max(x1 - x0, 1.5)}" height="{_LANE - 4}" '
            f'fill="{_COLORS.get(op.outcome, _COLORS[None])}">{title}</rect>'
        )
    for number, at_ns, anomaly in marks:
        x = scale.x(at_ns)
        parts.append(
            f'<a href="#anomaly-{number}" class="anomaly-marker" data-rule="{_esc(anomaly.rule)}">'
            f'<line x1="{x}" x2="{x}" y1="14" y2="{height - 24}" class="anomaly-line"/>'
            f'<polygon points="{x - 5},4 {x + 5},4 {x},14" class="anomaly-head"/>'
            f"<title>anomaly {number}: {_esc(anomaly.rule)} (task {_esc(anomaly.task_id or '-')})</title></a>"
        )
    parts.append(_axis(scale, height - 20))
    parts.append("</svg>")
    return "".join(parts)


def _axis(scale: _Scale, y: int) -> str:
    span_s = scale.span_ns / 1e9
    step = next((s for s in (1, 2, 5, 10, 20, 30, 60, 120, 300) if span_s / s <= 12), 600)
    parts = [f'<line x1="{_LEFT}" x2="{_LEFT + _WIDTH}" y1="{y}" y2="{y}" class="axis"/>']
    tick = 0
    while tick <= span_s:
        x = scale.x(scale.start_ns + int(tick * 1e9))
        parts.append(f'<line x1="{x}" x2="{x}" y1="{y}" y2="{y + 4}" class="axis"/>')
        parts.append(f'<text x="{x}" y="{y + 15}" class="tick">{tick}s</text>')
        tick += step
    return "".join(parts)


def _latency_svg(history: History, scale: _Scale) -> str:
    timed = [
        op for op in history.operations if op.complete_ns is not None and not op.kind.startswith("health")
    ]
    height, top = 170, 10
    if not timed:
        return "<p>No call was answered.</p>"
    worst = max((op.complete_ns or 0) - op.invoke_ns for op in timed) / 1e6
    ceiling = max(worst, 1.0)
    parts = [f'<svg id="latency" width="{_LEFT + _WIDTH + 20}" height="{height + 30}" role="img">']
    parts.append(f'<text x="4" y="{top + 10}" class="lane">{ceiling:.0f} ms</text>')
    parts.append(f'<text x="4" y="{top + height}" class="lane">0 ms</text>')
    for window in history.windows:
        x0, x1 = scale.x(window.start_ns), scale.x(window.until_ns() or window.start_ns)
        css = "crash" if window.process else "fault"
        parts.append(
            f'<rect class="{css}-band" x="{x0}" y="{top}" width="{max(x1 - x0, 2)}" height="{height}"/>'
        )
    for op in timed:
        ms = ((op.complete_ns or 0) - op.invoke_ns) / 1e6
        y = round(top + height - ms / ceiling * height, 1)
        color = _COLORS.get(op.outcome, _COLORS[None])
        parts.append(f'<circle cx="{scale.x(op.invoke_ns)}" cy="{y}" r="1.6" fill="{color}"/>')
    parts.append(_axis(scale, top + height + 4))
    parts.append("</svg>")
    return "".join(parts)


def _anomaly_table(marks: list[tuple[int, int | None, Anomaly]], scale: _Scale) -> str:
    if not marks:
        return '<p class="clean">No anomalies: every rule held.</p>'
    rows = []
    for number, at_ns, anomaly in marks:
        task = (
            f'<a href="#{_task_anchor(anomaly.task_id)}">{_esc(anomaly.task_id)}</a>'
            if anomaly.task_id
            else "-"
        )
        when = f"{scale.seconds(at_ns):.2f}s" if at_ns is not None else "-"
        rows.append(
            f'<tr id="anomaly-{number}" class="anomaly"><td>{number}</td><td>{when}</td>'
            f'<td title="{_esc(RULES.get(anomaly.rule, ""))}">{_esc(anomaly.rule)}</td><td>{task}</td>'
            f"<td>{_esc(anomaly.idempotency_key or '-')}</td><td>{_esc(anomaly.evidence)}</td></tr>"
        )
    head = "<tr><th>#</th><th>at</th><th>rule</th><th>task</th><th>key</th><th>evidence</th></tr>"
    return f'<table id="anomalies">{head}{"".join(rows)}</table>'


def _task_sections(history: History, anomalies: Sequence[Anomaly], scale: _Scale) -> str:
    wanted = list(dict.fromkeys(a.task_id for a in anomalies if a.task_id))
    if not wanted:
        return ""
    calls: dict[str, list[Operation]] = defaultdict(list)
    for op in history.operations:
        task = op.task_id or ((op.value or {}).get("task_id") if op.kind == "submit" else None)
        if task in wanted:
            calls[task].append(op)
    sections = []
    for task_id in wanted:
        snap = history.tasks.get(task_id)
        final = (
            f"{snap.task_type} key {snap.idempotency_key}: {snap.status}, attempts {snap.attempts}/"
            f"{snap.max_attempts}, last_error {snap.last_error[:80]!r}"
            if snap is not None
            else "NOT_FOUND at the end"
            if task_id in history.tasks
            else "never read at the end"
        )
        events = "".join(
            f"<li>{scale.seconds(ev.at_ns):.3f}s {_esc(ev.to_contract().label())}"
            + (f" <q>{_esc(ev.detail[:120])}</q>" if ev.detail else "")
            + "</li>"
            for ev in history.events.get(task_id, [])
        )
        ops = "".join(
            f"<li>{scale.seconds(op.invoke_ns):.3f}s {_esc(_op_title(op))}</li>" for op in calls[task_id]
        )
        sections.append(
            f'<section class="task" id="{_task_anchor(task_id)}"><h3>task {_esc(task_id)}</h3>'
            f"<p>{_esc(final)}</p><h4>history</h4><ol>{events or '<li>(none collected)</li>'}</ol>"
            f"<h4>calls</h4><ul>{ops or '<li>(none)</li>'}</ul></section>"
        )
    return "<h2>Tasks with anomalies</h2>" + "".join(sections)


_STYLE = """
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px}h2{font-size:15px;margin-top:24px}
.lane,.tick{font-size:10px;fill:#444}.tick{text-anchor:middle}
.axis{stroke:#888}.fault{fill:#7e57c2}.crash{fill:#37474f}
.fault-band{fill:#7e57c2;opacity:.12}.crash-band{fill:#37474f;opacity:.15}
.anomaly-line{stroke:#d50000;stroke-width:1.5;stroke-dasharray:3 2}.anomaly-head{fill:#d50000}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}
tr.anomaly:target,section.task:target{background:#fff3e0}
.legend span{display:inline-block;margin-right:14px}
.sw{width:10px;height:10px;display:inline-block;margin-right:4px}
.clean{color:#2e7d32;font-weight:bold}#errors{color:#d50000}
"""

_SCRIPT = """
window.onerror=function(m){var e=document.getElementById('errors');e.textContent+=m+'\\n';};
document.addEventListener('DOMContentLoaded',function(){
 var n=document.querySelectorAll('.anomaly-marker').length;
 document.getElementById('marker-count').textContent=String(n);
 document.body.setAttribute('data-ready','yes');
});
"""


def render_timeline(history: History, anomalies: Sequence[Anomaly], *, title: str = "") -> str:
    """The page for a checked history (see the module docstring)."""
    start_ns, end_ns = _bounds(history)
    scale = _Scale(start_ns, end_ns)
    dated = [(number, _anomaly_time(a, history), a) for number, a in enumerate(anomalies, start=1)]
    marks = [(number, at, a) for number, at, a in dated if at is not None]
    meta = history.meta
    heading = title or f"chaos run: seed {meta.get('seed', '?')}, target {meta.get('target', '?')}"
    counts = (
        f"{len(history.operations)} operations, {len(history.tasks)} tasks, "
        f"{len(history.windows)} fault/crash windows, {len(anomalies)} anomalies "
        f'(<span id="marker-count">?</span> marked on the timeline)'
    )
    legend = "".join(
        f'<span><i class="sw" style="background:{color}"></i>{name}</span>'
        for name, color in (
            ("ok", _COLORS["ok"]),
            ("definite error", _COLORS["fail"]),
            ("unknown outcome", _COLORS["unknown"]),
            ("network fault", "#7e57c2"),
            ("process crash/pause", "#37474f"),
            ("anomaly", "#d50000"),
        )
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(heading)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head>"
        f'<body><h1>{_esc(heading)}</h1><p>{counts}</p><p class="legend">{legend}</p>'
        '<pre id="errors"></pre>'
        f"<h2>Operations of each client over time</h2>{_timeline_svg(history, scale, marks)}"
        f"<h2>Latency over time</h2>{_latency_svg(history, scale)}"
        f"<h2>Anomalies</h2>{_anomaly_table(dated, scale)}"
        f"{_task_sections(history, anomalies, scale)}</body></html>\n"
    )
