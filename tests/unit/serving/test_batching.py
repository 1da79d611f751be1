"""The batcher's policy, against a runner whose model calls the test holds and releases."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from engine.serving.batching import Batcher, BatchPolicy, Overloaded, choose_batch
from engine.serving.models import InvalidInput, Request
from engine.serving.protocol import TooLarge


class HeldRunner:
    """Records each batch; a call blocks until the test releases it (when `hold` is set)."""

    name = "held"

    def __init__(self, hold: bool = False) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold:
            self.release.set()

    def estimated_width(self, request: Request) -> int:
        return 8 + len(request.seq_0) // 8 * 8  # coarse, like a padded width

    def infer(self, requests: list[Request]) -> list[Any]:
        self.batches.append([r.seq_0 for r in requests])
        self.started.set()
        self.release.wait(10)
        return [InvalidInput("no") if r.seq_0 == "invalid" else {"echo": r.seq_0} for r in requests]


class Observer:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.seconds: list[float] = []
        self.drops = 0

    def batch(self, size: int, seconds: float) -> None:
        self.sizes.append(size)
        self.seconds.append(seconds)

    def dropped(self) -> None:
        self.drops += 1


def policy(batch: int = 8, delay_ms: float = 0, queue: int = 64) -> BatchPolicy:
    return BatchPolicy(max_batch_size=batch, max_delay_ms=delay_ms, max_queue=queue)


async def started(batcher: Batcher) -> Batcher:
    batcher.start()
    return batcher


async def until(condition: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def held_busy(
    policy: BatchPolicy, text: str, observer: Observer | None = None
) -> tuple[HeldRunner, Batcher, asyncio.Task[list[Any]]]:
    """A started batcher whose held model is computing `text`: what comes next queues."""
    runner = HeldRunner(hold=True)
    batcher = await started(Batcher(runner, policy, observer))
    busy = asyncio.create_task(batcher.submit([Request(text)]))
    await until(runner.started.is_set)
    return runner, batcher, busy


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def test_requests_that_arrive_while_the_model_computes_form_the_next_batches() -> None:
    async def scenario() -> list[list[str]]:
        runner, batcher, first = await held_busy(policy(batch=3), "a")
        rest = [asyncio.create_task(batcher.submit([Request(t)])) for t in "bcdef"]
        await until(lambda: batcher.depth == 5)
        runner.release.set()
        answers = await asyncio.gather(first, *rest)
        assert [a[0]["echo"] for a in answers] == list("abcdef")
        await batcher.stop()
        return runner.batches

    assert run(scenario()) == [["a"], ["b", "c", "d"], ["e", "f"]]


def test_an_idle_model_answers_a_lone_request_at_once_whatever_the_delay() -> None:
    async def scenario() -> float:
        batcher = await started(Batcher(HeldRunner(), policy(delay_ms=5000)))
        begin = time.perf_counter()
        await batcher.submit([Request("alone")])
        await batcher.stop()
        return time.perf_counter() - begin

    assert run(scenario()) < 1.0


def test_after_a_batch_the_model_waits_for_as_many_requests_as_it_held() -> None:
    """A closed loop of clients: the answers go out, the same clients send again a little
    later. Without the wait the first to return would run alone, and the loop would
    settle into batches of 1 and n - 1."""

    async def scenario() -> list[int]:
        observer = Observer()
        batcher = await started(Batcher(HeldRunner(), policy(delay_ms=2000), observer))
        await asyncio.gather(*(batcher.submit([Request(f"r{i}")]) for i in range(4)))
        assert observer.sizes == [1, 3] or observer.sizes == [4]
        second = [asyncio.create_task(batcher.submit([Request("early")]))]
        await asyncio.sleep(0.1)
        second += [asyncio.create_task(batcher.submit([Request(f"s{i}")])) for i in range(3)]
        await asyncio.gather(*second)
        await batcher.stop()
        return observer.sizes

    sizes = run(scenario())
    assert sizes[-1] == 4, sizes


def test_a_batch_takes_the_oldest_request_and_those_nearest_its_length() -> None:
    assert choose_batch([10, 500, 13, 480, 9, 11], 3) == [0, 4, 5]
    assert choose_batch([500, 10, 12, 480], 2) == [0, 3]
    assert choose_batch([10, 500], 3, max_padding=1000) == [0, 1]  # no limit: all that wait


def test_a_batch_leaves_out_whoever_would_pad_it_past_max_padding() -> None:
    """One long passage among short questions: padding all of them to it would cost more
    than running it alone next (1.25: rows x longest <= 1.25 x the sum of sizes)."""
    assert choose_batch([10, 500], 3) == [0]
    assert choose_batch([12, 10, 11, 120, 13], 8) == [0, 1, 2, 4]
    assert choose_batch([120, 10, 11, 12, 100], 8) == [0, 4]  # the oldest goes, long or not
    assert choose_batch([16, 16, 24], 8) == [0, 1]  # 3 x 24 = 72 > 1.25 x 56 = 70
    assert choose_batch([16, 24, 24], 8) == [0, 1, 2]  # 3 x 24 = 72 <= 1.25 x 64 = 80


def test_the_policys_max_padding_decides_who_waits_for_the_next_batch() -> None:
    async def scenario(max_padding: float) -> list[list[str]]:
        padded = BatchPolicy(
            max_batch_size=8, max_delay_ms=0, max_queue=64, max_padding=max_padding
        )
        runner, batcher, first = await held_busy(padded, "first")
        texts = ["short", "long " * 100, "brief"]
        rest = [asyncio.create_task(batcher.submit([Request(t)])) for t in texts]
        await until(lambda: batcher.depth == 3)
        runner.release.set()
        await asyncio.gather(first, *rest)
        await batcher.stop()
        return [[t[:5] for t in batch] for batch in runner.batches]

    assert run(scenario(1.25)) == [["first"], ["short", "brief"], ["long "]]
    assert run(scenario(1000)) == [["first"], ["short", "long ", "brief"]]


def test_a_full_queue_refuses_at_once_with_a_retry_after() -> None:
    async def scenario() -> Overloaded:
        runner, batcher, busy = await held_busy(policy(queue=2), "computing")
        queued = [asyncio.create_task(batcher.submit([Request(t)])) for t in "ab"]
        await until(lambda: batcher.depth == 2)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit([Request("c")])
        runner.release.set()
        await asyncio.gather(busy, *queued)
        await batcher.stop()
        return refused.value

    refused = run(scenario())
    assert refused.retry_after_s >= 1


def test_a_request_whose_client_left_is_never_computed() -> None:
    async def scenario() -> tuple[list[list[str]], int]:
        observer = Observer()
        runner, batcher, busy = await held_busy(policy(), "computing", observer)
        gone = asyncio.create_task(batcher.submit([Request("gone")]))
        stays = asyncio.create_task(batcher.submit([Request("stays")]))
        await until(lambda: batcher.depth == 2)
        gone.cancel()
        runner.release.set()
        await asyncio.gather(busy, stays)
        await batcher.stop()
        return runner.batches, observer.drops

    batches, drops = run(scenario())
    assert batches == [["computing"], ["stays"]]
    assert drops == 1


def test_an_invalid_request_fails_alone_and_a_failing_model_fails_its_batch() -> None:
    class Broken(HeldRunner):
        def infer(self, requests: list[Request]) -> list[Any]:
            raise RuntimeError("model exploded")

    async def scenario() -> None:
        batcher = await started(Batcher(HeldRunner(), policy()))
        with pytest.raises(InvalidInput):
            await batcher.submit([Request("fine"), Request("invalid")])
        assert await batcher.submit([Request("fine")]) == [{"echo": "fine"}]
        await batcher.stop()
        broken = await started(Batcher(Broken(), policy()))
        with pytest.raises(RuntimeError, match="exploded"):
            await broken.submit([Request("x")])
        await broken.stop()

    run(scenario())


def test_a_batch_that_fails_runs_again_one_by_one_so_only_the_bad_request_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A tokenizer fails a whole batch on one text it cannot encode: the requests batched
    with it still get their answers."""

    class Picky(HeldRunner):
        def infer(self, requests: list[Request]) -> list[Any]:
            self.started.set()
            self.release.wait(10)
            self.batches.append([r.seq_0 for r in requests])
            if any(r.seq_0 == "poison" for r in requests):
                raise TypeError("cannot encode")
            return [{"echo": r.seq_0} for r in requests]

    async def scenario() -> tuple[list[Any], list[list[str]]]:
        runner = Picky(hold=True)
        batcher = await started(Batcher(runner, policy()))
        busy = asyncio.create_task(batcher.submit([Request("busy")]))
        await until(runner.started.is_set)
        clients = [
            asyncio.create_task(batcher.submit([Request(t)])) for t in ("good", "poison", "fine")
        ]
        await until(lambda: batcher.depth == 3)
        runner.release.set()
        answers = await asyncio.gather(busy, *clients, return_exceptions=True)
        await batcher.stop()
        return answers, runner.batches

    answers, batches = run(scenario())
    assert batches == [["busy"], ["good", "poison", "fine"], ["good"], ["poison"], ["fine"]]
    assert [r.getMessage() for r in caplog.records] == [
        "model held failed on a batch of 3 (TypeError: cannot encode): running its requests "
        "one by one",
        "model held failed on a request",
    ]
    assert answers[0] == [{"echo": "busy"}] and answers[1] == [{"echo": "good"}]
    assert isinstance(answers[2], TypeError)
    assert answers[3] == [{"echo": "fine"}]


