"""One address for a fleet: send each request to a server that holds its model.

A fleet packed with `packing: auto` runs one server per device, each holding a few models'
copies. The router knows, for every model, which servers hold a copy and the rate the
packing routed to each; it picks one at random in proportion to those rates (a weighted
share of the traffic, as the packing planned), forwards the request, and when that server
is down or answers 502/503/504 it tries the model's next copy; when no copy can be
reached, a 503 names those it tried. `GET /v2/models` lists every model of the fleet.

    python -m engine.serving.router --table TABLE.json [--host 127.0.0.1] (--port N | --fd N)

TABLE.json: {"models": {MODEL: [{"url": "http://10.0.0.5:8080", "instance": "m-0",
"weight": 3.5}, ...]}}; `instance` is the copy's name on its server.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath

RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Backend:
    """A copy of a model: the server holding it, its name there, its share of traffic."""

    url: str
    instance: str
    weight: float


Table = dict[str, tuple[Backend, ...]]


def load_table(data: dict[str, Any]) -> Table:
    return {
        model: tuple(Backend(b["url"].rstrip("/"), b["instance"], float(b["weight"])) for b in bs)
        for model, bs in data["models"].items()
    }


def table_json(table: Table) -> dict[str, Any]:
    return {
        "models": {
            model: [{"url": b.url, "instance": b.instance, "weight": b.weight} for b in backends]
            for model, backends in sorted(table.items())
        }
    }


def attempt_order(backends: Sequence[Backend], rng: random.Random) -> list[Backend]:
    """Every copy once, the first drawn in proportion to its weight, then the next among
    the rest, ... (copies routed nothing are tried last)."""
    left = list(backends)
    order = []
    while left:
        weights = [max(b.weight, 0.0) for b in left]
        pick = rng.choices(range(len(left)), weights=weights)[0] if sum(weights) > 0 else 0
        order.append(left.pop(pick))
    return order


class _Forwarder:
    """Sends a request for a model on to a copy that holds it, the next copy when one is
    down or overloaded; one HTTP client for all (made on first use, in the server's loop)."""

    def __init__(
        self,
        table: Table,
        timeout_s: float,
        rng: random.Random | None,
        client_factory: Callable[[], httpx.AsyncClient] | None,
    ) -> None:
        self.table = table
        self.chooser = rng or random.Random()
        self.timeout_s = timeout_s
        self.client_factory = client_factory
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = (
                self.client_factory()
                if self.client_factory
                else httpx.AsyncClient(
                    timeout=self.timeout_s, limits=httpx.Limits(max_keepalive_connections=256)
                )
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def model_of(self, name: str) -> str | None:
        """The fleet's model a request names: `m` or, as the old route has it, `m-0`."""
        if name in self.table:
            return name
        base, _, index = name.rpartition("-")
        return base if index.isdigit() and base in self.table else None

    async def forward(
        self, name: str, method: str, path: Callable[[Backend], str], request: Request
    ) -> Response[bytes]:
        model = self.model_of(name)
        if model is None:
            return _json(404, {"error": f"unknown model {name!r}", "models": sorted(self.table)})
        body = await request.body() if method == "POST" else None
        headers = {"content-type": request.headers.get("content-type", "application/json")}
        last: Response[bytes] | None = None
        failures = []
        for backend in attempt_order(self.table[model], self.chooser):
            try:
                answer = await self.client().request(
                    method,
                    backend.url + path(backend),
                    params=dict(request.query_params) if method == "GET" else None,
                    content=body,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                failures.append(f"{backend.url}: {type(exc).__name__}")
                continue
            last = Response(
                answer.content,
                status_code=answer.status_code,
                media_type=answer.headers.get("content-type", "application/json"),
            )
            if answer.status_code not in RETRY_STATUSES:
                return last
            failures.append(f"{backend.url}: {answer.status_code}")
        if last is not None:
            return last
        # unavailable for now (a client may retry), not a bad gateway: no copy is reachable
        return _json(
            503,
            {
                "error": f"no copy of {model} answered: every server holding it is down",
                "tried": failures,
            },
        )


def create_router(
    table: Table,
    *,
    timeout_s: float = 60.0,
    rng: random.Random | None = None,
    client_factory: Callable[[], httpx.AsyncClient] | None = None,
) -> Litestar:
    forwarder = _Forwarder(table, timeout_s, rng, client_factory)
    forward = forwarder.forward

    @get("/v2/health/live", sync_to_thread=False)
    def live() -> dict[str, bool]:
        return {"live": True}

    @get("/v2/health/ready", sync_to_thread=False)
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @get("/v2/models", sync_to_thread=False)
    def models() -> dict[str, Any]:
        return {"models": sorted(table)}

    @get("/v2/models/{name:str}")
    async def metadata(name: FromPath[str], request: Request) -> Response[bytes]:
        return await forward(name, "GET", lambda b: f"/v2/models/{b.instance}", request)

    @post("/v2/models/{name:str}/infer")
    async def infer(name: FromPath[str], request: Request) -> Response[bytes]:
        return await forward(name, "POST", lambda b: f"/v2/models/{b.instance}/infer", request)

    @get("/predictions/{name:str}")
    async def predictions(name: FromPath[str], request: Request) -> Response[bytes]:
        return await forward(name, "GET", lambda b: f"/predictions/{b.instance}", request)

    @get("/", sync_to_thread=False)
    def root() -> dict[str, Any]:
        return {"status": "ok", "router": True, "models": sorted(table)}

    routes = [live, ready, models, metadata, infer, predictions, root]
    return Litestar(routes, on_shutdown=[forwarder.close])


def _json(status: int, data: dict[str, Any]) -> Response[bytes]:
    return Response(json.dumps(data).encode(), status_code=status, media_type="application/json")


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="doinfer's router in front of a fleet")
    parser.add_argument("--table", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fd", type=int, help="serve on this inherited, bound socket")
    args = parser.parse_args(argv)
    table = load_table(json.loads(args.table.read_text()))
    config = uvicorn.Config(
        create_router(table), host=args.host, port=args.port, log_level="warning"
    )
    sockets = [socket.socket(fileno=args.fd)] if args.fd is not None else None
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
