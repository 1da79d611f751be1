"""The model server's HTTP routes (litestar): the old contract, OIP v2, health, metrics.

Every inference request goes through its model's Batcher. A full queue is a 503 with
Retry-After at once; a request larger than the server ever takes is a 413; a client that
disconnects while its request waits takes the request out of the queue (the answer would
go nowhere). While the server drains (it got SIGTERM: engine.serving.__main__), readiness
answers 503 so that load balancers send no more. Error messages never carry a client's
raw control characters (a log or terminal showing them would obey them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from engine.artifacts import BundleModel
from engine.serving.batching import Batcher, BatchPolicy, Overloaded
from engine.serving.limits import ServerLimits
from engine.serving.metrics import CONTENT_TYPE, ServerMetrics
from engine.serving.models import InvalidInput, LoadedBundle, ModelRunner
from engine.serving.protocol import (
    BadRequest,
    Parsed,
    TooLarge,
    from_query,
    from_v2,
    v2_metadata,
    v2_outputs,
)

T = TypeVar("T")
CLIENT_CLOSED_REQUEST = 499  # nginx's code, for metrics only: nobody receives it


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class UnknownModel(Exception):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known


def create_app(bundle: LoadedBundle, limits: ServerLimits | None = None) -> Litestar:
    """The server's app; `app.state.draining = True` makes it report not ready."""
    limits = limits or ServerLimits()
    models = _Models(bundle.runners, ServerMetrics())
    for runner, settings in bundle.distinct_runners():
        models.add_batcher(runner, settings)
    return Litestar(
        route_handlers=[
            *_health_routes(bundle),
            *_inference_routes(models, limits),
            *_metadata_routes(models),
        ],
        on_startup=[models.start],
        on_shutdown=[models.stop],
        exception_handlers={
            BadRequest: _bad_request,
            InvalidInput: _bad_request,
            TooLarge: _too_large,
            UnknownModel: _unknown_model,
            Overloaded: _overloaded,
            ClientGone: _client_gone,
            HTTPException: _http_error,
        },
        request_max_body_size=limits.max_body_bytes,
        state=State({"draining": False}),
        debug=False,
    )


class _Models:
    """The served models, the batcher each distinct runner queues on, and the counters:
    what the inference and metadata routes share."""

    def __init__(self, runners: dict[str, ModelRunner], metrics: ServerMetrics) -> None:
        self.runners = runners
        self.metrics = metrics
        self.batchers: dict[int, Batcher] = {}  # by id(runner): instances may share one

    def add_batcher(self, runner: ModelRunner, settings: BundleModel) -> None:
        observer = self.metrics.for_queue(runner.name)
        batcher = Batcher(
            runner,
            BatchPolicy(
                settings["max_batch_size"],
                settings["max_delay_ms"],
                settings["max_queue"],
                settings["max_padding"],
            ),
            observer,
        )
        observer.watch_depth(lambda: batcher.depth)
        self.batchers[id(runner)] = batcher

    async def start(self) -> None:
        for batcher in self.batchers.values():
            batcher.start()

    async def stop(self) -> None:
        await asyncio.gather(*(b.stop() for b in self.batchers.values()))

    def runner_for(self, name: str) -> ModelRunner:
        runner = self.runners.get(name)
        if runner is None:
            raise UnknownModel(name, sorted(self.runners))
        return runner

    async def answer(
        self, name: str, request: Request, parse: Callable[[ModelRunner], Awaitable[Parsed]]
    ) -> tuple[ModelRunner, list[dict[str, Any]], Parsed]:
        """Parse, queue, wait: the common path of both inference routes, counted."""
        runner = self.runner_for(name)
        started = time.perf_counter()
        code = 500
        try:
            parsed = await parse(runner)
            results = await _unless_disconnected(
                self.batchers[id(runner)].submit(parsed.requests), request.receive
            )
            code = 200
            return runner, results, parsed
        except (BadRequest, InvalidInput):
            code = 400
            raise
        except TooLarge:
            code = 413
            raise
        except Overloaded:
            code = 503
            raise
        except ClientGone:
            code = CLIENT_CLOSED_REQUEST
            raise
        finally:
            self.metrics.answered(name, code, time.perf_counter() - started)