def test_a_request_of_more_texts_than_the_queue_holds_is_too_large_not_overloaded() -> None:
    async def scenario() -> None:
        batcher = await started(Batcher(HeldRunner(), policy(queue=4)))
        with pytest.raises(TooLarge, match="5 texts in one request, where model held queues at"):
            await batcher.submit([Request(str(i)) for i in range(5)])
        assert len(await batcher.submit([Request(str(i)) for i in range(4)])) == 4
        await batcher.stop()

    run(scenario())


def test_a_batchs_time_is_its_own_not_its_wait_for_a_shared_compute_thread() -> None:
    """On cpu a server's models take turns on one thread: a quick model's batch behind a
    slow one's must not be recorded as slow."""

    class SleepingRunner(HeldRunner):
        def __init__(self, name: str, seconds: float, executor: ThreadPoolExecutor) -> None:
            super().__init__()
            self.name, self.seconds, self.executor = name, seconds, executor

        def infer(self, requests: list[Request]) -> list[Any]:
            time.sleep(self.seconds)
            return super().infer(requests)

    async def scenario() -> tuple[Observer, Observer]:
        shared = ThreadPoolExecutor(max_workers=1)
        observers = Observer(), Observer()
        slow = await started(Batcher(SleepingRunner("slow", 0.3, shared), policy(), observers[0]))
        quick = await started(
            Batcher(SleepingRunner("quick", 0.01, shared), policy(), observers[1])
        )
        waiting = asyncio.create_task(slow.submit([Request("a")]))
        await asyncio.sleep(0.02)  # the slow batch holds the thread
        await asyncio.wait_for(quick.submit([Request("b")]), 5)
        await waiting
        return observers

    slow, quick = run(scenario())
    assert slow.seconds[0] >= 0.3
    assert quick.seconds[0] < 0.15  # it waited ~0.28 s for the thread; it computed 0.01
