"""The packing step: a fleet's packing, decided at plan time, recorded at apply.

Nothing in the world changes here: the packing is a decision, and the device servers'
own steps carry it out. Recording it is what lets the next plan re-pack from it (moving
as few copies as it can) and show what changed in the fleet's bill.
"""

from __future__ import annotations

from typing import Any

from engine.errors import StepFailed
from engine.graph.step import Observation, Step
from engine.steps.base import ApplyRequest, Context, Log


class PackingStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        return Observation()  # a decision has no drift

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        packing = request.step.inputs["packing"]
        if packing is None:  # a plan made before the fleet's profiles were measured
            raise StepFailed(
                f"fleet {request.step.inputs['server']}: its packing waits for "
                f"{', '.join(request.step.inputs['waits_for'])}; apply the spec (it measures "
                f"them, then plans the packing) rather than this plan"
            )
        log(
            f"fleet {request.step.inputs['server']}: {len(packing['nodes'])} nodes, "
            f"${packing['cost_per_hour']:,.2f}/h"
        )
        return {"cost_per_hour": packing["cost_per_hour"]}

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        pass  # the device servers' deploy steps remove what runs
