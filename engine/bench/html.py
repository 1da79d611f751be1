"""The HTML report of a benchmark run: one self-contained page (inline CSS and SVG, no
script, nothing fetched), with latency over time and the latency distribution per scenario.
"""

from __future__ import annotations

import datetime
import math
from html import escape

import numpy as np

from engine.bench.report import COLUMNS, summary_cells
from engine.bench.results import BenchRun, ScenarioResult
from engine.bench.stats import interval_of
from engine.bench.svg import Axis, Chart, fmt

BLUE, ORANGE, RED, GREY, GREEN = "#1f77b4", "#ff7f0e", "#d62728", "#9aa7b4", "#2ca02c"
MAX_DOTS = 4000  # samples drawn on a timeline; the slowest of each interval always are
NINES = 4  # the distribution's x axis reaches 99.99% when there are samples enough
MIN_CHART_SAMPLES = 10

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1180px;
       color: #222; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 36px;
     border-top: 1px solid #ddd; padding-top: 18px; }
h3 { font-size: 14px; margin: 18px 0 6px; }
.meta, .settings { color: #555; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { padding: 3px 10px; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child, td.text { text-align: left; }
th { background: #f6f6f6; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.met { color: #1a7f37; } .missed { color: #c62828; font-weight: 600; }
.note { background: #fff8e1; border-left: 3px solid #f0b400; padding: 4px 8px; margin: 4px 0; }
"""


def render_html(run: BenchRun) -> str:
    when = datetime.datetime.fromtimestamp(run.started_at).strftime("%Y-%m-%d %H:%M:%S")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>doinfer bench: {escape(run.spec)}/{escape(run.environment)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>doinfer bench: {escape(run.spec)}/{escape(run.environment)}</h1>",
        f'<p class="meta">{when}, runtime {escape(run.runtime)}, '
        f"{len(run.results)} scenario(s). Latencies count from each request's intended send "
        f"time in open-loop scenarios; percentiles are taken over every client's samples "
        f"together.</p>",
        _overview(run.results),
    ]
    parts += [_scenario(result) for result in run.results]
    parts.append("</body></html>")
    return "\n".join(parts)


def _overview(results: list[ScenarioResult]) -> str:
    rows = []
    for result in results:
        rows.append(
            (
                f'<a href="#{escape(result.name)}">{escape(result.name)}</a>',
                escape(result.kind),
                *summary_cells(result.summary()),
                _status(result),
            )
        )
    return _table((*COLUMNS, "objectives"), rows)


def _scenario(result: ScenarioResult) -> str:
    summary = result.summary()
    parts = [
        f'<h2 id="{escape(result.name)}">{escape(result.name)}</h2>',
        f'<p class="settings">{escape(_describe(result))}</p>',
        _table(COLUMNS[2:], [summary_cells(summary)]),
        _verdicts(result),
    ]
    parts += [f'<div class="note">{escape(note)}</div>' for note in result.notes]
    parts.append(_errors(result))
    if len(result.samples) < MIN_CHART_SAMPLES:
        parts.append(f"<p>{len(result.samples)} samples: too few to chart.</p>")
    else:
        parts.append('<div class="charts">')
        parts += [_latency_over_time(result), _throughput_over_time(result)]
        parts += [_distribution(result), _histogram(result)]
        parts.append("</div>")
    for title, groups in (("By replica", result.by_replica()), ("By model", result.by_model())):
        parts.append(f"<h3>{title}</h3>")
        parts.append(
            _table(
                (title.split()[1], *COLUMNS[2:]),
                [(escape(k), *summary_cells(v)) for k, v in groups.items()],
            )
        )
    if result.clients and any(c.get("lag") for c in result.clients):
        parts.append("<h3>Load clients (open loop: how late requests left)</h3>")
        rows = []
        for c in result.clients:
            lag = c.get("lag") or {}
            rows.append(
                (
                    str(c["client"]),
                    str(c["sent"]),
                    f"{lag.get('p50_ms', 0):.2f}",
                    f"{lag.get('p99_ms', 0):.2f}",
                    f"{lag.get('max_ms', 0):.2f}",
                    str(lag.get("late", 0)),
                )
            )
        parts.append(
            _table(("client", "sent", "lag p50 ms", "lag p99 ms", "lag max ms", "late"), rows)
        )
    return "\n".join(parts)


def _describe(result: ScenarioResult) -> str:
    s = result.settings
    if result.kind == "sequential":
        return f"sequential: one request to each of {result.targets} targets"
    if result.kind == "random":
        return (
            f"random: {s.get('requests')} requests one at a time, "
            f"{s.get('interval_ms', 0):g} ms apart, over {result.targets} targets"
        )
    clients = s.get("clients", 1)
    if s.get("rate"):
        load = (
            f"open loop, {clients} client(s) x {s['rate']:g} requests/s "
            f"({s.get('arrivals', 'poisson')} arrivals)"
        )
    else:
        load = f"closed loop, {clients} client(s) x {s.get('concurrency')} in flight"
    return (
        f"benchmark: {load}, {s.get('duration_s', 0):g} s measured after "
        f"{s.get('warmup_s', 0):g} s of warm-up, over {result.targets} targets"
        + (f", weights {s['weights']}" if s.get("weights") else "")
    )


def _verdicts(result: ScenarioResult) -> str:
    items = []
    for v in result.verdicts():
        if v.objective == "requests" and v.met:
            continue
        css = "met" if v.met else "missed"
        items.append(f'<li class="{css}">{"met" if v.met else "MISSED"}: {escape(str(v))}</li>')
    return f"<ul>{''.join(items)}</ul>"


def _errors(result: ScenarioResult) -> str:
    """Errors by status, each with the first answer's text as an example."""
    rows = []
    for status, count in result.summary().errors_by_status.items():
        example = next(s.error for s in result.samples if str(s.status) == status)
        label = "no answer" if status == "0" else f"HTTP {status}"
        rows.append((escape(label), str(count), f'<span class="text">{escape(example)}</span>'))
    return _table(("error", "count", "example"), rows) if rows else ""


def _status(result: ScenarioResult) -> str:
    missed = [v for v in result.verdicts() if not v.met]
    if missed:
        return f'<span class="missed">missed: {escape("; ".join(str(v) for v in missed))}</span>'
    return '<span class="met">met</span>'


def _latency_axis(latencies: np.ndarray) -> Axis:
    low, high = float(latencies.min()), float(latencies.max())
    if high / max(low, 1e-3) > 20:  # a tail far above the body: a log axis shows both
        return Axis(10 ** math.floor(math.log10(max(low, 1e-2))), _ceil_nice(high), log=True)
    return Axis(0, _ceil_nice(high * 1.05))


def _ceil_nice(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= value)


def _latency_over_time(result: ScenarioResult) -> str:
    step, intervals = result.timeline()
    starts = np.array([s.start for s in result.samples])
    latencies = np.array([s.latency_ms for s in result.samples])
    ok = np.array([s.ok for s in result.samples])
    chart = Chart(
        "Latency over time",
        Axis(0, max(result.duration_s, step)),
        _latency_axis(latencies),
        "seconds since measuring began (send time)",
        "latency, ms",
    )
    keep = np.zeros(len(latencies), dtype=bool)
    keep[:: max(1, math.ceil(len(latencies) / MAX_DOTS))] = True
    bins = [interval_of(start, step, len(intervals)) for start in starts]
    slowest = np.full(len(intervals), -1)
    for i in np.argsort(latencies):
        slowest[bins[i]] = i  # ascending order: the last one written is the slowest
    keep[slowest[slowest >= 0]] = True
    chart.dots(
        list(zip(starts[keep & ok], latencies[keep & ok], strict=True)), GREY, "sample", 2.0, 0.6
    )
    if (~ok).any():
        chart.dots(list(zip(starts[~ok], latencies[~ok], strict=True)), RED, "error", 2.2, 0.8)
    for field, colour in (("p50_ms", BLUE), ("p99_ms", ORANGE)):
        runs: list[list[tuple[float, float]]] = [[]]
        for i in intervals:  # an interval without requests breaks the line
            if i.requests:
                runs[-1].append((i.start_s + step / 2, getattr(i, field)))
            elif runs[-1]:
                runs.append([])
        for n, points in enumerate(runs):
            chart.line(points, colour, "" if n else f"{field[:3]} per {step:g}s")
    _slo_lines(chart, result)
    return chart.svg()


def _throughput_over_time(result: ScenarioResult) -> str:
    step, intervals = result.timeline()
    rates = [i.requests / step for i in intervals]
    chart = Chart(
        "Throughput over time",
        Axis(0, max(result.duration_s, step)),
        Axis(0, _ceil_nice(max(rates) * 1.1) if any(rates) else 1.0),
        "seconds since measuring began (send time)",
        "answers/s",
    )
    chart.bars(
        [(i.start_s, i.start_s + step, i.requests / step) for i in intervals], BLUE, "answers"
    )
    if any(i.errors for i in intervals):
        chart.bars(
            [(i.start_s, i.start_s + step, i.errors / step) for i in intervals], RED, "errors"
        )
    return chart.svg()


def _distribution(result: ScenarioResult) -> str:
    """Latency by percentile on a 'nines' axis, where the tail gets the room it needs."""
    latencies = np.array([s.latency_ms for s in result.samples])
    nines = min(NINES, max(1.0, math.log10(max(len(latencies), 10))))
    top = 100 * (1 - 10**-nines)
    xs = 100 * (1 - 10 ** -np.linspace(0, nines, 240))
    ys = np.percentile(latencies, xs)

    def transform(p: float) -> float:
        return -math.log10(max(1e-9, 1 - min(p, top) / 100))

    ticks = [(p, f"{p:g}%") for p in (0, 50, 90, 99, 99.9, 99.99) if p <= top + 1e-9]
    chart = Chart(
        "Latency distribution",
        Axis(0, top, ticks=ticks, transform=transform),
        _latency_axis(latencies),
        "percentile",
        "latency, ms",
    )
    chart.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), BLUE, "latency at percentile")
    s = result.summary()
    chart.dots(
        [
            (p, v)
            for p, v in ((50, s.p50_ms), (90, s.p90_ms), (99, s.p99_ms), (99.9, s.p999_ms))
            if p <= top
        ],
        ORANGE,
        "p50 p90 p99 p99.9",
        3.2,
        0.9,
    )
    _slo_lines(chart, result)
    return chart.svg()


def _histogram(result: ScenarioResult) -> str:
    latencies = np.array([s.latency_ms for s in result.samples])
    axis = _latency_axis(latencies)
    if axis.log:
        edges = np.geomspace(axis.low, axis.high, 41)
    else:
        edges = np.linspace(axis.low, axis.high, 41)
    counts, _ = np.histogram(latencies, edges)
    chart = Chart(
        "Latency histogram",
        Axis(axis.low, axis.high, log=axis.log),
        Axis(0, _ceil_nice(float(counts.max()) * 1.1) if counts.any() else 1.0),
        "latency, ms" + (" (log scale)" if axis.log else ""),
        "answers",
    )
    chart.bars(
        [(float(edges[i]), float(edges[i + 1]), float(c)) for i, c in enumerate(counts)], BLUE
    )
    return chart.svg()


def _slo_lines(chart: Chart, result: ScenarioResult) -> None:
    slo = result.settings.get("slo") or {}
    for key, label in (("p99_ms", "p99 SLO"), ("p95_ms", "p95 SLO"), ("p50_ms", "p50 SLO")):
        if slo.get(key):
            chart.hline(float(slo[key]), GREEN, f"{label} {fmt(float(slo[key]))} ms")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Cells of `rows` are HTML already (escaped by the caller); headers are text."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
