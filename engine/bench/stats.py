"""Statistics over raw samples. Percentiles come from all samples merged, never averaged."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.bench.client import Sample

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class Summary:
    requests: int
    errors: int
    errors_by_status: dict[str, int]
    throughput: float  # requests per second of wall time
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples: Iterable[Sample], duration_s: float) -> Summary:
    samples = list(samples)
    latencies = np.array([s.latency_ms for s in samples], dtype=float)
    errors = Counter(str(s.status) for s in samples if not s.ok)
    if latencies.size:
        p50, p90, p95, p99 = (float(v) for v in np.percentile(latencies, PERCENTILES))
        mean, peak = float(latencies.mean()), float(latencies.max())
    else:
        p50 = p90 = p95 = p99 = mean = peak = 0.0
    return Summary(
        requests=len(samples),
        errors=sum(errors.values()),
        errors_by_status=dict(sorted(errors.items())),
        throughput=len(samples) / duration_s if duration_s > 0 else 0.0,
        mean_ms=mean,
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=peak,
    )
