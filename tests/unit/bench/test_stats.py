from __future__ import annotations

import numpy as np

from engine.bench.client import Sample
from engine.bench.report import render_table
from engine.bench.scenarios import ScenarioResult, merge
from engine.bench.stats import summarize


def samples(latencies: list[float], status: int = 200, target: str = "s/0/m-0") -> list[Sample]:
    return [
        Sample(target, i * 0.01, lat, status, "" if status == 200 else "boom")
        for i, lat in enumerate(latencies)
    ]


def test_percentiles_are_those_of_the_raw_latencies() -> None:
    latencies = [float(x) for x in range(1, 101)]
    summary = summarize(samples(latencies), duration_s=2.0)
    expected = np.percentile(latencies, [50, 90, 95, 99])
    assert [summary.p50_ms, summary.p90_ms, summary.p95_ms, summary.p99_ms] == list(expected)
    assert summary.max_ms == 100.0 and summary.mean_ms == 50.5
    assert summary.requests == 100 and summary.throughput == 50.0


def test_errors_are_counted_by_status() -> None:
    summary = summarize(samples([1, 2], 200) + samples([3], 503) + samples([4, 5], 0), 1.0)
    assert summary.errors == 3
    assert summary.errors_by_status == {"0": 2, "503": 1}


def test_merged_results_give_the_percentiles_of_all_samples() -> None:
    rng = np.random.default_rng(7)
    a = samples(list(rng.exponential(10, 500)))
    b = samples(list(rng.exponential(50, 300)))  # a slower client: averaging would hide it
    merged = merge(
        [
            ScenarioResult("load", "benchmark", a, 0, 10),
            ScenarioResult("load", "benchmark", b, 0, 10),
        ]
    ).summary()
    pooled = summarize(a + b, 10)
    assert merged == pooled
    averaged = (summarize(a, 10).p99_ms + summarize(b, 10).p99_ms) / 2
    assert abs(merged.p99_ms - averaged) > 1  # the statistic the old tool reported was wrong


def test_results_round_trip_through_json() -> None:
    result = ScenarioResult("smoke", "sequential", samples([1.5, 2.5]), 1700000000.0, 0.1, 2)
    again = ScenarioResult.from_dict(result.to_dict())
    assert again.samples == result.samples and again.summary() == result.summary()


def test_by_target_and_server() -> None:
    result = ScenarioResult(
        "r", "random", samples([1], target="a/0/m-0") + samples([2], target="b/1/m-1"), 0, 1
    )
    assert set(result.by_target()) == {"a/0/m-0", "b/1/m-1"}
    assert set(result.by_server()) == {"a", "b"}


def test_table() -> None:
    ok = ScenarioResult("smoke", "sequential", samples([10.0, 20.0, 30.0, 40.0]), 0, 0.5)
    bad = ScenarioResult("random", "random", samples([5.0]) + samples([7.0], 503), 0, 1.0)
    assert render_table([ok, bad]) == "\n".join(
        [
            "scenario  kind        requests  errors  req/s  p50 ms  p90 ms  p95 ms  p99 ms  max ms",
            "smoke     sequential         4       0    8.0    25.0    37.0    38.5    39.7    40.0",
            "random    random             2       1    2.0     6.0     6.8     6.9     7.0     7.0",
            "random: 1 x HTTP 503: boom",
        ]
    )
    assert not bad.ok and ok.ok
