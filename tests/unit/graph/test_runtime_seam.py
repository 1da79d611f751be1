"""The graph asks the runtime class what a spec needs, and never names a runtime; what is
decided where the servers run is left to apply."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.graph.build import build_steps
from engine.runtimes import RUNTIMES, runtime_class
from engine.runtimes.base import ImageRuntime
from engine.spec.model import Runtime as RuntimeSettings


def test_a_registered_runtime_shapes_the_graph_by_its_declarations(
    make_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One registry line adds a runtime; the builder follows what its class declares."""
    monkeypatch.setitem(
        RUNTIMES, "kubernetes", "tests.unit.runtimes.test_registry:FakeClusterRuntime"
    )
    settings = RuntimeSettings(kind="kubernetes", registry="r.example/", namespace="qa")
    spec = dataclasses.replace(make_spec(), runtime=settings)
    steps = {s.id: s for s in build_steps(spec, tmp_path / "cache")}
    assert issubclass(runtime_class("kubernetes"), ImageRuntime)
    assert steps["pack/tiny"].needs == ("trace/tiny@cpu", "image/cpu")
    assert steps["deploy/tiny"].needs == ("pack/tiny", "push/tiny")
    deploy = steps["deploy/tiny"].inputs
    assert (deploy["namespace"], deploy["port"], deploy["runtime"]) == ("qa", 8080, "kubernetes")
    assert "container_port" not in deploy  # only what this runtime declares


def test_a_local_spec_has_no_image_steps(make_spec, tmp_path: Path) -> None:
    steps = {s.id: s for s in build_steps(make_spec(), tmp_path / "cache")}
    assert [s.split("/")[0] for s in steps] == ["trace", "pack", "deploy", "scenario"]
    assert "image" not in steps["pack/tiny"].inputs


def test_threads_left_to_the_spec_are_auto_and_known_after_apply(make_spec, tmp_path: Path) -> None:
    spec = make_spec()
    auto = dataclasses.replace(spec, servers=(dataclasses.replace(spec.servers[0], threads=None),))
    deploy = {s.id: s for s in build_steps(auto, tmp_path / "cache")}["deploy/tiny"]
    assert deploy.inputs["threads"] == "auto"
    assert deploy.inputs["cores_shared_by"] == 2  # the spec's replicas, not this machine
    assert deploy.after_apply == ("threads",)
    fixed = {s.id: s for s in build_steps(spec, tmp_path / "cache")}["deploy/tiny"]
    assert fixed.inputs["threads"] == 1 and "cores_shared_by" not in fixed.inputs
    assert fixed.after_apply == ()
