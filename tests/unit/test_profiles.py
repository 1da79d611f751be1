"""Measured profiles: one JSON form, and a cache keyed by what determines the numbers."""

from __future__ import annotations

import json
from pathlib import Path

from engine.artifacts import artifact_key
from engine.graph.fingerprint import fingerprint
from engine.packing.fleet import Profile
from engine.profiles import (
    LoadStep,
    MeasuredProfile,
    cache_file,
    cached_profile,
    profile_key,
    store_profile,
)
from tests.unit.steps.test_trace import INPUTS as TRACE_INPUTS

TRACE = {**TRACE_INPUTS, "versions": {"torch": "2.13.0"}}  # a trace step's inputs


def profile_inputs(trace: dict, **changes: object) -> dict:
    inputs = {
        "model": trace["model"],
        "task": trace["task"],
        "processor": "cpu",
        "artifact": artifact_key(trace),
        "precision": trace["trace"]["precision"],
        "slo_p99_ms": 100.0,
        "seconds": 5,
        "batching": {"max_batch_size": 8, "max_delay_ms": 2.0},
    }
    return inputs | changes


def measured(key: str) -> MeasuredProfile:
    ladder = (LoadStep(1, 40.5, 30.1, 0), LoadStep(2, 61.25, 80.0, 0), LoadStep(4, 62, 140, 0))
    return MeasuredProfile(key, 88.4, 61.25, 100.0, "2026-12-02 14:50 UTC", "here, 1 core", ladder)


def test_the_artifact_key_is_the_trace_caches_fingerprint() -> None:
    """Artifacts traced before the key moved to engine/artifacts.py keep their names."""
    subset = {k: TRACE[k] for k in ("source", "task", "processor", "trace", "calibration")}
    assert artifact_key(TRACE) == fingerprint(subset | {"versions": TRACE["versions"]}, {})


def test_a_different_precision_is_another_profile() -> None:
    bf16 = {**TRACE, "trace": {**TRACE["trace"], "precision": "bf16"}}
    assert profile_key(profile_inputs(TRACE)) != profile_key(profile_inputs(bf16))


def test_the_key_follows_the_terms_of_the_measurement_not_the_models_name() -> None:
    key = profile_key(profile_inputs(TRACE))
    assert profile_key(profile_inputs(TRACE, model="another-name")) == key
    assert profile_key(profile_inputs({**TRACE, "model": "other"})) == key  # same artifact
    assert profile_key(profile_inputs(TRACE, slo_p99_ms=50.0)) != key
    assert profile_key(profile_inputs(TRACE, seconds=2)) != key
    assert profile_key(profile_inputs(TRACE, batching={"max_batch_size": 1})) != key
    longer = {**TRACE, "trace": {**TRACE["trace"], "sequence_length": 256}}
    assert profile_key(profile_inputs(longer)) != key


def test_a_profile_has_one_json_form(tmp_path: Path) -> None:
    profile = measured("k")
    assert MeasuredProfile.from_json(json.loads(json.dumps(profile.to_json()))) == profile
    assert profile.profile == Profile(88.4, 61.25)
    assert profile.describe() == (
        "88 MiB, 61.2 requests/s per core within p99 100 ms "
        "(measured 2026-12-02 14:50 UTC on here, 1 core)"
    )


def test_the_cache_holds_a_profile_under_its_key(tmp_path: Path) -> None:
    key = profile_key(profile_inputs(TRACE))
    assert cached_profile(tmp_path, key) is None
    path = store_profile(tmp_path, measured(key))
    assert path == cache_file(tmp_path, key) == tmp_path / "profiles" / f"{key}.json"
    assert cached_profile(tmp_path, key) == measured(key)
    path.write_text("{not json")  # half a file: measured again, never trusted
    assert cached_profile(tmp_path, key) is None
    path.write_text(json.dumps(measured("another key").to_json()))
    assert cached_profile(tmp_path, key) is None
