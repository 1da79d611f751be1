"""Load clients that run inside a runtime, next to the servers, and their orchestration.

On a container runtime, scenarios are sent from containers on the servers' network, not
through the ports published on the host: what is measured is the servers, not the host's
port forwarding. Each client process runs one share of the scenario and prints its raw
result as JSON; the engine merges the samples (percentiles are never averaged).

    python -m engine.runtimes.load_client JOB_JSON

The job: {"scenario": {...Scenario fields}, "targets": [{...Target fields}], "start_at":
epoch seconds}: clients start together, so their measuring windows overlap.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from engine.errors import StepFailed
from engine.runtimes.base import Log, Runtime

if TYPE_CHECKING:
    from engine.bench.scenarios import ScenarioResult
    from engine.spec.model import Scenario

START_DELAY_S = 3.0  # time for the client containers to start before they all begin


def run_scenario_in_runtime(
    runtime: Runtime, scenario: Scenario, deploys: dict[str, dict[str, Any]], log: Log
) -> ScenarioResult:
    """Run a scenario from `clients` client processes inside the runtime; merged result."""
    from engine.bench.scenarios import ScenarioResult, merge
    from engine.bench.targets import targets_from_deploys

    inside = {
        step: {
            **outputs,
            "replicas": [{**r, "url": r["internal_url"]} for r in outputs["replicas"]],
        }
        for step, outputs in deploys.items()
    }
    targets = targets_from_deploys(inside)
    count = scenario.clients if scenario.kind == "benchmark" else 1
    job = {
        "scenario": asdict(replace(scenario, clients=1, slo=None)),
        "targets": [asdict(t) for t in targets],
        "start_at": time.time() + START_DELAY_S,
    }
    outputs = runtime.run_clients(
        deploys, ["-m", "engine.runtimes.load_client", json.dumps(job)], count, log
    )
    results = []
    for i, output in enumerate(outputs):
        lines = output.strip().splitlines()
        try:
            results.append(ScenarioResult.from_dict(json.loads(lines[-1])))
        except (IndexError, ValueError, KeyError) as exc:
            raise StepFailed(
                f"load client {i} of scenario {scenario.name} printed no result ({exc})",
                output[-2000:],
            ) from None
    merged = merge(results)
    merged.notes = [n for n in merged.notes if "one client process" not in n]
    merged.notes.append(f"sent from {count} client container(s) on the servers' network")
    return merged


def main(argv: list[str]) -> int:
    from engine.bench.scenarios import run_scenario
    from engine.bench.targets import Target
    from engine.spec.model import Scenario

    job = json.loads(argv[0])
    scenario = Scenario(**job["scenario"])
    targets = [Target(**t) for t in job["targets"]]
    time.sleep(max(0.0, job.get("start_at", 0) - time.time()))
    result = asyncio.run(run_scenario(scenario, targets))
    print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
