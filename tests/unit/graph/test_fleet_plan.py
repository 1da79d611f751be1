"""A fleet in the plan: its packing at the JSON's top level, its bill in text and markdown,
one server per device on a node of its type, and few steps touched by a demand change."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict
from pathlib import Path

import pytest

from engine.canonical import canonical_json
from engine.graph.build import build_steps
from engine.graph.fleets import fleet_digest
from engine.graph.render import render_json, render_markdown, render_text
from engine.graph.step import Action
from engine.packing import BUILTIN, Demand, Fleet, Profile
from engine.spec import load_spec
from tests.unit.graph.test_plan import applied_state, plan_of


def write_fleet(
    directory: Path,
    count: int = 60,
    scale: float = 1.0,
    seed: int = 0,
    runtime: str = "{kind: local}",
) -> Path:
    rng = random.Random(seed)
    lines = ["apiVersion: doinfer/v1", "name: demo", "models:"]
    rates = []
    for i in range(count):
        lines += [
            f"  - name: m{i:03d}",
            f"    source: hf:acme/m{i:03d}",
            "    task: feature-extraction",
            f"    profiles: {{cpu: {{memory_mib: {rng.choice((300, 600, 900))}, "
            f"rate_per_core: {rng.randint(10, 30)}}}}}",
        ]
        rates.append(round(rng.paretovariate(1.2) * 2, 2))
    lines += [
        "servers:",
        "  - name: fleet",
        "    packing: auto",
        "    node_types: [c6i.xlarge, c6i.2xlarge]",
        "    models:",
        *(f"      - {{model: m{i:03d}, rate: {r * scale:.2f}}}" for i, r in enumerate(rates)),
        f"runtime: {runtime}",
        "scenarios: [{name: smoke, kind: sequential}]",
    ]
    path = directory / "fleet.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_json_carries_the_packing_at_its_top_level(tmp_path: Path) -> None:
    spec = load_spec(write_fleet(tmp_path))
    steps = build_steps(spec, tmp_path / "cache")
    data = json.loads(render_json(plan_of(steps, applied_state([]))))
    packing = data["packing"]["fleet"]
    assert set(packing) >= {"nodes", "cost_per_hour", "lower_bound_per_hour"}
    prices = 0.0
    routed: dict[str, float] = {}
    for node in packing["nodes"]:
        assert node["type"].startswith("c6i.") and node["price_per_hour"] > 0
        prices += node["price_per_hour"]
        for device in node["devices"]:
            for copy in device["copies"]:
                routed[copy["model"]] = routed.get(copy["model"], 0) + copy["rate"]
    assert abs(packing["cost_per_hour"] - prices) < 1e-6
    assert packing["lower_bound_per_hour"] <= packing["cost_per_hour"]
    cost = data["cost"]  # the plan's cost line: nothing ran before, the packing after
    assert cost["before"] is None and abs(cost["after"] - packing["cost_per_hour"]) < 1e-9
    assert any(line.startswith("fleet: ") and " x c6i." in line for line in cost["lines"])
    demand = {m.model: m.rate for m in spec.servers[0].models}
    assert routed.keys() == demand.keys()
    assert all(abs(routed[m] - demand[m]) < 1e-3 for m in demand)
    by_id = {s.id: s for s in steps}
    devices = [s for s in steps if s.kind == "deploy"]
    assert len(devices) == sum(1 for n in packing["nodes"] for d in n["devices"] if d["copies"])
    for step in devices:  # on a node of the chosen type, which runtimes may place it by
        name = step.inputs["server"]  # fleet-<node>-<device>
        node = next(n for n in packing["nodes"] if name.startswith(f"fleet-{n['name']}-"))
        assert step.inputs["node_type"] == node["type"]
    router = by_id["router/fleet"]
    assert set(router.needs) == {s.id for s in devices}
    assert by_id["scenario/smoke"].needs == ("router/fleet",)


def test_text_and_markdown_show_the_bill(tmp_path: Path) -> None:
    steps = build_steps(load_spec(write_fleet(tmp_path)), tmp_path / "cache")
    plan = plan_of(steps, applied_state([]))
    text = render_text(plan)
    assert "packing of fleet: $" in text and "lower bound $" in text
    assert "node type" in text and "$/M req" in text and "c6i." in text
    markdown = render_markdown(plan)
    assert "| node type | nodes | devices | copies | memory | cores | $/h | $/M req |" in markdown


def test_a_small_demand_change_leaves_most_device_servers_unchanged(tmp_path: Path) -> None:
    first = tmp_path / "a"
    first.mkdir()
    steps = build_steps(load_spec(write_fleet(first)), tmp_path / "cache")
    state = applied_state(steps)
    second = tmp_path / "b"
    second.mkdir()
    changed = build_steps(
        load_spec(write_fleet(second, scale=1.05)), tmp_path / "cache", state.steps
    )
    plan = plan_of(changed, state)
    actions = {c.step_id: c.action for c in plan.changes}
    deploys = [i for i in actions if i.startswith("deploy/")]
    touched = [i for i in deploys if actions[i] is not Action.NOOP]
    assert actions["packing/fleet"] is Action.UPDATE  # the rates moved
    assert len(touched) <= max(1, len(deploys) // 4), touched
    fresh = build_steps(load_spec(write_fleet(second, scale=1.05)), tmp_path / "cache")
    fresh_actions = {c.step_id: c.action for c in plan_of(fresh, state).changes}
    fresh_touched = [
        i for i, a in fresh_actions.items() if i.startswith("deploy/") and a is not Action.NOOP
    ]
    assert len(touched) < len(fresh_touched)  # packing afresh would have moved more


@pytest.mark.parametrize(
    ("runtime", "added"),
    [
        ("{kind: local}", set()),
        ("{kind: docker, port: 8080}", {"processor", "container_port", "restart"}),
        (
            "{kind: kubernetes, registry: r.io/ml/, node_selector: {team: search}}",
            {"namespace", "processor", "container_port", "accelerators", "node_selector"},
        ),
    ],
)
def test_every_runtime_runs_a_router_in_front_of_the_fleet(
    tmp_path: Path, runtime: str, added: set[str]
) -> None:
    """One address on every runtime: the scenarios go through the router, which needs
    every device's deploy and carries what its runtime adds to any server's inputs (a
    router computes nothing: cpu, no accelerator, the fleet's own node selector)."""
    spec = load_spec(write_fleet(tmp_path, runtime=runtime))
    steps = {s.id: s for s in build_steps(spec, tmp_path / "cache")}
    devices = {i for i, s in steps.items() if s.kind == "deploy"}
    router = steps["router/fleet"]
    assert set(router.needs) == devices and len(devices) >= 2
    assert steps["scenario/smoke"].needs == ("router/fleet",)
    assert router.follows_upstream  # a device's new address is a new table
    assert added <= router.inputs.keys()
    assert (router.inputs["server"], router.inputs["replicas"]) == ("fleet", 1)
    assert set(router.inputs["routes"]) == {m.model for m in spec.servers[0].models}
    if "processor" in added:
        assert router.inputs["processor"] == "cpu"
    if "accelerators" in added:
        assert router.inputs["accelerators"] == {}
        assert router.inputs["node_selector"] == {"team": "search"}
        for i in devices:  # on the node type the packing chose; selector merged at render
            assert steps[i].inputs["node_selector"] == {"team": "search"}
            assert steps[i].inputs["node_type"].startswith("c6i.")


def test_the_same_fleet_keeps_its_packing_and_plans_no_change(tmp_path: Path) -> None:
    """A second plan of an applied fleet changes nothing: the recorded packing is kept as
    it is (a re-pack of the same fleet would route its rates anew and move the router)."""
    spec = load_spec(write_fleet(tmp_path))
    state = applied_state(build_steps(spec, tmp_path / "cache"))
    again = build_steps(spec, tmp_path / "cache", state.steps)
    changes = {c.step_id: c.action for c in plan_of(again, state).changes}
    assert "router/fleet" in changes
    assert {i: a for i, a in changes.items() if a is not Action.NOOP} == {}


def test_the_fleet_digest_covers_every_field_of_the_fleet() -> None:
    """fleet_digest writes asdict(fleet) out by hand (asdict's deep copy is slow for
    thousands of demands): a field added to Demand, Profile or Fleet must reach it."""
    demands = (
        Demand("a", {"cpu": Profile(600, 14.5), "inf": Profile(520, 110)}, 3.5),
        Demand("b", {"cpu": Profile(300, 20)}, 0.0, 2),
    )
    fleet = Fleet(demands, tuple(BUILTIN)[:3], 0.6)
    expected = hashlib.sha256(canonical_json(asdict(fleet)).encode()).hexdigest()[:16]
    assert fleet_digest(fleet) == expected
