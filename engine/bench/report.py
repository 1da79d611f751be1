"""Plain-text tables of benchmark results and of the change between two runs (the CLI
prints them)."""

from __future__ import annotations

from engine.bench.results import BenchRun, ScenarioResult
from engine.bench.stats import Summary

COLUMNS = (
    "scenario",
    "kind",
    "requests",
    "errors",
    "req/s",
    "p50 ms",
    "p90 ms",
    "p95 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
)
DETAIL_LIMIT = 12  # more replicas or models than this: only the HTML report lists them


def render_table(results: list[ScenarioResult]) -> str:
    rows = [COLUMNS]
    rows += [(r.name, r.kind, *summary_cells(r.summary())) for r in results]
    lines = _align(rows, left=2)
    for result in results:
        for status, count in result.summary().errors_by_status.items():
            example = next(s.error for s in result.samples if str(s.status) == status)
            label = "no answer" if status == "0" else f"HTTP {status}"
            lines.append(f"{result.name}: {count} x {label}: {example}")
        lines.extend(f"{result.name}: note: {note}" for note in result.notes)
    return "\n".join(lines)


def render_details(results: list[ScenarioResult]) -> str:
    """Per replica and per model, for benchmarks with more than one of either (probes'
    few requests say little per group; the HTML report has them all)."""
    blocks = []
    for result in results:
        if result.kind != "benchmark":
            continue
        for title, groups in (("replica", result.by_replica()), ("model", result.by_model())):
            if 1 < len(groups) <= DETAIL_LIMIT:
                rows = [(title, *COLUMNS[2:])]
                rows += [(name, *summary_cells(s)) for name, s in groups.items()]
                blocks.append(f"{result.name} by {title}:\n" + "\n".join(_align(rows, left=1)))
    return "\n\n".join(blocks)


def render_verdicts(results: list[ScenarioResult]) -> str:
    """One line per scenario that states an SLO or missed one."""
    lines = []
    for result in results:
        verdicts = result.verdicts()
        missed = [v for v in verdicts if not v.met]
        stated = [v for v in verdicts if v.stated and v.objective != "requests"]
        if missed:
            lines.append(f"{result.name}: SLO missed: " + "; ".join(str(v) for v in missed))
        elif result.settings.get("slo"):
            lines.append(f"{result.name}: SLO met: " + "; ".join(str(v) for v in stated))
    return "\n".join(lines)


COMPARED = (
    ("requests", "requests", "{:.0f}"),
    ("req/s", "throughput", "{:.1f}"),
    ("error rate", "error_rate", "{:.2%}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p90 ms", "p90_ms", "{:.1f}"),
    ("p95 ms", "p95_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("p99.9 ms", "p999_ms", "{:.1f}"),
    ("max ms", "max_ms", "{:.1f}"),
)


def render_compare(a: BenchRun, b: BenchRun, a_name: str, b_name: str) -> str:
    """What changed from run A to run B, scenario by scenario, metric by metric."""
    first = {r.name: r for r in a.results}
    second = {r.name: r for r in b.results}
    blocks = [f"A: {a_name} ({a.spec}/{a.environment})\nB: {b_name} ({b.spec}/{b.environment})"]
    for name in [*first, *(n for n in second if n not in first)]:
        if name not in second or name not in first:
            where = "A" if name in first else "B"
            blocks.append(f"{name}: only in {where}")
            continue
        sa, sb = first[name].summary(), second[name].summary()
        rows = [(name, "A", "B", "change")]
        for label, field, fmt in COMPARED:
            va, vb = float(getattr(sa, field)), float(getattr(sb, field))
            rows.append((f"  {label}", fmt.format(va), fmt.format(vb), _change(va, vb, field)))
        blocks.append("\n".join(_align(rows, left=1)))
    return "\n\n".join(blocks)


def _change(a: float, b: float, field: str) -> str:
    if field == "error_rate":
        return f"{(b - a) * 100:+.2f} pt"
    if a == 0:
        return "=" if b == 0 else "new"
    return f"{(b - a) / a:+.1%}"


def summary_cells(s: Summary) -> tuple[str, ...]:
    return (
        str(s.requests),
        str(s.errors),
        f"{s.throughput:.1f}",
        f"{s.p50_ms:.1f}",
        f"{s.p90_ms:.1f}",
        f"{s.p95_ms:.1f}",
        f"{s.p99_ms:.1f}",
        f"{s.p999_ms:.1f}",
        f"{s.max_ms:.1f}",
    )


def _align(rows: list[tuple[str, ...]], left: int) -> list[str]:
    """Columns padded to width; the first `left` columns left-aligned, numbers right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i < left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
