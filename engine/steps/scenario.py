"""The scenario step: prove the deployed servers with the spec's test scenario.

It runs as the last steps of apply (and again whenever a deployment changes); the full
result is written to a JSON file next to the state, and its summary is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import Cancelled, DoinferError, StepFailed
from engine.graph.step import Observation, Step
from engine.spec.model import Scenario, Slo
from engine.steps.base import ApplyRequest, Context, Log

if TYPE_CHECKING:  # the load generator (numpy) is imported only to run scenarios
    from engine.bench.results import ScenarioResult


CANCEL_GRACE_S = 1.0


def scenario_from_inputs(inputs: dict[str, Any]) -> Scenario:
    """The scenario a step's (JSON) inputs describe: the inverse of Scenario.to_json."""
    data = dict(inputs)
    if data.get("slo") is not None:
        data["slo"] = Slo(**data["slo"])
    if isinstance(data.get("texts"), str):  # a plan saved by an older doinfer: a digest
        raise DoinferError(
            "this plan was made by an older doinfer, which recorded the scenario's texts "
            "only as a digest: make a new plan (doinfer plan) and apply that"
        )
    if data.get("texts") is not None:
        data["texts"] = tuple((seq_0, seq_1) for seq_0, seq_1 in data["texts"])
    return Scenario(**data)


def results_dir(ctx: Context) -> Path:
    return ctx.state_dir / "results"


class ScenarioStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        return Observation()  # a finished scenario has nothing that can drift

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        from engine.bench.report import render_table, render_verdicts
        from engine.bench.scenarios import run_scenario
        from engine.steps.deployed import targets_from_deploys

        scenario = scenario_from_inputs(request.step.inputs)
        targets = targets_from_deploys(request.upstream)
        log(f"{scenario.kind}: {len(targets)} target(s)")
        try:
            result = asyncio.run(
                _until_cancelled(
                    run_scenario(
                        scenario,
                        targets,
                        clients=ctx.runtime.run_load_clients,
                        probes_here=ctx.runtime.probes_here,
                    ),
                    ctx,
                )
            )
        except (DoinferError, OSError):
            # Ctrl-C reaches the load clients too, and their end (a failed run, a pipe that
            # breaks under a write) may come before the engine's own handler has marked the
            # apply cancelled: wait a moment for it. A cancel, not a failure.
            if ctx.cancel.wait(CANCEL_GRACE_S):
                raise Cancelled("interrupted") from None
            raise
        directory = results_dir(ctx)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{scenario.name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
        path.write_text(json.dumps(result.to_dict()))
        if not result.ok:
            raise StepFailed(
                f"scenario {scenario.name} missed its objectives",
                render_table([result]) + "\n" + render_verdicts([result]),
            )
        return {"result_file": str(path), "summary": result.summary().to_dict()}

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        pass  # results are kept: they are the record of what was measured


async def _until_cancelled(
    scenario: Coroutine[Any, Any, ScenarioResult], ctx: Context
) -> ScenarioResult:
    """Run a scenario, stopping it (and its load clients) soon after an interrupt."""
    task = asyncio.ensure_future(scenario)
    while not task.done():
        await asyncio.wait([task], timeout=0.1)
        if ctx.cancel.is_set() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise Cancelled("interrupted")
    return task.result()


def load_result(path: str) -> ScenarioResult:
    from engine.bench.results import ScenarioResult

    return ScenarioResult.from_dict(json.loads(Path(path).read_text()))
