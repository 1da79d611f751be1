from __future__ import annotations

import numpy as np

from engine.bench.client import Sample
from engine.bench.plan import ClientResult
from engine.bench.report import render_table
from engine.bench.results import ScenarioResult, from_clients, merge
from engine.bench.stats import summarize, timeline, timeline_step


def samples(latencies: list[float], status: int = 200, target: str = "s/0/m-0") -> list[Sample]:
    return [
        Sample(target, i * 0.01, lat, status, "" if status == 200 else "boom")
        for i, lat in enumerate(latencies)
    ]


def test_percentiles_are_those_of_the_raw_latencies() -> None:
    latencies = [float(x) for x in range(1, 101)]
    summary = summarize(samples(latencies), duration_s=2.0)
    expected = np.percentile(latencies, [50, 90, 95, 99, 99.9])
    assert [
        summary.p50_ms,
        summary.p90_ms,
        summary.p95_ms,
        summary.p99_ms,
        summary.p999_ms,
    ] == list(expected)
    assert summary.max_ms == 100.0 and summary.mean_ms == 50.5
    assert summary.requests == 100 and summary.throughput == 50.0


def test_errors_are_counted_by_status() -> None:
    summary = summarize(samples([1, 2], 200) + samples([3], 503) + samples([4, 5], 0), 1.0)
    assert summary.errors == 3
    assert summary.errors_by_status == {"0": 2, "503": 1}
    assert summary.error_rate == 0.6
    assert summary.throughput == 5.0 and summary.ok_throughput == 2.0


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


def test_two_clients_merged_give_the_percentiles_of_all_their_samples() -> None:
    """The clients' own result files, as the worker writes them, merged into one result."""
    rng = np.random.default_rng(11)
    targets = ["web/0/m-0", "web/1/m-0"]

    def client(index: int, scale: float, count: int) -> ClientResult:
        rows = [
            [int(rng.integers(2)), i * 0.01, float(rng.exponential(scale)), 200, ""]
            for i in range(count)
        ]
        return ClientResult(index, targets, rows, 1000.0, 10.0, count)

    a, b = client(0, 5, 700), client(1, 80, 250)  # a fast and a slow client
    merged = from_clients("load", "benchmark", {}, [a, b]).summary()
    everything = [row[2] for row in a.samples + b.samples]
    expected = np.percentile(everything, [50, 90, 95, 99, 99.9])
    assert [merged.p50_ms, merged.p90_ms, merged.p95_ms, merged.p99_ms, merged.p999_ms] == list(
        expected
    )
    assert merged.requests == 950 and merged.max_ms == max(everything)
    assert merged.throughput == 95.0  # 950 answers over the clients' common 10 s


def test_a_late_client_is_shifted_onto_the_common_timeline() -> None:
    early = ClientResult(0, ["w/0/m-0"], [[0, 1.0, 5.0, 200, ""]], 1000.0, 4.0, 1)
    late = ClientResult(1, ["w/0/m-0"], [[0, 1.0, 5.0, 200, ""]], 1000.5, 4.0, 1)
    result = from_clients("load", "benchmark", {}, [early, late])
    assert sorted(s.start for s in result.samples) == [1.0, 1.5]
    assert result.started_at == 1000.0 and result.duration_s == 4.5


def test_timeline_keeps_empty_intervals() -> None:
    result = samples([10.0, 20.0, 30.0, 1000.0])  # sent at 0, 0.01, 0.02, 0.03 s
    moved = [Sample(s.target, s.start * 100, s.latency_ms, s.status) for s in result]
    step, intervals = timeline(moved, 4.0)  # sent at 0, 1, 2 and 3 s
    assert step == timeline_step(4.0) == 0.1
    assert len(intervals) == 40
    busy = [i for i in intervals if i.requests]
    assert [(i.start_s, i.requests, i.max_ms) for i in busy] == [
        (0.0, 1, 10.0),
        (1.0, 1, 20.0),
        (2.0, 1, 30.0),
        (3.0, 1, 1000.0),
    ]
    assert timeline_step(600) == 5 and timeline_step(3600) == 30


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
            "scenario  kind        requests  errors  req/s  p50 ms  p90 ms  p95 ms  p99 ms"
            "  p99.9 ms  max ms",
            "smoke     sequential         4       0    8.0    25.0    37.0    38.5    39.7"
            "      40.0    40.0",
            "random    random             2       1    2.0     6.0     6.8     6.9     7.0"
            "       7.0     7.0",
            "random: 1 x HTTP 503: boom",
        ]
    )
    assert not bad.ok and ok.ok
