"""Golden plans: text and markdown of a create, an update in place, a replace with the
attribute that forces it, a delete and drift, as reviewers read them.

The files in golden/ are what the renderers must print, byte for byte. After an intended
change to the output, rewrite them with `pytest tests/unit/graph/test_golden_plans.py
--regen-golden` and review the diff like any other change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.graph import build
from engine.graph.build import build_steps
from engine.graph.plan import Plan
from engine.graph.render import render_markdown, render_text
from engine.graph.step import Observation
from engine.spec.model import (
    Batching,
    Model,
    Runtime,
    Scenario,
    Server,
    ServerModel,
    Spec,
    TraceParams,
)
from engine.state import State

from .test_plan import applied_state, plan_of

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def fixed_code_and_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fingerprints (and so the plan hash) must not follow the installed torch or a change
    to the server's code: the goldens pin the renderers, not the machine."""
    monkeypatch.setattr(build, "_library_versions", lambda: {"torch": "2.x", "transformers": "4.x"})
    monkeypatch.setattr(build, "server_code_digest", lambda: "0123456789abcdef")


def spec(
    *,
    replicas: int = 2,
    instances: int = 1,
    sequence_length: int = 128,
    servers: tuple[str, ...] = ("qa",),
    threads: int | None = None,
) -> Spec:
    return Spec(
        api_version="doinfer/v1",
        name="shop",
        environment="staging",
        models=(
            Model(
                "bert-qa",
                "hf:distilbert-base-cased-distilled-squad",
                "question-answering",
                TraceParams(sequence_length=sequence_length),
            ),
        ),
        hosts=(),
        servers=tuple(
            Server(
                name,
                "cpu",
                (ServerModel("bert-qa", instances),),
                replicas=replicas,
                batching=Batching(max_batch_size=8),
                threads=threads,  # None: decided at apply, from the cores and all replicas
            )
            for name in servers
        ),
        runtime=Runtime(),
        scenarios=(Scenario("smoke", "sequential"),),
        path=Path("/specs/shop/envs/staging.yaml"),
        document={},
    )


def steps_of(s: Spec, tmp_path: Path):
    return build_steps(s, tmp_path / "cache")


def create(tmp_path: Path) -> Plan:
    return plan_of(steps_of(spec(), tmp_path), State("shop", "staging"), environment="staging")


def update_in_place(tmp_path: Path) -> Plan:
    """Replicas scale in place when the threads are set: with threads decided at apply,
    every replica's share of the cores would change, and they would restart."""
    state = applied_state(steps_of(spec(replicas=2, threads=1), tmp_path))
    return plan_of(steps_of(spec(replicas=3, threads=1), tmp_path), state, environment="staging")


def replace(tmp_path: Path) -> Plan:
    state = applied_state(steps_of(spec(instances=1), tmp_path))
    return plan_of(steps_of(spec(instances=4), tmp_path), state, environment="staging")


def delete(tmp_path: Path) -> Plan:
    state = applied_state(steps_of(spec(servers=("qa", "qa-canary")), tmp_path))
    return plan_of(steps_of(spec(servers=("qa",)), tmp_path), state, environment="staging")


def drift(tmp_path: Path) -> Plan:
    steps = steps_of(spec(), tmp_path)

    def observe(step, record) -> Observation:
        if step.id == "deploy/qa":
            return Observation(drift=("replica 1 (pid 4242) is not running",))
        return Observation()

    return plan_of(steps, applied_state(steps), observe, environment="staging")


CASES = {
    "create": create,
    "update": update_in_place,
    "replace": replace,
    "delete": delete,
    "drift": drift,
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize(("form", "render"), [("txt", render_text), ("md", render_markdown)])
def test_golden_plan(name: str, form: str, render, tmp_path: Path, regen_golden: bool) -> None:
    rendered = render(CASES[name](tmp_path)) + "\n"
    path = GOLDEN / f"{name}.{form}"
    if regen_golden:
        path.write_text(rendered)
    assert path.exists(), f"{path} is missing: run pytest {__file__} --regen-golden"
    assert rendered == path.read_text(), f"{path} differs (regenerate with --regen-golden)"
