"""The HTML page of a load report: one self-contained file (inline SVG and a little script, no network).

``render(report)`` draws, from the JSON report alone: latency percentiles over time (submit and
end-to-end), throughput offered vs sent vs acknowledged vs completed, the backlog over time, and
the latency distribution on a percentile scale; then the figures, the SLO, errors by code, the
anomalies and, for ``--find-max``, every step. The warm-up is shaded and the end of the schedule
marked. The script only checks the page (``data-check`` on ``<body>``: ``ok`` once every chart
has its lines, else what is missing) and adds hover read-outs.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["render"]

_W: Final = 760
_H: Final = 260
_PAD_L: Final = 64
_PAD_R: Final = 16
_PAD_T: Final = 28
_PAD_B: Final = 40
_COLOURS: Final = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")

Series = tuple[str, Sequence[float | None], str, bool]
"""(name, values, colour, dashed)."""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return float(step * exponent)
    return float(10 * exponent)


def _chart(
    chart_id: str,
    title: str,
    xs: Sequence[float],
    series: Sequence[Series],
    y_label: str,
    *,
    x_label: str = "seconds since start",
    shade_until: float | None = None,
    mark_at: float | None = None,
    x_ticks: Sequence[tuple[float, str]] | None = None,
) -> str:
    """One line chart as inline SVG; each series a polyline (gaps where a value is None)."""
    values = [v for _, vs, _, _ in series for v in vs if v is not None]
    y_max = _nice_max(max(values, default=0.0) * 1.05)
    x_min = min(xs, default=0.0)
    x_max = max(xs, default=1.0)
    if x_max <= x_min:
        x_max = x_min + 1.0
    plot_w = _W - _PAD_L - _PAD_R
    plot_h = _H - _PAD_T - _PAD_B

    def px(x: float) -> float:
        return _PAD_L + (x - x_min) / (x_max - x_min) * plot_w

    def py(y: float) -> float:
        return _PAD_T + plot_h - y / y_max * plot_h

    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
        f'role="img" aria-label="{_esc(title)}" data-xmin="{x_min}" data-xmax="{x_max}" data-ymax="{y_max}">',
        f'<text x="{_PAD_L}" y="16" class="title">{_esc(title)}</text>',
    ]
    if shade_until is not None and shade_until > x_min:
        parts.append(
            f'<rect class="warmup" x="{px(x_min):.1f}" y="{_PAD_T}" '
            f'width="{px(min(shade_until, x_max)) - px(x_min):.1f}" '
            f'height="{plot_h}"><title>warm-up (not in the figures)</title></rect>'
        )
    for i in range(5):
        y = y_max * i / 4
        parts.append(
            f'<line class="grid" x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{py(y):.1f}" y2="{py(y):.1f}"/>'
            f'<text class="tick" x="{_PAD_L - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>'
        )
    ticks = x_ticks or [
        (x_min + (x_max - x_min) * i / 5, f"{x_min + (x_max - x_min) * i / 5:.3g}") for i in range(6)
    ]
    for x, label in ticks:
        parts.append(
            f'<text class="tick" x="{px(x):.1f}" y="{_H - _PAD_B + 16}" '
            f'text-anchor="middle">{_esc(label)}</text>'
        )
    if mark_at is not None and x_min < mark_at <= x_max:
        parts.append(
            f'<line class="mark" x1="{px(mark_at):.1f}" x2="{px(mark_at):.1f}" '
            f'y1="{_PAD_T}" y2="{_PAD_T + plot_h}">'
            "<title>end of the schedule</title></line>"
        )
    parts.append(
        f'<text class="axis" x="{_PAD_L + plot_w / 2}" y="{_H - 6}" '
        f'text-anchor="middle">{_esc(x_label)}</text>'
        f'<text class="axis" transform="translate(14 {_PAD_T + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle">{_esc(y_label)}</text>'
    )
    legend_x = _PAD_L + 8
    for name, vs, colour, dashed in series:
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        runs: list[list[str]] = [[]]
        for x, v in zip(xs, vs, strict=False):
            if v is None:
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append(f"{px(x):.1f},{py(v):.1f}")
        for points in runs:
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(
                    f'<circle class="line" data-series="{_esc(name)}" cx="{cx}" cy="{cy}" r="2" '
                    f'fill="{colour}"/>'
                )
            elif points:
                parts.append(
                    f'<polyline class="line" data-series="{_esc(name)}" fill="none" stroke="{colour}" '
                    f'stroke-width="1.6"{dash} points="{" ".join(points)}"/>'
                )
        parts.append(
            f'<rect x="{legend_x}" y="{_PAD_T + 4}" width="10" height="10" fill="{colour}"/>'
            f'<text class="legend" x="{legend_x + 14}" y="{_PAD_T + 13}">{_esc(name)}</text>'
        )
        legend_x += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _nines(percentile: float) -> float:
    """A percentile on the 'nines' scale: 90 -> 1, 99 -> 2, 99.9 -> 3 (100 capped at 5)."""
    return min(5.0, -math.log10(max(1e-5, 1 - percentile / 100)))


def _run_charts(run: dict[str, Any], prefix: str = "") -> str:
    series = run["series"]
    t = series["t"]
    warmup = series["warmup_slots"] * series["interval_s"]
    end = series["schedule_slots"] * series["interval_s"]
    latency = _chart(
        f"{prefix}latency",
        "Latency over time (ms, per interval, by intended send time)",
        t,
        [
            ("submit p50", series["submit_ms"]["p50"], _COLOURS[0], True),
            ("submit p99", series["submit_ms"]["p99"], _COLOURS[0], False),
            ("e2e p50", series["e2e_ms"]["p50"], _COLOURS[1], True),
            ("e2e p99", series["e2e_ms"]["p99"], _COLOURS[1], False),
        ],
        "ms",
        shade_until=warmup,
        mark_at=end,
    )
    throughput = _chart(
        f"{prefix}throughput",
        "Throughput: offered vs sent vs acknowledged vs completed (per second)",
        t,
        [
            ("offered", series["offered"], "#7f7f7f", True),
            ("sent", series["sent"], _COLOURS[4], False),
            ("acknowledged", series["achieved"], _COLOURS[2], False),
            ("completed", series["completed"], _COLOURS[3], False),
            ("errors", series["errors"], _COLOURS[1], False),
        ],
        "per second",
        shade_until=warmup,
        mark_at=end,
    )
    backlog = _chart(
        f"{prefix}backlog",
        "Backlog: tasks submitted but not terminal",
        t,
        [("backlog", series["backlog"], _COLOURS[5], False)],
        "tasks",
        shade_until=warmup,
        mark_at=end,
    )
    distribution = run["distribution_ms"]
    nines = [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%"), (5.0, "max")]
    dist_series: list[Series] = []
    xs: list[float] = []
    for name, colour in (("submit", _COLOURS[0]), ("e2e", _COLOURS[1])):
        points = distribution.get(name) or []
        if not xs:
            xs = [_nines(p) for p, _ in points]
        dist_series.append((name, [ms for _, ms in points], colour, False))
    dist = _chart(
        f"{prefix}distribution",
        "Latency distribution (ms at each percentile, whole measured window)",
        xs or [0.0, 5.0],
        dist_series,
        "ms",
        x_label="percentile",
        x_ticks=nines,
    )
    return f'<div class="charts">{latency}{throughput}{backlog}{dist}</div>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _figures(run: dict[str, Any]) -> str:
    latency = run["latency_ms"]
    rows = []
    for name in ("submit", "e2e"):
        s = latency[name]
        rows.append([name, s["count"], s["p50"], s["p90"], s["p99"], s["p99.9"], s["max"], s["mean"]])
    generator = run["generator"]
    clock = run["clock_check"]
    facts = [
        ["offered", f"{run['offered_rate']:g} tasks/s"],
        ["achieved (acknowledged)", f"{run['achieved_rate']:g} tasks/s"],
        [
            "submits",
            f"{run['submits']['sent']} sent, {run['submits']['ok']} ok, "
            f"error share {100 * run['submits']['error_fraction']:.3f}%",
        ],
        ["tasks", ", ".join(f"{k} {v}" for k, v in run["tasks"]["by_status"].items()) or "none"],
        [
            "backlog",
            f"max {run['backlog']['max']}, at the end of the window {run['backlog']['at_end']}, "
            f"growing: {run['backlog']['growing']}",
        ],
        [
            "generator",
            ("kept its schedule" if generator["valid"] else "INVALID: " + generator["reason"])
            + f" (lag p99 {generator['lag_p99_ms']} ms, max {generator['max_lag_ms']} ms)",
        ],
        [
            "clocks",
            "server event times within the client's window: "
            f"{clock['checked'] - clock['outside']}/{clock['checked']}",
        ],
        [
            "tracking",
            f"{run['tracking']['reads']} reads after the window "
            f"({run['tracking']['reads_per_task']} per task)",
        ],
    ]
    errors = run["submits"]["errors_by_code"]
    error_table = _table(["gRPC code", "submits"], sorted(errors.items())) if errors else "<p>No errors.</p>"
    return (
        _table(["fact", "value"], facts, "facts")
        + "<h3>Latency (ms)</h3>"
        + _table(["latency", "count", "p50", "p90", "p99", "p99.9", "max", "mean"], rows, "latency")
        + "<h3>Errors by gRPC code</h3>"
        + error_table
    )


def render(report: dict[str, Any]) -> str:
    """The whole page for one report."""
    verdict = report.get("verdict", "")
    sections = [
        f'<h1>Load run: <span class="verdict {_esc(verdict)}">{_esc(verdict)}</span></h1>',
        f"<p>{_esc(report.get('mode') or '')} at <code>{_esc(report.get('target') or '')}</code>; generated "
        f"{_esc(report.get('generated_at'))}; machine: {report['machine']['cpus']} CPUs, load average "
        f"{_esc(report['machine']['load_average'])}.</p>",
    ]
    if report.get("error"):
        sections.append(f'<p class="error">{_esc(report["error"])}</p>')
    find_max = report.get("find_max")
    run = report.get("run")
    if find_max is not None:
        best = find_max["highest_sustainable_rate"]
        sections.append(
            "<h2>Highest sustainable rate</h2>"
            f'<p class="limit">{_esc(f"{best:g} tasks/s" if best is not None else "none found")}; '
            f"limited by: {_esc(find_max['limited_by'])}</p>"
            + _table(
                [
                    "rate",
                    "sustainable",
                    "achieved",
                    "errors",
                    "submit p99 ms",
                    "e2e p99 ms",
                    "backlog at end",
                    "why not",
                ],
                [
                    [
                        s["rate"],
                        s["sustainable"],
                        s["achieved_rate"],
                        f"{100 * s['error_fraction']:.3f}%",
                        s["submit_p99_ms"],
                        s["e2e_p99_ms"],
                        s["backlog_at_end"],
                        "; ".join(s["reasons"]),
                    ]
                    for s in find_max["steps"]
                ],
                "steps",
            )
        )
        if find_max.get("at") is not None:
            run = find_max["at"]
            sections.append(f"<h2>At {best:g} tasks/s</h2>")
    if run is not None:
        sections.append(_run_charts(run))
        sections.append("<h2>Figures</h2>" + _figures(run))
    slo = report.get("slo")
    if slo is not None:
        sections.append(
            "<h2>SLO</h2>"
            + _table(
                ["objective", "measured", "kept"],
                [[r["objective"], r["shown"], "yes" if r["ok"] else "BROKEN"] for r in slo["results"]],
                "slo",
            )
        )
    history = report.get("history")
    if history is not None:
        anomalies = history["anomalies"]
        sections.append(
            f"<h2>Correctness: {len(anomalies)} anomalies</h2>"
            f"<p>{history['operations']} submits and {history['tasks']} tasks checked by the chaos "
            "history checker.</p>"
        )
        if anomalies:
            sections.append(
                _table(
                    ["rule", "meaning", "task", "key", "evidence"],
                    [
                        [a["rule"], a["meaning"], a["task_id"], a["idempotency_key"], a["evidence"][:400]]
                        for a in anomalies[:200]
                    ],
                    "anomalies",
                )
            )
    config = json.dumps(report.get("config", {}), indent=1)
    sections.append(f"<h2>Settings</h2><pre>{_esc(config)}</pre>")
    return _PAGE.replace("__BODY__", "\n".join(sections)).replace("__TITLE__", _esc(f"load run: {verdict}"))


_PAGE: Final = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1600px}
h1 .verdict.ok{color:#2ca02c} h1 .verdict{color:#d62728}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.chart{border:1px solid #ddd;background:#fff}
.chart .title{font-weight:600;font-size:13px}
.chart .tick,.chart .legend,.chart .axis{font-size:11px;fill:#444}
.chart .grid{stroke:#eee} .chart .warmup{fill:#f3f3f3} .chart .mark{stroke:#999;stroke-dasharray:2 3}
table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
table.anomalies td{font-size:12px} .error{color:#d62728}
#readout{position:fixed;right:12px;top:12px;background:#ffe;border:1px solid #cc9;padding:4px 8px;
font-size:12px;display:none}
</style></head>
<body data-check="pending">
__BODY__
<div id="readout"></div>
<script>
(function () {
  "use strict";
  var problems = [];
  var charts = document.querySelectorAll("svg.chart");
  charts.forEach(function (svg) {
    if (!svg.querySelector(".line")) { problems.push(svg.id + " has no line"); }
  });
  document.body.setAttribute("data-charts", String(charts.length));
  var anomalyRows = document.querySelectorAll("table.anomalies tbody tr").length;
  document.body.setAttribute("data-anomalies", String(anomalyRows));
  var readout = document.getElementById("readout");
  charts.forEach(function (svg) {
    svg.addEventListener("mousemove", function (ev) {
      var box = svg.getBoundingClientRect();
      var x0 = Number(svg.dataset.xmin), x1 = Number(svg.dataset.xmax), y1 = Number(svg.dataset.ymax);
      var fx = (ev.clientX - box.left) / box.width * 760, fy = (ev.clientY - box.top) / box.height * 260;
      var x = x0 + (fx - 64) / (760 - 80) * (x1 - x0), y = y1 * (1 - (fy - 28) / (260 - 68));
      readout.style.display = "block";
      readout.textContent = svg.id + ": x=" + x.toFixed(2) + " y=" + y.toFixed(2);
    });
  });
  document.body.setAttribute("data-check", problems.length ? problems.join("; ") : "ok");
})();
</script>
</body></html>
"""
