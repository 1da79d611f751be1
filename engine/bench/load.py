"""One load client: runs a ClientPlan on one asyncio event loop and reports a ClientResult.

Closed loop: `concurrency` requests in flight, each sent when the previous one answered.
Open loop: requests leave on a schedule (Poisson or constant arrivals) whatever the server
does, and each latency counts from the request's intended send time; when the client falls
behind its schedule (a busy core, too many requests in flight) the delay is in the latency
and the result says how far behind it was. This is what keeps a stalled server visible:
a closed loop sends nothing while the server stalls, and so records only a few slow requests.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import random
import resource
import select
import selectors
import time
from collections.abc import Callable, Iterator
from typing import Any

from engine.bench.client import REQUEST_TIMEOUT_S, Prepared, prepare, send
from engine.bench.http import Pool
from engine.bench.plan import ClientPlan, ClientResult

OnProgress = Callable[[int, int], None]  # (requests answered, errors so far)

EARLY_S = 0.001  # an open loop's request may leave this early, so timer slack is no lag
LATE_MS = 5.0  # an open-loop request that leaves later than this after its time is late
HICCUP_FRACTION = 0.01  # more late requests than this are worth a note
BEHIND_FRACTION = 0.1  # more than this: the client could not keep the rate
LATE_START_S = 0.1  # a client that starts later than this after start_at says so
MAX_IN_FLIGHT = 10_000  # an open loop's bound on requests (connections) in flight


class Client:
    def __init__(self, plan: ClientPlan, on_progress: OnProgress | None = None) -> None:
        self.plan = plan
        self.progress = on_progress or (lambda requests, errors: None)
        self.texts = plan.corpus()
        # a (target, text) request is built when first sent: a large corpus times many
        # targets would cost more memory than the requests a run ever sends
        self.prepared: dict[tuple[int, int], Prepared] = {}
        self.rng = random.Random(plan.seed)
        self.samples: list[list[Any]] = []
        self.errors = 0
        self.origin = 0.0  # perf_counter when measuring begins
        self.lags: list[float] = []  # open loop, ms, requests in the window
        self.notes: list[str] = []
        self.pick = self._picker()
        self.pool = Pool(REQUEST_TIMEOUT_S)

    async def run(self) -> ClientResult:
        plan = self.plan
        begin = await self._start()
        self.origin = time.perf_counter() + (begin - time.time()) + plan.warmup_s
        started_at = begin + plan.warmup_s
        shape = {
            "sequential": self._sequential,
            "random": self._random,
            "closed": self._closed,
            "open": self._open,
        }[plan.mode]
        try:
            await shape()
        finally:
            self.pool.close()
        finished = max((s[1] + s[2] / 1000 for s in self.samples), default=0.0)
        if plan.mode in ("sequential", "random"):
            duration = time.perf_counter() - self.origin
        else:
            duration = max(plan.duration_s, finished)
        return ClientResult(
            client=plan.client,
            targets=[t.key for t in plan.targets],
            samples=self.samples,
            started_at=started_at,
            duration_s=duration,
            sent=len(self.samples),
            lag=self._lag_summary(),
            notes=self.notes,
        )

    async def _start(self) -> float:
        """Wait for the plan's start time and return it (wall clock): every client's
        schedule counts from the same instant, however late its process woke. A client
        that started much too late begins now, and says so."""
        plan = self.plan
        if plan.start_at is None:
            return time.time()
        wait = plan.start_at - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        late = time.time() - plan.start_at
        if late <= LATE_START_S:
            return plan.start_at
        self.notes.append(
            f"client {plan.client} started {late:.2f} s late; its samples are "
            f"{late:.2f} s later on the timeline"
        )
        return time.time()

    def _next(self, index: int | None = None) -> tuple[int, Prepared]:
        """The next request: its target (drawn, unless given) and a text drawn from the
        corpus. Drawn here, in the order requests are scheduled, so a seed gives the same
        sequence whatever the timing of the tasks that send them."""
        if index is None:
            index = self.pick()
        text = self.rng.randrange(len(self.texts)) if len(self.texts) > 1 else 0
        request = self.prepared.get((index, text))
        if request is None:
            request = prepare(self.plan.targets[index], *self.texts[text], self.plan.protocol)
            self.prepared[index, text] = request
        return index, request

    async def _hit(self, chosen: tuple[int, Prepared], due: float | None = None) -> None:
        """Send, and record unless it is warm-up.

        `due` is an open loop's intended send time: a request that leaves late counts its
        latency from it; one that leaves early (at most EARLY_S) from when it left.
        """
        index, request = chosen
        now = time.perf_counter()
        since = now if due is None else min(now, due)
        start = (now if due is None else due) - self.origin
        if due is not None and start >= 0:
            self.lags.append(max(0.0, now - due) * 1000)
        latency, status, error = await send(self.pool, request, since)
        if start < 0:  # warm-up
            return
        if not 200 <= status < 300:
            self.errors += 1
        self.samples.append([index, round(start, 6), round(latency, 4), status, error])
        self.progress(len(self.samples), self.errors)

    async def _sequential(self) -> None:
        """Every target once, in order."""
        for index in range(len(self.plan.targets)):
            await self._hit(self._next(index))

    async def _random(self) -> None:
        """`requests` requests one at a time, `interval_ms` apart, to targets drawn at random."""
        for i in range(self.plan.requests):
            if i and self.plan.interval_ms:
                await asyncio.sleep(self.plan.interval_ms / 1000)
            await self._hit(self._next())

    async def _closed(self) -> None:
        deadline = self.origin + self.plan.duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await self._hit(self._next())

        await asyncio.gather(*(worker() for _ in range(self.plan.concurrency)))

    async def _open(self) -> None:
        plan = self.plan
        limit = in_flight_limit()
        in_flight: set[asyncio.Task[None]] = set()
        capped = unsent = 0
        end = self.origin + plan.duration_s
        schedule = self._schedule()
        for due in schedule:
            if due >= end:
                break
            now = time.perf_counter()
            if now >= end:  # so far behind that the window is over: stop, and say so
                unsent = 1 + sum(1 for _ in itertools.takewhile(lambda t: t < end, schedule))
                break
            if due - EARLY_S > now:
                await asyncio.sleep(due - EARLY_S - now)
            if len(in_flight) >= limit:
                capped += 1
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(self._hit(self._next(), due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            if due <= now:  # behind: let the loop read answers before the next request
                await asyncio.sleep(0)
        if in_flight:
            await asyncio.wait(in_flight)
        if capped:
            self.notes.append(
                f"client {plan.client}: {limit} requests were in flight at once, "
                f"{capped} request(s) waited for one to finish"
            )
        self._note_lateness(unsent)

    def _note_lateness(self, unsent: int) -> None:
        """Say how far behind its schedule an open loop fell, if it did."""
        plan = self.plan
        late = sum(lag > LATE_MS for lag in self.lags)
        what = f"{late} of {len(self.lags)} requests left more than {LATE_MS:g} ms late"
        worst = f"at worst {max(self.lags, default=0):.0f} ms"
        if unsent or late > BEHIND_FRACTION * len(self.lags):
            missing = (
                f"; {unsent} scheduled requests were never sent before the window ended and "
                f"are missing from the results"
                if unsent
                else ""
            )
            self.notes.append(
                f"client {plan.client} could not keep {plan.rate:g} requests/s: {what} "
                f"({worst}){missing}. Latency counts from the intended send time, so it "
                f"includes the delay. Use more clients, or a less busy machine."
            )
        elif late > HICCUP_FRACTION * len(self.lags):
            self.notes.append(
                f"client {plan.client}: {what} ({worst}), as when the machine it runs on is "
                f"busy; their latency includes that delay"
            )

    def _schedule(self) -> Iterator[float]:
        """Intended send times (perf_counter), from the start of the warm-up on."""
        plan = self.plan
        first = self.origin - plan.warmup_s
        if plan.arrivals == "constant":
            gap = 1 / plan.rate
            offset = gap * plan.client / plan.clients  # clients interleave, not in lockstep
            return (first + offset + i * gap for i in itertools.count())
        return itertools.accumulate(
            (self.rng.expovariate(plan.rate) for _ in itertools.count()), initial=first
        )

    def _picker(self) -> Callable[[], int]:
        count = len(self.plan.targets)
        rng = self.rng
        if self.plan.weights is None:
            return lambda: rng.randrange(count)
        cumulative = list(itertools.accumulate(self.plan.weights))
        total = cumulative[-1]
        return lambda: bisect.bisect_right(cumulative, rng.random() * total)

    def _lag_summary(self) -> dict[str, float]:
        if not self.lags:
            return {}
        ordered = sorted(self.lags)
        return {
            "p50_ms": round(ordered[len(ordered) // 2], 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            "max_ms": round(ordered[-1], 3),
            "late": sum(lag > LATE_MS for lag in ordered),
        }


class PreciseEpollSelector(selectors.DefaultSelector):
    """epoll_wait sleeps in whole milliseconds, rounded up: an open loop's requests would
    leave 0.5 ms late on average, and that lag is in their latency. select() on the epoll
    file descriptor waits for the same events with a microsecond timeout. (Linux only: the
    default selector is epoll there; new_event_loop uses this class only then.)"""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        epoll = self._selector  # type: ignore[attr-defined]
        if timeout is not None and timeout > 0 and epoll.fileno() < 1024:  # FD_SETSIZE
            select.select([epoll.fileno()], [], [], timeout)
            timeout = 0
        return super().select(timeout)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Linux: the precise epoll selector; elsewhere (macOS: kqueue) the system's default."""
    if getattr(selectors, "EpollSelector", None) is selectors.DefaultSelector:
        return asyncio.SelectorEventLoop(PreciseEpollSelector())
    return asyncio.SelectorEventLoop()


def in_flight_limit() -> int:
    """Open connections are bounded by the file-descriptor limit: stay well below it."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_IN_FLIGHT
    return max(1, min(MAX_IN_FLIGHT, soft - 100))


def raise_file_limit() -> None:
    """A load client may hold thousands of connections: lift its soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # an unlimited hard limit, say
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
