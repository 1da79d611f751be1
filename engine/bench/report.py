"""Plain-text tables of scenario results (the CLI prints them)."""

from __future__ import annotations

from engine.bench.scenarios import ScenarioResult

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
    "max ms",
)


def render_table(results: list[ScenarioResult]) -> str:
    rows = [COLUMNS]
    for result in results:
        s = result.summary()
        rows.append(
            (
                result.name,
                result.kind,
                str(s.requests),
                str(s.errors),
                f"{s.throughput:.1f}",
                f"{s.p50_ms:.1f}",
                f"{s.p90_ms:.1f}",
                f"{s.p95_ms:.1f}",
                f"{s.p99_ms:.1f}",
                f"{s.max_ms:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    for result in results:
        for status, count in result.summary().errors_by_status.items():
            example = next(s.error for s in result.samples if str(s.status) == status)
            label = "no answer" if status == "0" else f"HTTP {status}"
            lines.append(f"{result.name}: {count} x {label}: {example}")
        lines.extend(f"{result.name}: note: {note}" for note in result.notes)
    return "\n".join(lines)
