"""The MiniLM on BentoML, configured as its documentation recommends for throughput:
adaptive batching on a batchable API (@bentoml.api(batchable=True), a list in, a list
out), max_batch_size and max_latency_ms set, no concurrency limit (the default), one
worker process per instance, the intra-op threads set in the service, no access log.

BentoML batches requests to its own POST endpoint (/encode, JSON). doinfer's load client
sends GET /predictions/minilm-0?seq_0=TEXT: a small ASGI middleware turns that request
into the POST the endpoint takes, in the same process, before BentoML's routing, so the
requests go through BentoML's dispatcher as its own clients' would.

    PEER_ARTIFACT=... PEER_THREADS=2 PEER_WORKERS=1 PEER_BATCH=8 PEER_WAIT_MS=10 \\
        bentoml serve benchmarks.peer_apps.bento_service:MiniLM --host 127.0.0.1 --port PORT
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs

import bentoml

from benchmarks.peer_apps.embedder import Embedder

Scope = dict[str, Any]


class GetAsPost:
    """GET /predictions/<instance>?seq_0=TEXT -> POST /encode {"texts": [TEXT]}."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/predictions/"):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope["query_string"].decode())
        body = json.dumps({"texts": [query.get("seq_0", [""])[0]]}).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]  # fmt: skip
        scope = {**scope, "method": "POST", "path": "/encode", "raw_path": b"/encode",
                 "query_string": b"", "headers": headers}  # fmt: skip
        sent = False

        async def once() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, once, send)


@bentoml.service(
    workers=int(os.environ.get("PEER_WORKERS", "1")),
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},  # doinfer logs no request either
)
class MiniLM:
    def __init__(self) -> None:
        self.embedder = Embedder()

    @bentoml.api(
        batchable=True,
        max_batch_size=int(os.environ.get("PEER_BATCH", "8")),
        max_latency_ms=int(os.environ.get("PEER_MAX_LATENCY_MS", "1000")),
    )
    def encode(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(texts)


MiniLM.add_asgi_middleware(GetAsPost)
