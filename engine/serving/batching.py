"""Dynamic batching: one bounded queue and one worker per loaded model.

Requests queue while the model computes and run together as the next batch, so a busy
server batches by itself and an idle one answers a lone request at once. When the model
frees up with fewer requests queued than its last batch held, it waits up to
`max_delay_ms` for the rest: their clients are usually just reading the previous answers
and about to send again (without the wait, a closed loop of 8 clients settles into
batches of 1 and 7). A batch takes the oldest request and those closest to it in length,
so little is computed on padding and no request starves, and it leaves out whoever would
make it pad past `max_padding` times its real length: padding one long passage into a
batch of short questions costs more than running it alone next (a closed loop of 8
clients on MiniLM: ~95 requests/s without the limit, ~150 with 1.25). Past `max_queue`
waiting requests, `submit` refuses at once (the server answers 503) rather than letting
latency grow without end, and a request of more texts than `max_queue` is refused as
TooLarge (a 413: it could never be queued). A request whose client went away is dropped
from the queue before it costs any computation.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.serving.models import Request
from engine.serving.protocol import TooLarge

log = logging.getLogger("doinfer.serving")


class Runner(Protocol):
    """What the batcher needs of a model (engine.serving.models.ModelRunner)."""

    name: str
    # the single thread the model computes on (on cpu, shared by all of a server's models)
    executor: Executor

    def infer(self, requests: list[Request]) -> list[Any]: ...

    def estimated_width(self, request: Request) -> int:
        """The padded length this request would cost alone, guessed before tokenizing."""
        ...


class Overloaded(Exception):
    """The model's queue is full: the client should come back after `retry_after_s`."""

    def __init__(self, model: str, queued: int, retry_after_s: int) -> None:
        super().__init__(f"model {model} is overloaded ({queued} requests queued)")
        self.retry_after_s = retry_after_s


class BatchObserver(Protocol):
    """Told of each batch run and of each request dropped; engine.serving.metrics has one."""

    def batch(self, size: int, seconds: float) -> None: ...

    def dropped(self) -> None: ...


@dataclass
class _Pending:
    request: Request
    future: asyncio.Future[Any]
    size: int  # Runner.estimated_width()
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class BatchPolicy:
    """A model's batching settings, from the bundle (the spec's `batching`)."""

    max_batch_size: int
    max_delay_ms: float
    max_queue: int
    max_padding: float = 1.25


