"""Step kinds by name: the executor and the planner look behaviour up here."""

from __future__ import annotations

from engine.steps.base import StepKind
from engine.steps.deploy import DeployStep
from engine.steps.image import ImageStep
from engine.steps.pack import PackStep
from engine.steps.packing import PackingStep
from engine.steps.profile_step import ProfileStep
from engine.steps.push import PushStep
from engine.steps.router import RouterStep
from engine.steps.scenario import ScenarioStep
from engine.steps.trace import TraceStep

STEP_KINDS: dict[str, StepKind] = {
    "trace": TraceStep(),
    "image": ImageStep(),
    "pack": PackStep(),
    "push": PushStep(),
    "deploy": DeployStep(),
    "profile": ProfileStep(),
    "packing": PackingStep(),
    "router": RouterStep(),
    "scenario": ScenarioStep(),
}
