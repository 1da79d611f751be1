"""Statistics over raw samples. Percentiles come from all samples merged, never averaged.

Latency percentiles cover every answer, errors included: a timed-out request is what its
user saw. Throughput counts every answer over the measured duration.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.bench.client import Sample

PERCENTILES = (50, 90, 95, 99, 99.9)
TIMELINE_STEPS_S = (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300)
TIMELINE_MAX_INTERVALS = 120


@dataclass(frozen=True)
class Summary:
    requests: int
    errors: int
    errors_by_status: dict[str, int]
    error_rate: float
    throughput: float  # answers per second of measured time
    ok_throughput: float  # successful answers per second
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Interval:
    """One step of the timeline: requests sent in [start_s, start_s + interval)."""

    start_s: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples: Iterable[Sample], duration_s: float) -> Summary:
    samples = list(samples)
    latencies = np.array([s.latency_ms for s in samples], dtype=float)
    errors = Counter(str(s.status) for s in samples if not s.ok)
    if latencies.size:
        p50, p90, p95, p99, p999 = (float(v) for v in np.percentile(latencies, PERCENTILES))
        mean, peak = float(latencies.mean()), float(latencies.max())
    else:
        p50 = p90 = p95 = p99 = p999 = mean = peak = 0.0
    failed = sum(errors.values())
    return Summary(
        requests=len(samples),
        errors=failed,
        errors_by_status=dict(sorted(errors.items())),
        error_rate=failed / len(samples) if samples else 0.0,
        throughput=len(samples) / duration_s if duration_s > 0 else 0.0,
        ok_throughput=(len(samples) - failed) / duration_s if duration_s > 0 else 0.0,
        mean_ms=mean,
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        p999_ms=p999,
        max_ms=peak,
    )


def timeline_step(duration_s: float) -> float:
    """The shortest usual step that keeps a timeline under TIMELINE_MAX_INTERVALS."""
    for step in TIMELINE_STEPS_S:
        if duration_s / step <= TIMELINE_MAX_INTERVALS:
            return float(step)
    return duration_s / TIMELINE_MAX_INTERVALS


def interval_of(start: float, step: float, count: int) -> int:
    """The timeline interval a send time falls in (1.0 / 0.1 is 10, though 1.0 // 0.1 is 9)."""
    return min(count - 1, max(0, int(start / step + 1e-9)))


def timeline(samples: list[Sample], duration_s: float) -> tuple[float, list[Interval]]:
    """(step, intervals) by send time; empty intervals are kept, so a silence shows."""
    step = timeline_step(duration_s)
    count = max(1, int(np.ceil(duration_s / step - 1e-9)))
    bins: list[list[Sample]] = [[] for _ in range(count)]
    for sample in samples:
        bins[interval_of(sample.start, step, count)].append(sample)
    intervals = []
    for i, members in enumerate(bins):
        latencies = np.array([s.latency_ms for s in members], dtype=float)
        p50, p99 = np.percentile(latencies, (50, 99)) if latencies.size else (0.0, 0.0)
        intervals.append(
            Interval(
                start_s=round(i * step, 6),
                requests=len(members),
                errors=sum(not s.ok for s in members),
                p50_ms=float(p50),
                p99_ms=float(p99),
                max_ms=float(latencies.max()) if latencies.size else 0.0,
            )
        )
    return step, intervals