class Batcher:
    """Queues requests for one runner and feeds them to it in batches."""

    def __init__(
        self, runner: Runner, policy: BatchPolicy, observer: BatchObserver | None = None
    ) -> None:
        self.runner = runner
        self.policy = policy
        self.observer = observer
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seconds_per_request = 0.05  # running estimate, for Retry-After
        self._last_batch = 1
        self._free_since = 0.0  # perf_counter when the model last finished a batch

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a running batch)."""
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._serve(), name=f"batcher-{self.runner.name}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for pending in self._queue:
            pending.future.cancel()
        self._queue.clear()

    async def submit(self, requests: list[Request]) -> list[Any]:
        """Queue the requests and wait for their answers; cancelling the wait drops them."""
        if len(requests) > self.policy.max_queue:
            raise TooLarge(
                f"{len(requests)} texts in one request, where model {self.runner.name} queues "
                f"at most {self.policy.max_queue}"
            )
        if len(self._queue) + len(requests) > self.policy.max_queue:
            self._drop_cancelled()
            if len(self._queue) + len(requests) > self.policy.max_queue:
                raise Overloaded(self.runner.name, len(self._queue), self._retry_after())
        loop = asyncio.get_running_loop()
        width = self.runner.estimated_width
        items = [_Pending(r, loop.create_future(), width(r)) for r in requests]
        self._queue.extend(items)
        self._arrived.set()
        if len(items) == 1:
            return [await items[0].future]
        return list(await asyncio.gather(*(p.future for p in items)))

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_cancelled()
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._wait_for_company()
            batch = self._take()
            if not batch:
                continue
            started = time.perf_counter()
            result, computed = await loop.run_in_executor(
                self.runner.executor,
                _timed,
                self.runner.name,
                self.runner.infer,
                [p.request for p in batch],
            )
            if isinstance(result, Exception):  # the model failed on a lone request
                log.error("model %s failed on a request", self.runner.name, exc_info=result)
                answers: list[Any] = [result]
            else:
                answers = result
            self._free_since = time.perf_counter()
            self._last_batch = len(batch)
            # Retry-After counts the time a batch took to come back, turns behind other
            # models on a shared compute thread included: that is how fast the queue drains
            waited = self._free_since - started
            self._seconds_per_request = 0.8 * self._seconds_per_request + 0.2 * (
                waited / len(batch)
            )
            if self.observer is not None:
                self.observer.batch(len(batch), computed)
            for pending, answer in zip(batch, answers, strict=True):
                if pending.future.done():  # its client went away meanwhile
                    continue
                if isinstance(answer, BaseException):
                    pending.future.set_exception(answer)
                else:
                    pending.future.set_result(answer)

    async def _wait_for_company(self) -> None:
        """Expect as many requests as the last batch held, until max_delay_ms after the
        model freed up (a server idle for longer answers a lone request at once)."""
        expected = min(self._last_batch, self.policy.max_batch_size)
        if self.policy.max_delay_ms <= 0 or len(self._queue) >= expected:
            return
        deadline = self._free_since + self.policy.max_delay_ms / 1000
        while len(self._queue) < expected:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Pending]:
        self._drop_cancelled()
        sizes = [p.size for p in self._queue]
        chosen = set(choose_batch(sizes, self.policy.max_batch_size, self.policy.max_padding))
        batch = [p for i, p in enumerate(self._queue) if i in chosen]
        self._queue = deque(p for i, p in enumerate(self._queue) if i not in chosen)
        return batch

    def _drop_cancelled(self) -> None:
        if any(p.future.done() for p in self._queue):
            kept = deque(p for p in self._queue if not p.future.done())
            if self.observer is not None:
                for _ in range(len(self._queue) - len(kept)):
                    self.observer.dropped()
            self._queue = kept

    def _retry_after(self) -> int:
        """Whole seconds until the queue has likely drained (Retry-After), at least 1."""
        return max(1, math.ceil(len(self._queue) * self._seconds_per_request))


def _timed(
    name: str, infer: Callable[[list[Request]], list[Any]], requests: list[Request]
) -> tuple[list[Any] | Exception, float]:
    """Run a batch on the compute thread and time it there: the model's own time, without
    the wait for a thread that other models share. A failure is returned, timed too.

    Requests are checked before they queue (engine.serving.protocol), but should a batch
    still fail, its requests run again one by one, so that only those that fail alone fail:
    one client's request must not fail the others'."""
    started = time.perf_counter()
    try:
        result: list[Any] | Exception = infer(requests)
    except Exception as exc:
        if len(requests) == 1:
            result = exc
        else:
            log.warning(
                "model %s failed on a batch of %d (%s: %s): running its requests one by one",
                name,
                len(requests),
                type(exc).__name__,
                exc,
            )
            result = [_alone(name, infer, request) for request in requests]
    return result, time.perf_counter() - started


def _alone(name: str, infer: Callable[[list[Request]], list[Any]], request: Request) -> Any:
    """The request's answer, run alone, or the exception it fails with (logged)."""
    try:
        return infer([request])[0]
    except Exception as exc:
        log.error("model %s failed on a request", name, exc_info=exc)
        return exc


def choose_batch(sizes: list[int], limit: int, max_padding: float = 1.25) -> list[int]:
    """Indices of the next batch from a queue of request sizes, oldest first: the oldest
    request (so every request is the oldest one day, and none starves) and up to `limit - 1`
    others, nearest it in size first, each taken only if the batch padded to its longest
    member stays within `max_padding` times the members' own sizes."""
    nearest = sorted(range(1, len(sizes)), key=lambda i: abs(sizes[i] - sizes[0]))
    chosen, total, longest = [0], sizes[0], sizes[0]
    for i in nearest:
        if len(chosen) == limit:
            break
        wider = max(longest, sizes[i])
        if (len(chosen) + 1) * wider <= max_padding * (total + sizes[i]):
            chosen.append(i)
            total, longest = total + sizes[i], wider
    return sorted(chosen)
