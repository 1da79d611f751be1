"""Run a scenario: probes in this process, benchmarks in load-client processes.

`sequential` and `random` are probes, one request at a time from this process (or, where
the servers cannot be reached from here, from one client the runtime runs next to them).
A `benchmark` runs `clients` load clients through a ClientRunner: the runtime decides
where they run (local processes here; containers or Jobs for other runtimes), and their
results are merged into one ScenarioResult.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.bench.launch import run_local_clients
from engine.bench.load import Client
from engine.bench.plan import ClientPlan, ClientResult, client_plans
from engine.bench.results import ScenarioResult, from_clients
from engine.bench.targets import Target

if TYPE_CHECKING:  # the bench runs the spec's scenarios; it does not import the spec
    from engine.spec.model import Scenario

OnProgress = Callable[[int, int], None]  # (answered, errors) over all clients
ClientRunner = Callable[[list[ClientPlan], OnProgress], Awaitable[list[ClientResult]]]


@dataclass(frozen=True)
class Tick:
    """How far a running scenario is, for a progress bar."""

    scenario: str
    answered: int
    errors: int
    elapsed_s: float
    expected_s: float | None  # a benchmark's warm-up + duration
    expected_requests: int | None  # a probe's request count
    done: bool = False  # the scenario has finished


OnTick = Callable[[Tick], None]


async def run_scenario(
    scenario: Scenario,
    targets: list[Target],
    on_tick: OnTick | None = None,
    seed: int | None = None,
    clients: ClientRunner = run_local_clients,
    probes_here: bool = True,
) -> ScenarioResult:
    plans = client_plans(scenario, targets, seed)
    tick = on_tick or (lambda t: None)
    began = time.time()
    if scenario.kind == "benchmark":
        start_at = plans[0].start_at or began
        expected_s: float | None = scenario.warmup_s + scenario.duration_s
        expected_requests = None
    else:
        start_at, expected_s = began, None
        expected_requests = len(targets) if scenario.kind == "sequential" else scenario.requests

    def relay(answered: int, errors: int, done: bool = False) -> None:
        elapsed = max(0.0, time.time() - start_at)
        tick(Tick(scenario.name, answered, errors, elapsed, expected_s, expected_requests, done))

    relay(0, 0)
    if scenario.kind == "benchmark" or not probes_here:
        results = await clients(plans, relay)
    else:
        results = [await Client(plans[0], relay).run()]
    settings = scenario.settings()
    result = from_clients(scenario.name, scenario.kind, settings, results)
    summary = result.summary()
    relay(summary.requests, summary.errors, done=True)
    return result
