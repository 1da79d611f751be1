"""Refresh-only: observe every recorded step, record what was seen, change nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import DoinferError
from engine.graph.build import build_steps
from engine.graph.refresh import observe_recorded, record_refresh
from engine.graph.render import render_refresh
from engine.graph.step import Observation
from engine.state import StateStore

from .test_plan import applied_state


def test_refresh_records_what_it_saw_and_nothing_else(make_spec, tmp_path: Path) -> None:
    store = StateStore(tmp_path, "demo", "default")
    state = applied_state(build_steps(make_spec(), tmp_path / "cache"))
    state.steps["deploy/gone"] = {"kind": "deploy", "fingerprint": "f", "inputs": {"x": 1}}
    state.lineage = ""
    store.save(state)
    seen: list[tuple[str, dict]] = []

    def observe(step, record) -> Observation:
        seen.append((step.id, step.inputs))
        if step.id == "deploy/tiny":
            return Observation(drift=("replica 1 (pid 42) is not running",))
        return Observation()

    before = store.load()
    refresh = observe_recorded(before, observe)
    assert ("deploy/gone", {"x": 1}) in seen  # observed as recorded, even off the spec
    assert refresh.drifted == [("deploy/tiny", ("replica 1 (pid 42) is not running",))]
    text = render_refresh(refresh)
    assert "  deploy/tiny     drifted\n        replica 1 (pid 42) is not running" in text
    assert text.endswith(
        "Refresh: 1 of 5 recorded step(s) drifted. Applying it records this "
        "in the state and changes nothing that runs."
    )

    record_refresh(refresh, store)
    after = store.load()
    assert after.serial == before.serial + 1
    assert after.steps["deploy/tiny"]["observed"]["drift"] == ["replica 1 (pid 42) is not running"]
    assert after.steps["pack/tiny"]["observed"]["drift"] == []
    for step_id, record in before.steps.items():  # nothing else in any record changed
        assert {k: v for k, v in after.steps[step_id].items() if k != "observed"} == record


def test_a_refresh_is_not_recorded_over_a_newer_state(make_spec, tmp_path: Path) -> None:
    store = StateStore(tmp_path, "demo", "default")
    store.save(applied_state(build_steps(make_spec(), tmp_path / "cache")))
    refresh = observe_recorded(store.load(), lambda step, record: Observation())
    store.save(store.load())  # another apply recorded something meanwhile
    with pytest.raises(DoinferError, match="changed while it was observed"):
        record_refresh(refresh, store)
