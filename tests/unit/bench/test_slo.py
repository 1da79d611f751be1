from __future__ import annotations

from engine.bench.client import Sample
from engine.bench.results import ScenarioResult
from engine.bench.slo import verdicts
from engine.bench.stats import summarize


def result(latencies: list[float], errors: int = 0, slo: dict | None = None) -> ScenarioResult:
    samples = [Sample("w/0/m-0", i * 0.1, lat, 200) for i, lat in enumerate(latencies)]
    samples += [Sample("w/0/m-0", 0.0, 1.0, 503, "busy") for _ in range(errors)]
    return ScenarioResult("load", "benchmark", samples, 0.0, 10.0, 1, settings={"slo": slo})


def test_every_stated_objective_is_judged() -> None:
    slo = {"p50_ms": 60, "p95_ms": 90, "p99_ms": 99, "error_rate": 0.01, "min_throughput": 9}
    found = {v.objective: v for v in result([float(x) for x in range(1, 101)], slo=slo).verdicts()}
    assert {k: v.met for k, v in found.items()} == {
        "requests": True,
        "p50_ms": True,
        "p95_ms": False,  # 95.05 ms
        "p99_ms": False,  # 99.01 ms
        "error_rate": True,
        "min_throughput": True,  # 100 ok answers in 10 s
    }
    assert str(found["p95_ms"]) == "p95 95.0ms > 90ms"
    assert str(found["min_throughput"]) == "throughput (ok answers/s) 10.0/s >= 9/s"


def test_without_an_error_rate_no_error_is_accepted() -> None:
    clean, failing = result([5.0] * 10), result([5.0] * 10, errors=1)
    assert clean.ok and not failing.ok
    (missed,) = [v for v in failing.verdicts() if not v.met]
    assert not missed.stated
    assert str(missed) == "error rate 9.09% (no error_rate in the SLO: none accepted)"


def test_a_stated_error_rate_accepts_that_many_errors() -> None:
    assert result([5.0] * 99, errors=1, slo={"error_rate": 0.01}).ok
    assert not result([5.0] * 98, errors=2, slo={"error_rate": 0.01}).ok


def test_throughput_counts_only_successful_answers() -> None:
    fast_failures = result([5.0] * 10, errors=90, slo={"min_throughput": 5, "error_rate": 1})
    (missed,) = [v for v in fast_failures.verdicts() if not v.met]
    assert missed.objective == "min_throughput" and missed.actual == 1.0


def test_no_answer_at_all_fails() -> None:
    (verdict, _) = verdicts(None, summarize([], 1.0))
    assert verdict.objective == "requests" and not verdict.met
    assert str(verdict) == "no request was answered"
