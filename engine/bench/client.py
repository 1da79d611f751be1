"""One request, timed: the unit every scenario is made of.

A target's request is built once (bytes on the wire) and sent over the pool's keep-alive
connections. Latency counts from `since`: the moment the request was meant to leave, which
in an open loop is its intended send time, so time spent waiting in the client counts too.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import astuple, dataclass
from typing import Any

from engine.artifacts import default_request
from engine.bench.http import Pool, ProtocolError, request_bytes
from engine.bench.targets import Target

REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Sample:
    target: str  # Target.key
    start: float  # seconds since measuring began (the intended send time in an open loop)
    latency_ms: float
    status: int  # HTTP status, 0 when no answer came (refused, reset, timeout)
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def to_list(self) -> list[Any]:
        return list(astuple(self))

    @classmethod
    def from_list(cls, values: list[Any]) -> Sample:
        return cls(*values)


@dataclass(frozen=True)
class Prepared:
    """A target's request, ready to send."""

    host: str
    port: int
    data: bytes


def query_for(target: Target, seq_0: str | None, seq_1: str | None) -> dict[str, str]:
    request = default_request(target.task)
    params = {"seq_0": seq_0 or request["seq_0"]}
    second = seq_1 or request.get("seq_1")
    if second:
        params["seq_1"] = second
    return params


def v2_body(target: Target, seq_0: str | None, seq_1: str | None) -> bytes:
    """An Open Inference Protocol v2 infer request: one BYTES element per input."""
    inputs = [
        {"name": name, "shape": [1], "datatype": "BYTES", "data": [text]}
        for name, text in query_for(target, seq_0, seq_1).items()
    ]
    return json.dumps({"inputs": inputs}, ensure_ascii=False).encode()


def prepare(
    target: Target, seq_0: str | None, seq_1: str | None, protocol: str = "predictions"
) -> Prepared:
    """The request's bytes: `GET /predictions/{instance}?seq_0=…` or, for v2,
    `POST /v2/models/{instance}/infer` with a JSON body."""
    url = urllib.parse.urlsplit(target.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    base, instance = url.path.rstrip("/"), urllib.parse.quote(target.instance)
    if protocol == "v2":
        path = f"{base}/v2/models/{instance}/infer"
        return Prepared(host, port, request_bytes(host, port, path, v2_body(target, seq_0, seq_1)))
    query = urllib.parse.urlencode(query_for(target, seq_0, seq_1))
    return Prepared(host, port, request_bytes(host, port, f"{base}/predictions/{instance}?{query}"))


async def send(pool: Pool, request: Prepared, since: float) -> tuple[float, int, str]:
    """(latency ms counted from `since`, a perf_counter time; status; error text)."""
    try:
        response = await pool.get(request.host, request.port, request.data)
    except (OSError, TimeoutError, ProtocolError) as exc:
        return (time.perf_counter() - since) * 1000, 0, f"{type(exc).__name__}: {exc}"[:200]
    status = response.status
    error = "" if 200 <= status < 300 else response.body[:200].decode(errors="replace")
    return (response.received_at - since) * 1000, status, error
