"""One request, timed: the unit every scenario is made of.

aiohttp with one session per scenario (keep-alive connections); latency is taken with
perf_counter around the whole exchange, body included.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from engine.artifacts import default_request
from engine.bench.targets import Target

REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Sample:
    target: str  # Target.key
    start: float  # seconds since the scenario began
    latency_ms: float
    status: int  # HTTP status, 0 when no answer came (refused, reset, timeout)
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def to_list(self) -> list[Any]:
        return list(asdict(self).values())

    @classmethod
    def from_list(cls, values: list[Any]) -> Sample:
        return cls(*values)


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        connector=aiohttp.TCPConnector(limit=0),
    )


def query_for(target: Target, seq_0: str | None, seq_1: str | None) -> dict[str, str]:
    request = default_request(target.task)
    params = {"seq_0": seq_0 or request["seq_0"]}
    second = seq_1 or request.get("seq_1")
    if second:
        params["seq_1"] = second
    return params


async def send(
    http: aiohttp.ClientSession, target: Target, params: dict[str, str], origin: float
) -> Sample:
    start = time.perf_counter()
    try:
        async with http.get(f"{target.url}/predictions/{target.instance}", params=params) as r:
            body = await r.read()
            status = r.status
            error = "" if r.ok else body[:200].decode(errors="replace")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        status, error = 0, f"{type(exc).__name__}: {exc}"[:200]
    latency = (time.perf_counter() - start) * 1000
    return Sample(target.key, start - origin, latency, status, error)
