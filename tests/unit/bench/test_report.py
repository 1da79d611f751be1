from __future__ import annotations

from pathlib import Path

import pytest

from engine.bench.report import render_compare, render_details, render_verdicts
from engine.bench.results import BenchRun, ScenarioResult
from engine.errors import DoinferError

from .conftest import bench_run, stalled_result


def test_compare_shows_each_metric_and_its_change() -> None:
    a = bench_run(stalled_result(seed=1), stalled_result("only-a"))
    faster = stalled_result(seed=1)
    faster.samples = [s.__class__(*s.to_list()) for s in faster.samples[:200]]
    b = bench_run(faster, stalled_result("only-b"))
    text = render_compare(a, b, "a.json", "b.json")
    lines = text.splitlines()
    assert lines[:2] == ["A: a.json (demo/default)", "B: b.json (demo/default)"]
    requests = next(line for line in lines if line.strip().startswith("requests"))
    assert requests.split() == ["requests", "400", "200", "-50.0%"]
    assert any(line.strip().startswith("p99.9 ms") for line in lines)
    assert "error rate" in text and " pt" in text
    assert "only-a: only in A" in text and "only-b: only in B" in text


def test_details_per_replica_and_model_only_for_more_than_one() -> None:
    text = render_details([stalled_result()])
    assert "load by replica:" in text and "web/0" in text and "web/1" in text
    assert "load by model:" not in text  # one model: the main table says it all


def test_verdict_lines() -> None:
    met = stalled_result("met", slo={"p50_ms": 100, "error_rate": 0.05})
    missed = stalled_result("missed", slo={"p99_ms": 100, "error_rate": 0.05})
    no_slo = stalled_result("plain")
    lines = render_verdicts([met, missed, no_slo]).splitlines()
    assert lines[0] == "met: SLO met: p50 21.2ms <= 100ms; error rate 1.00% <= 5.00%"
    assert lines[1].startswith("missed: SLO missed: p99 ") and lines[1].endswith("> 100ms")
    assert (
        lines[2] == "plain: SLO missed: error rate 1.00% (no error_rate in the SLO: none accepted)"
    )


def test_bench_run_file_round_trip_and_bad_files(tmp_path: Path) -> None:
    run = bench_run(stalled_result())
    path = tmp_path / "run.json"
    run.write(path)
    again = BenchRun.load(path)
    assert again.results[0].summary() == run.results[0].summary()
    assert again.results[0].settings == run.results[0].settings
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    (tmp_path / "damaged.json").write_text('{"format": "doinfer-bench/1", "spec": "x"}')
    for name, message in [
        ("missing.json", "no such file"),
        ("junk.json", "not JSON"),
        ("other.json", "not a result of doinfer bench"),
        ("damaged.json", "a damaged doinfer bench result"),
    ]:
        with pytest.raises(DoinferError, match=message):
            BenchRun.load(tmp_path / name)


def test_scenario_result_without_optional_fields_loads() -> None:
    """Result files of the scenario step written before settings and clients existed."""
    old = {"name": "s", "kind": "sequential", "samples": [["w/0/m-0", 0, 5.0, 200, ""]]}
    result = ScenarioResult.from_dict(old | {"started_at": 0, "duration_s": 1})
    assert result.ok and result.settings == {}
