"""The model server's HTTP routes (litestar): the old contract, OIP v2, health."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from engine.serving.models import InvalidInput, LoadedBundle, ModelRunner
from engine.serving.protocol import BadRequest, from_query, from_v2, v2_metadata, v2_outputs


def create_app(bundle: LoadedBundle) -> Litestar:
    runners = bundle.runners

    def runner_for(name: str) -> ModelRunner:
        runner = runners.get(name)
        if runner is None:
            raise UnknownModel(name, sorted(runners))
        return runner

    @get("/", sync_to_thread=False)
    def root() -> dict[str, Any]:
        return {"status": "ok", "server": bundle.server, "models": sorted(runners)}

    @get("/v2/health/live", sync_to_thread=False)
    def live() -> dict[str, bool]:
        return {"live": True}

    @get("/v2/health/ready", sync_to_thread=False)
    def ready() -> dict[str, bool]:
        return {"ready": True}  # the process serves only once every model is loaded

    @get("/v2/models/{name:str}", sync_to_thread=False)
    def metadata(name: FromPath[str]) -> dict[str, Any]:
        return v2_metadata(name, runner_for(name))

    @get("/v2/models/{name:str}/ready", sync_to_thread=False)
    def model_ready(name: FromPath[str]) -> dict[str, Any]:
        runner_for(name)
        return {"name": name, "ready": True}

    @post("/v2/models/{name:str}/infer", status_code=200)
    async def infer(name: FromPath[str], request: Request) -> dict[str, Any]:
        runner = runner_for(name)
        requests, request_id = from_v2(runner, await request.body())
        results = await runner(requests)
        answer: dict[str, Any] = {
            "model_name": name,
            "model_version": "1",
            "outputs": v2_outputs(runner.task, results),
        }
        if request_id is not None:
            answer["id"] = request_id
        return answer

    @get("/predictions/{name:str}")
    async def predictions(name: FromPath[str], request: Request) -> dict[str, Any]:
        runner = runner_for(name)
        (result,) = await runner([from_query(runner, dict(request.query_params))])
        return {"model": name, **result}

    return Litestar(
        route_handlers=[root, live, ready, metadata, model_ready, infer, predictions],
        exception_handlers={
            BadRequest: _bad_request,
            InvalidInput: _bad_request,
            UnknownModel: _unknown_model,
            HTTPException: _http_error,
        },
        debug=False,
    )


class UnknownModel(Exception):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known


def _bad_request(_: Request, exc: BadRequest | InvalidInput) -> Response[dict[str, str]]:
    return Response({"error": str(exc)}, status_code=400)


def _unknown_model(_: Request, exc: UnknownModel) -> Response[dict[str, Any]]:
    return Response(
        {"error": f"no model {exc.name!r} on this server", "models": exc.known}, status_code=404
    )


def _http_error(_: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    return Response({"error": exc.detail}, status_code=exc.status_code)
