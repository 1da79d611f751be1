"""Re-packing after a change keeps what it can: few moves, every limit still held."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.packing import Demand, Fleet, NodeType, Packing, PackingError, Profile, pack
from engine.packing.repack import moves, repack
from tests.unit.packing.checks import examples, long_tail_fleet, violations
from tests.unit.packing.test_solver import fleets, placeable


def scaled(fleet: Fleet, seed: int, spread: float) -> Fleet:
    """Each demand times a factor within 1 +- spread; a spread over 1 drops some demands
    to zero (a demand is never negative: the schema's minimum, and Demand's)."""
    rng = random.Random(seed)
    return Fleet(
        tuple(
            Demand(d.model, d.profiles,
                   max(0.0, round(d.rate * rng.uniform(1 - spread, 1 + spread), 3)), d.instances)
            for d in fleet.demands
        ),
        fleet.node_types,
        fleet.max_utilization,
    )  # fmt: skip


def copies(packing: Packing) -> int:
    return sum(packing.copies().values())


def test_a_small_demand_change_moves_few_copies() -> None:
    fleet = long_tail_fleet(1000, seed=5, names=("inf2", "c6i"))
    before = pack(fleet)
    changed = scaled(fleet, seed=6, spread=0.1)
    after = repack(changed, before)
    assert violations(changed, after) == []
    added, removed = moves(before, after)
    fresh_added, fresh_removed = moves(before, pack(changed))
    assert added + removed <= 0.02 * copies(before)
    assert added + removed < (fresh_added + fresh_removed) / 10
    assert after.cost_per_hour <= 1.05 * pack(changed).cost_per_hour


def test_new_models_are_placed_and_gone_models_unloaded() -> None:
    fleet = long_tail_fleet(200, seed=2, names=("inf2",))
    before = pack(fleet)
    profile = {"inf": Profile(500, 100)}
    changed = Fleet(
        (*fleet.demands[10:], Demand("new-a", profile, 5.0), Demand("new-b", profile, 0.0)),
        fleet.node_types,
    )
    after = repack(changed, before)
    assert violations(changed, after) == []
    gone = {d.model for d in fleet.demands[:10]}
    assert not gone & set(after.copies())
    added, removed = moves(before, after)
    assert added == 2  # one copy each for the new models, nothing else moved
    assert removed == sum(before.copies()[m] for m in gone)
    assert {n.name for n in after.nodes} >= {n.name for n in before.nodes if n.name}  # kept


def test_growth_beyond_the_devices_adds_nodes_and_keeps_the_old_ones() -> None:
    fleet = long_tail_fleet(300, seed=4, names=("inf2",))
    before = pack(fleet)
    grown = Fleet(
        tuple(Demand(d.model, d.profiles, d.rate * 3) for d in fleet.demands), fleet.node_types
    )
    after = repack(grown, before)
    assert violations(grown, after) == []
    assert len(after.nodes) > len(before.nodes)
    assert before.placements() - after.placements() == set()  # no copy had to leave


def cpu_fleet(rates: list[float], memory_mib: float = 50, u: float = 0.5) -> Fleet:
    """Models m000, m001, ... of one cpu profile on t0: a 1-core, 1 GiB, $1/h node."""
    profile = {"cpu": Profile(memory_mib, 1.0)}
    return Fleet(
        tuple(Demand(f"m{i:03d}", profile, r) for i, r in enumerate(rates)),
        (NodeType("t0", "cpu", 1, 1, 1, 1.0),),
        u,
    )


def test_a_demand_is_never_negative() -> None:
    """Seed 33 found the test's own change scaling a rate below zero (1 - 2.0 spread), and
    the packer routing it as if it were demand; a negative rate is now refused."""
    with pytest.raises(PackingError, match=r"model m000: rate -0\.463 is not"):
        Demand("m000", {"cpu": Profile(50, 1.0)}, -0.463)
    with pytest.raises(PackingError, match="instances 0"):
        Demand("m000", {"cpu": Profile(50, 1.0)}, 1.0, 0)


def test_a_new_model_without_demand_takes_spare_memory_not_a_new_node() -> None:
    """A model of rate 0 still gets one copy (the router must answer it), and it needs no
    cores: a re-pack puts it beside the others, as pack() does, instead of renting a node
    for it. The bound, like pack()'s, is at least one node."""
    before = pack(cpu_fleet([0.2]))
    changed = cpu_fleet([0.2, 0.0])
    after = repack(changed, before)
    assert violations(changed, after) == []
    assert after.cost_per_hour == pack(changed).cost_per_hour == 1.0
    assert after.copies() == {"m000": 1, "m001": 1}
    assert moves(before, after) == (1, 0)
    assert after.lower_bound_per_hour == pack(changed).lower_bound_per_hour == 1.0


def test_models_without_demand_get_one_copy_each() -> None:
    fleet = cpu_fleet([0.0] * 5 + [0.2] * 2)
    packing = pack(fleet)
    assert violations(fleet, packing) == []
    assert packing.copies() == {f"m{i:03d}": 1 for i in range(7)}
    assert repack(fleet, packing).placements() == packing.placements()


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), st.integers(0, 1000), st.sampled_from((0.05, 0.5, 2.0)))
@example(
    fleet=cpu_fleet([1.0, 0.0, 0.0, 0.0]), seed=1, spread=2.0
)  # m000 dropped to 0 (was -0.463)
def test_every_limit_holds_after_a_repack(fleet: Fleet, seed: int, spread: float) -> None:
    if not placeable(fleet):
        return
    before = pack(fleet)
    changed = scaled(fleet, seed, spread)
    if not placeable(changed):
        return
    assert violations(changed, repack(changed, before)) == []
