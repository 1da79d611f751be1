"""Pausing Python's cyclic garbage collector while a spec is loaded and planned.

Loading and planning a fleet of thousands of models allocates millions of small objects
(YAML nodes, dicts, steps, attributes), nearly all of them alive until the plan is made:
the collector's full passes over a heap that only grows find nothing to free, and took a
third of the plan's time (3,000 models, benchmarks/fleet_plan.py, docs/BENCHMARKS.md).
These phases make no reference cycles worth collecting; the collector runs again after.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def gc_paused(function: Callable[P, R]) -> Callable[P, R]:
    """`function` with the cyclic collector off while it runs (nested calls keep it off)."""

    @functools.wraps(function)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return function(*args, **kwargs)
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            gc.enable()

    return paused