def _health_routes(bundle: LoadedBundle) -> list[HTTPRouteHandler]:
    """What load balancers and probes ask: is the process up, is it ready to serve."""

    @get("/", sync_to_thread=False)
    def root() -> dict[str, Any]:
        return {"status": "ok", "server": bundle.server, "models": sorted(bundle.runners)}

    @get("/v2", sync_to_thread=False)
    def server_metadata() -> dict[str, Any]:
        return {"name": "doinfer", "version": _version(), "extensions": []}

    @get("/v2/health/live", sync_to_thread=False)
    def live() -> dict[str, bool]:
        return {"live": True}

    @get("/v2/health/ready", sync_to_thread=False)
    def ready(state: State) -> Response[dict[str, bool]]:
        # the process serves only once every model is loaded, until it drains
        if state.get("draining"):
            return Response({"ready": False}, status_code=503)
        return Response({"ready": True})

    return [root, server_metadata, live, ready]


def _inference_routes(models: _Models, limits: ServerLimits) -> list[HTTPRouteHandler]:
    """OIP v2's infer and the old GET /predictions: both queue on the model's batcher."""

    @post("/v2/models/{name:str}/infer", status_code=200)
    async def infer(name: FromPath[str], request: Request) -> dict[str, Any]:
        async def parse(runner: ModelRunner) -> Parsed:
            return from_v2(runner, await request.body(), limits.max_inputs)

        runner, results, parsed = await models.answer(name, request, parse)
        body: dict[str, Any] = {
            "model_name": name,
            "model_version": "1",
            "outputs": v2_outputs(runner.task, results, parsed.outputs),
        }
        if parsed.id is not None:
            body["id"] = parsed.id
        return body

    @get("/predictions/{name:str}")
    async def predictions(name: FromPath[str], request: Request) -> dict[str, Any]:
        async def parse(runner: ModelRunner) -> Parsed:
            return from_query(runner, request.scope["query_string"])

        _, (result,), _ = await models.answer(name, request, parse)
        return {"model": name, **result}

    return [infer, predictions]


def _metadata_routes(models: _Models) -> list[HTTPRouteHandler]:
    """What a model is (OIP v2 metadata and readiness), and the Prometheus metrics."""

    @get("/v2/models/{name:str}", sync_to_thread=False)
    def metadata(name: FromPath[str]) -> dict[str, Any]:
        return v2_metadata(name, models.runner_for(name))

    @get("/v2/models/{name:str}/ready", sync_to_thread=False)
    def model_ready(name: FromPath[str]) -> dict[str, Any]:
        models.runner_for(name)
        return {"name": name, "ready": True}

    @get("/metrics", sync_to_thread=False)
    def prometheus() -> Response[bytes]:
        return Response(models.metrics.exposition(), media_type=CONTENT_TYPE)

    return [metadata, model_ready, prometheus]


async def _unless_disconnected(
    work: Awaitable[T], receive: Callable[[], Awaitable[dict[str, Any]]]
) -> T:
    """`work`'s result, unless the client disconnects first: then cancel it (ClientGone).

    The request body has been read by now, so the next ASGI message is the disconnect.
    """

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()  # the client left (or the server stops): drop the queued work
    if task.cancelled() or not task.done():
        raise ClientGone()
    return task.result()


def _version() -> str:
    try:
        return version("doinfer")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _escaped(message: str) -> str:
    """The message with every non-printable character (ESC, CR, bidi controls) written as
    its escape: messages quote what clients sent, and logs and terminals show them."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _bad_request(_: Request, exc: BadRequest | InvalidInput) -> Response[dict[str, str]]:
    return Response({"error": _escaped(str(exc))}, status_code=400)


def _too_large(_: Request, exc: TooLarge) -> Response[dict[str, str]]:
    return Response({"error": _escaped(str(exc))}, status_code=413)


def _unknown_model(_: Request, exc: UnknownModel) -> Response[dict[str, Any]]:
    return Response(
        {"error": _escaped(f"no model {exc.name!r} on this server"), "models": exc.known},
        status_code=404,
    )


def _overloaded(_: Request, exc: Overloaded) -> Response[dict[str, str]]:
    return Response(
        {"error": _escaped(str(exc))},
        status_code=503,
        headers={"Retry-After": str(exc.retry_after_s)},
    )


def _client_gone(_: Request, exc: ClientGone) -> Response[dict[str, str]]:
    return Response({"error": "client closed the request"}, status_code=CLIENT_CLOSED_REQUEST)


def _http_error(_: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    return Response({"error": _escaped(str(exc.detail))}, status_code=exc.status_code)
