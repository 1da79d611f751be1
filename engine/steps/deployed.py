"""What the deploy steps recorded, as the targets a scenario sends requests to.

It reads runtime contracts (DeployResult) and makes bench targets: it sits above both, so
that neither the bench nor the runtimes import the other for it.
"""

from __future__ import annotations

from typing import Any

from engine.bench.targets import Target
from engine.runtimes.contracts import DeployResult


def targets_from_deploys(deploys: dict[str, dict[str, Any]]) -> list[Target]:
    """Every (replica, model instance) of the deployed servers."""
    targets = []
    for step_id, outputs in sorted(deploys.items()):
        server = step_id.split("/", 1)[1]
        deployed = DeployResult.from_json(outputs)
        for replica in deployed.replicas:
            for model in deployed.models:
                for i in range(model.instances):
                    targets.append(
                        Target(
                            url=replica.url,
                            server=server,
                            replica=replica.index,
                            instance=f"{model.name}-{i}",
                            model=model.name,
                            task=model.task,
                        )
                    )
    return targets
