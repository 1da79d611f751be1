"""The router's choices: copies drawn by the packing's rates, the next copy tried when one
is down or overloaded, a bad request answered once, unknown models refused.

Backends are httpx's MockTransport (in-process stand-ins); the real processes and HTTP are
exercised by tests/integration/test_fleet_local.py.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable

import httpx
from litestar.testing import TestClient

from engine.serving.router import Backend, attempt_order, create_router, load_table, table_json

TABLE = {
    "a": (
        Backend("http://one:1", "a-0", 3.0),
        Backend("http://two:2", "a-0", 1.0),
    ),
    "b": (Backend("http://two:2", "b-0", 2.0),),
}


def client(handler: Callable[[httpx.Request], httpx.Response], seed: int = 0) -> TestClient:
    app = create_router(
        TABLE,
        rng=random.Random(seed),
        client_factory=lambda: httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    return TestClient(app)


def echo(down: set[str] = frozenset(), status: dict[str, int] | None = None):
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        calls.append(f"{host}{request.url.path}")
        if host in down:
            raise httpx.ConnectError("refused", request=request)
        code = (status or {}).get(host, 200)
        return httpx.Response(code, json={"host": host, "path": request.url.path,
                                          "query": str(request.url.query, "ascii"),
                                          "body": request.content.decode()})  # fmt: skip

    return handle, calls


def test_copies_are_drawn_in_proportion_to_their_rates() -> None:
    rng = random.Random(1)
    first = Counter(attempt_order(TABLE["a"], rng)[0].url for _ in range(4000))
    assert 0.72 < first["http://one:1"] / 4000 < 0.78  # 3 : 1
    assert sorted(b.url for b in attempt_order(TABLE["a"], rng)) == ["http://one:1", "http://two:2"]


def test_both_routes_reach_a_server_holding_the_model() -> None:
    handle, calls = echo()
    with client(handle) as c:
        answer = c.post("/v2/models/b/infer", content=b'{"inputs": []}')
        assert answer.status_code == 200
        assert answer.json()["path"] == "/v2/models/b-0/infer"
        assert answer.json()["body"] == '{"inputs": []}'
        old = c.get("/predictions/b-0", params={"seq_0": "hello"})
        assert old.json()["path"] == "/predictions/b-0" and old.json()["query"] == "seq_0=hello"
        assert c.get("/v2/models").json() == {"models": ["a", "b"]}
    assert calls == ["two/v2/models/b-0/infer", "two/predictions/b-0"]


def test_a_copy_down_or_overloaded_is_skipped_for_the_next() -> None:
    for seed in range(10):  # whichever copy is drawn first
        handle, _ = echo(down={"one"})
        with client(handle, seed) as c:
            assert c.post("/v2/models/a/infer", content=b"{}").json()["host"] == "two"
        handle, _ = echo(status={"two": 503})
        with client(handle, seed) as c:
            assert c.post("/v2/models/a/infer", content=b"{}").json()["host"] == "one"


def test_every_copy_down_is_a_503_naming_them() -> None:
    handle, _ = echo(down={"one", "two"})
    with client(handle) as c:
        answer = c.post("/v2/models/a/infer", content=b"{}")
    assert answer.status_code == 503
    assert answer.json()["error"] == "no copy of a answered: every server holding it is down"
    assert sorted(answer.json()["tried"]) == [
        "http://one:1: ConnectError",
        "http://two:2: ConnectError",
    ]


def test_a_bad_request_is_answered_once_and_an_unknown_model_refused() -> None:
    handle, calls = echo(status={"one": 400, "two": 400})
    with client(handle) as c:
        assert c.post("/v2/models/a/infer", content=b"{}").status_code == 400
        unknown = c.post("/v2/models/zz/infer", content=b"{}")
    assert len(calls) == 1
    assert unknown.status_code == 404 and unknown.json()["models"] == ["a", "b"]


def test_the_table_round_trips_through_json() -> None:
    assert load_table(json.loads(json.dumps(table_json(TABLE)))) == TABLE
