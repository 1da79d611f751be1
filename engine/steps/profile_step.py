"""The profile step: what one loaded copy of a traced model costs on a processor of this
machine, for a fleet's packing (engine/profiling.py measures; engine/profiles.py caches).

A profile already in the cache under the step's key is recorded as it is: the same
artifact under the same terms is measured once, whichever spec or model name asks. The
step's outputs are the MeasuredProfile's JSON, which the plan of the fleet reads back
from the cache. Profile steps are exclusive (the executor runs them one at a time and
never beside a scenario), since each measures a core's throughput. (Not `profile.py`:
trace_job.py runs as a script from this directory, and the standard library's cProfile,
which torch imports, would import that as its `profile`.)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from engine.graph.step import Observation, Step
from engine.profiles import cache_file, cached_profile, profile_key, store_profile
from engine.profiling import Subject, measure
from engine.steps.base import ApplyRequest, Context, Log


class ProfileStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        key = record.get("outputs", {}).get("key", "")
        if cached_profile(ctx.cache_dir, key) is None:
            return Observation(drift=(f"its profile {cache_file(ctx.cache_dir, key)} is gone",))
        return Observation()

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        inputs = request.step.inputs
        key = profile_key(inputs)
        found = cached_profile(ctx.cache_dir, key)
        if found is not None:
            log(f"cached: {found.describe()}")
            return found.to_json()
        (trace,) = request.step.needs
        subject = Subject(
            inputs["model"],
            inputs["task"],
            inputs["processor"],
            Path(request.upstream[trace]["artifact"]),
            inputs["batching"],
        )
        work = Path(tempfile.mkdtemp(prefix="profile-", dir=ctx.state_dir))
        try:
            profile = measure(
                subject,
                key,
                inputs["slo_p99_ms"],
                inputs["seconds"],
                work,
                log,
                ctx.cancel.is_set,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"stored {store_profile(ctx.cache_dir, profile)}: {profile.describe()}")
        return profile.to_json()

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        # Profiles are cached by artifact and shared between specs, like traces: keep them.
        key = record.get("outputs", {}).get("key", "")
        log(f"kept cached profile {cache_file(ctx.cache_dir, key)}")
