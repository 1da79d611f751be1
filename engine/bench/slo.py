"""Service-level objectives: what a scenario's summary is held to.

A scenario that states no error_rate is held to no errors at all: errors are failures
unless the spec says how many it accepts. A scenario without a single answer fails too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.bench.stats import Summary

# objective -> (what it limits, the summary field, "max" or "min", unit)
OBJECTIVES: dict[str, tuple[str, str, str, str]] = {
    "p50_ms": ("p50", "p50_ms", "max", "ms"),
    "p95_ms": ("p95", "p95_ms", "max", "ms"),
    "p99_ms": ("p99", "p99_ms", "max", "ms"),
    "error_rate": ("error rate", "error_rate", "max", ""),
    "min_throughput": ("throughput (ok answers/s)", "ok_throughput", "min", "/s"),
}


@dataclass(frozen=True)
class Verdict:
    objective: str  # a key of OBJECTIVES, or "requests"
    limit: float
    actual: float
    met: bool
    stated: bool = True  # False: the implicit no-errors objective

    def __str__(self) -> str:
        if self.objective == "requests":
            return "no request was answered"
        if not self.stated:
            return f"error rate {self.actual:.2%} (no error_rate in the SLO: none accepted)"
        label, _, bound, unit = OBJECTIVES[self.objective]
        if self.objective == "error_rate":
            actual, limit = f"{self.actual:.2%}", f"{self.limit:.2%}"
        else:
            actual, limit = f"{self.actual:.1f}{unit}", f"{self.limit:g}{unit}"
        sign = ("<=" if self.met else ">") if bound == "max" else (">=" if self.met else "<")
        return f"{label} {actual} {sign} {limit}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdicts(slo: dict[str, float] | None, summary: Summary) -> list[Verdict]:
    objectives = dict(slo or {})
    stated = "error_rate" in objectives
    objectives.setdefault("error_rate", 0.0)
    found = [Verdict("requests", 1, summary.requests, summary.requests > 0)]
    for name, limit in objectives.items():
        if limit is None:
            continue
        _, field, bound, _ = OBJECTIVES[name]
        actual = float(getattr(summary, field))
        met = actual <= limit if bound == "max" else actual >= limit
        found.append(Verdict(name, float(limit), actual, met, stated or name != "error_rate"))
    return found
