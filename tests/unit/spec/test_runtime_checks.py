"""What the spec's runtime must be: one this version registers, with a registry exactly
where the runtime uses one. validate and plan agree: both load the spec this way."""

from __future__ import annotations

import pytest

from engine.runtimes import RUNTIMES

from .conftest import VALID, errors_of, valid


def test_an_unregistered_kind_is_named_with_its_line(write) -> None:
    """The schema knows kubernetes; this version does not run it yet: an error, not 'valid'."""
    path = write("s.yaml", VALID.replace("{kind: local}", "{kind: kubernetes, namespace: qa}"))
    assert errors_of(path) == [
        f"{path}:11:17: error: runtime.kind 'kubernetes' is not available in this version "
        f"of doinfer; it has: local, docker"
    ]


def test_a_registry_on_a_runtime_that_runs_no_images(write) -> None:
    path = write("s.yaml", VALID.replace("{kind: local}", "{kind: local, registry: r.io/}"))
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:11:24: error: runtime.registry: the local runtime runs")


def test_a_runtime_that_requires_a_registry_asks_for_one(
    write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        RUNTIMES, "kubernetes", "tests.unit.runtimes.test_registry:FakeClusterRuntime"
    )
    text = VALID.replace("{kind: local}", "{kind: kubernetes}")
    path = write("s.yaml", text)
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:11:17: error: runtime.registry: the kubernetes runtime")
    spec = valid(
        write("ok.yaml", text.replace("{kind: kubernetes}", "{kind: kubernetes, registry: r.io/}"))
    )
    assert spec.runtime.registry == "r.io/"
