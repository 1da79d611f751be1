"""Apply a plan: deletes first (dependents before what they need), then the rest in
topological order, independent steps in parallel (at most `max_parallel`, and at most a
pool's limit of one pool, e.g. the traces one host may run at once). State is recorded
after every step.

The executor knows nothing of what steps do (it looks up their kind) nor of terminals
(it reports through `on_event`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from graphlib import TopologicalSorter
from typing import Any

from engine.errors import Cancelled, DoinferError, StepFailed
from engine.graph.plan import Change, Plan
from engine.graph.step import Action, Step
from engine.state import State, StateStore
from engine.steps.base import ApplyRequest, Context, StepKind


@dataclass(frozen=True)
class Event:
    kind: str  # "start" | "log" | "done" | "failed" | "skipped" | "cancelled"
    step_id: str
    action: Action
    message: str = ""
    detail: str = ""
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Outcome:
    step_id: str
    action: Action
    status: str  # "ok" | "failed" | "skipped" | "cancelled"
    message: str = ""
    detail: str = ""
    elapsed_s: float = 0.0


OnEvent = Callable[[Event], None]


class Executor:
    def __init__(
        self,
        kinds: dict[str, StepKind],
        ctx: Context,
        store: StateStore,
        state: State,
        on_event: OnEvent,
        max_parallel: int = 4,
    ) -> None:
        self.kinds = kinds
        self.ctx = ctx
        self.store = store
        self.state = state
        self.on_event = on_event
        self.max_parallel = max_parallel

    def run(self, plan: Plan) -> list[Outcome]:
        return asyncio.run(self._run(plan))

    async def _run(self, plan: Plan) -> list[Outcome]:
        self._exclusive = asyncio.Lock()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Outside the main thread this fails: the caller then handles signals.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self.ctx.cancel.set)
        try:
            outcomes = [await self._delete(c) for c in plan.changes if c.action is Action.DELETE]
            failed = {o.step_id for o in outcomes if o.status != "ok"}
            if not failed:
                outcomes += await self._apply_graph(plan)
            return outcomes
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(signum)

    async def _delete(self, change: Change) -> Outcome:
        record = self.state.steps[change.step_id]
        kind = self.kinds[record["kind"]]
        return await self._guarded(
            change,
            lambda log: (
                kind.destroy(record, self.ctx, log),
                self.store.record(self.state, change.step_id, None),
            ),
        )

    async def _apply_graph(self, plan: Plan) -> list[Outcome]:
        steps = {s.id: s for s in plan.steps}
        todo = {c.step_id: c for c in plan.changes if c.action not in (Action.NOOP, Action.DELETE)}
        sorter = TopologicalSorter({i: [n for n in steps[i].needs if n in todo] for i in todo})
        sorter.prepare()
        outcomes: list[Outcome] = []
        blocked: set[str] = set()
        running: dict[asyncio.Task[Outcome], str] = {}
        in_pool: Counter[str] = Counter()  # running steps per pool (e.g. traces per host)
        ready: list[str] = []
        while sorter.is_active():
            ready += sorter.get_ready()
            for step_id in list(ready):
                if len(running) >= self.max_parallel:
                    break
                step = steps[step_id]
                if blocked & set(step.needs) or self.ctx.cancel.is_set():
                    ready.remove(step_id)
                    status = "cancelled" if self.ctx.cancel.is_set() else "skipped"
                    why = "interrupted" if status == "cancelled" else "an upstream step failed"
                    self.on_event(Event(status, step_id, todo[step_id].action, why))
                    outcomes.append(Outcome(step_id, todo[step_id].action, status, why))
                    blocked.add(step_id)
                    sorter.done(step_id)
                    continue
                if step.pool is not None and in_pool[step.pool] >= step.pool_limit:
                    continue  # its pool is full: a later ready step may still start
                ready.remove(step_id)
                if step.pool is not None:
                    in_pool[step.pool] += 1
                task = asyncio.create_task(self._apply(step, todo[step_id]))
                running[task] = step_id
            if not running:
                continue
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                step_id = running.pop(task)
                pool = steps[step_id].pool
                if pool is not None:
                    in_pool[pool] -= 1
                outcome = task.result()
                outcomes.append(outcome)
                if outcome.status != "ok":
                    blocked.add(step_id)
                sorter.done(step_id)
        return outcomes

    async def _apply(self, step: Step, change: Change) -> Outcome:
        if step.exclusive:  # e.g. scenarios: one measurement must not disturb another
            async with self._exclusive:
                return await self._apply_now(step, change)
        return await self._apply_now(step, change)

    async def _apply_now(self, step: Step, change: Change) -> Outcome:
        kind = self.kinds[step.kind]
        record = self.state.steps.get(step.id)
        upstream = {n: self.state.steps[n]["outputs"] for n in step.needs}
        request = ApplyRequest(step, change.action, record, upstream)

        def work(log: Callable[[str], None]) -> None:
            if change.forced and record is not None:  # --replace: nothing changed, start anew
                kind.destroy(record, self.ctx, log)
            outputs = kind.apply(request, self.ctx, log)
            self.store.record(
                self.state,
                step.id,
                {
                    "kind": step.kind,
                    "fingerprint": step.fingerprint,
                    "inputs": step.inputs,
                    "needs": list(step.needs),
                    "upstream": {n: self.state.steps[n]["fingerprint"] for n in step.needs},
                    "summary": step.summary,
                    "outputs": outputs,
                    "applied_at": time.time(),
                },
            )

        return await self._guarded(change, work)

    async def _guarded(
        self, change: Change, work: Callable[[Callable[[str], None]], Any]
    ) -> Outcome:
        """Run one step's work in a thread, turning every ending into an Outcome and Event."""
        step_id, action = change.step_id, change.action
        loop = asyncio.get_running_loop()

        def log(line: str) -> None:
            loop.call_soon_threadsafe(self.on_event, Event("log", step_id, action, line))

        start = time.monotonic()
        self.on_event(Event("start", step_id, action, change.summary))
        try:
            await asyncio.to_thread(work, log)
        except Cancelled as exc:
            return self._end("cancelled", change, str(exc), "", start)
        except StepFailed as exc:
            return self._end("failed", change, str(exc), exc.detail, start)
        except DoinferError as exc:
            return self._end("failed", change, str(exc), "", start)
        except Exception as exc:  # a bug of ours: keep the traceback for the report
            return self._end(
                "failed", change, f"{type(exc).__name__}: {exc}", traceback.format_exc(), start
            )
        return self._end("ok", change, "", "", start)

    def _end(self, status: str, change: Change, message: str, detail: str, start: float) -> Outcome:
        elapsed = time.monotonic() - start
        event = {"ok": "done"}.get(status, status)
        self.on_event(Event(event, change.step_id, change.action, message, detail, elapsed))
        return Outcome(change.step_id, change.action, status, message, detail, elapsed)
