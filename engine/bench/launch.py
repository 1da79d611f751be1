"""Run load clients as processes on this machine and collect their results.

Each client is `python -m engine.bench.worker --plan -` (one event loop per process, so
several clients use several cores). Their progress lines are summed for the caller; a
client that fails, or outlives its plan by far, stops the scenario with its log's tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable

from engine.bench.client import REQUEST_TIMEOUT_S
from engine.bench.plan import ClientPlan, ClientResult
from engine.bench.worker import PROGRESS_PREFIX
from engine.errors import DoinferError

OnClientsProgress = Callable[[int, int], None]  # (answered, errors) over all clients
GRACE_S = 30.0  # beyond its duration and one request timeout, a client is stuck


async def run_local_clients(
    plans: list[ClientPlan], on_progress: OnClientsProgress
) -> list[ClientResult]:
    counts = [(0, 0)] * len(plans)

    def relay(index: int, answered: int, errors: int) -> None:
        counts[index] = (answered, errors)
        on_progress(sum(c[0] for c in counts), sum(c[1] for c in counts))

    processes: list[asyncio.subprocess.Process] = []
    try:
        for _ in plans:
            await _start_client(processes)
        limit = max(p.warmup_s + p.duration_s for p in plans) + REQUEST_TIMEOUT_S + GRACE_S
        async with asyncio.timeout(limit):
            return await asyncio.gather(
                *(
                    _collect(process, plan, lambda a, e, i=i: relay(i, a, e))
                    for i, (process, plan) in enumerate(zip(processes, plans, strict=True))
                )
            )
    except TimeoutError:
        raise DoinferError(f"load clients of {plans[0].scenario} did not finish in time") from None
    finally:
        for process in processes:
            if process.returncode is None:
                # os.kill, not process.kill(): that polls, and so may reap a client that
                # just exited (Ctrl-C reaches it too) under asyncio's child watcher
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                await process.wait()


async def _start_client(processes: list[asyncio.subprocess.Process]) -> None:
    """Start a load-client process and add it to `processes`, even when interrupted while
    it starts: it is then stopped and reaped with the others (asyncio would abandon a
    half-started child, and reap it twice)."""
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine.bench.worker",
            "--plan",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    )
    try:
        processes.append(await asyncio.shield(starting))
    except asyncio.CancelledError:
        processes.append(await starting)
        raise


async def _collect(
    process: asyncio.subprocess.Process,
    plan: ClientPlan,
    on_progress: Callable[[int, int], None],
) -> ClientResult:
    assert process.stdin and process.stdout and process.stderr
    process.stdin.write(json.dumps(plan.to_dict()).encode())
    await process.stdin.drain()
    process.stdin.close()
    output = asyncio.create_task(process.stdout.read())
    log: list[str] = []
    async for raw in process.stderr:
        line = raw.decode(errors="replace").rstrip("\n")
        if line.startswith(PROGRESS_PREFIX):
            answered, errors = line.split()[1:3]
            on_progress(int(answered), int(errors))
        else:
            log.append(line)
    data = await output
    code = await process.wait()
    if code != 0:
        tail = "\n".join(log[-20:])
        raise DoinferError(f"load client {plan.client} of {plan.scenario} exited {code}:\n{tail}")
    try:
        return ClientResult.from_dict(json.loads(data))
    except (ValueError, TypeError) as exc:
        raise DoinferError(
            f"load client {plan.client} of {plan.scenario} wrote no result ({exc})"
        ) from None
