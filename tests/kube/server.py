"""A small Kubernetes API server for the kubernetes runtime's tests: the HTTP face.

No cluster can run on the development machines (no kind, k3s or kube-apiserver), so the
runtime's kr8s code path runs against this stand-in. It implements the REST semantics doinfer
uses, written from the Kubernetes API documentation, and no more; the contract tests in
tests/integration/kubernetes/test_kubernetes_api_contract.py pin them and run unchanged against
a real cluster (DOINFER_TEST_KUBECONFIG). Modules: resources.py (kinds, discovery), selectors.py,
ssa.py (server-side apply, managedFields), cluster.py (storage and write semantics),
controller.py (simulated controllers, kubelet and scheduler), handle.py (what a test holds).

Using it (stable interface):

    def test_x(kube_api):               # fixture in tests/integration/kubernetes/conftest.py
        kube_api.url                    # http://127.0.0.1:PORT (plain http, bearer token)
        kube_api.kubeconfig             # Path of a kubeconfig; current-context is ours
        kube_api.context                # "doinfer-test"
        kube_api.unreachable_context    # a context whose server refuses connections
        kube_api.namespace("demo")      # "doinfer-test-demo": prefix your namespaces
        kube_api.simulated_cluster      # False against a real cluster
        # knobs; each skips the test against a real cluster:
        kube_api.forbid("patch", "deployments", ns)   # 403 with the RBAC text; ("create",
                                                      # "namespaces") refuses namespace creation
        kube_api.set_unauthorized()                   # 401 on every authenticated request
        kube_api.exceed_quota("deployments", ns)      # 403 "exceeded quota" on create
        kube_api.fail_rollout("web", "ImagePullBackOff" | "Unschedulable" | "CrashLoopBackOff",
                              log="last lines\n")     # by Deployment or Job name
        kube_api.controller.progress_deadline = 0.5   # real seconds for progressDeadlineSeconds
        kube_api.set_job_runner(fn)   # fn(job, index, env) -> (exit_code, log) per Job pod,
                                      # run in a thread per pod, concurrently
        kube_api.append_log(ns, pod, container, text)  # a container prints (env["HOSTNAME"]
                                                       # is the pod's name in a Job runner)
        kube_api.set_exec_runner(fn)  # fn(pod, container, command) -> (code, stdout, stderr)
        kube_api.set_pod_log(fn)      # fn(pod) -> log text of a healthy Deployment pod
        kube_api.requests             # [(method, path?query)] answered so far
        kube_api.server.cluster       # the stored objects (`objects`, `logs`), under `lock`

Standalone: `python -m tests.kube --port 0 --kubeconfig /tmp/kubeconfig` prints the URL.

Paths: `/version`; discovery `/api`, `/api/v1`, `/apis`, `/apis/GROUP[/VERSION]`; resources
`/api/v1/[namespaces/NS/]PLURAL[/NAME[/SUB]]` and `/apis/GROUP/VERSION/...` with GET (get, list
with labelSelector, fieldSelector, limit, continue; watch=true streams events), POST (create),
PUT (replace), PATCH (apply-patch+yaml, merge-patch+json, strategic-merge-patch+json,
json-patch+json; `fieldManager`, `force`, `dryRun=All`), DELETE (propagationPolicy, or a
collection with selectors); `pods/NAME/log` (container, tailLines, previous);
`deployments/NAME/scale`; `.../status`. Every request but /version needs `Authorization:
Bearer TOKEN`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import yaml
from aiohttp import web

from tests.kube import errors, resources
from tests.kube.cluster import Cluster, merge_patch
from tests.kube.controller import Controller
from tests.kube.errors import ApiError
from tests.kube.resources import Resource
from tests.kube.selectors import SelectorError, field_matcher, label_matcher

_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


# what the API server warns when a Job is deleted without a propagation policy
_JOB_ORPHAN_WARNING = (
    '299 - "child pods are preserved by default when jobs are deleted; set'
    " propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress"
    ' this warning"'
)


def _status(error: ApiError) -> web.Response:
    return web.json_response(error.status, status=error.code)


def _manager(request: web.Request) -> str:
    """`fieldManager`, else what the API server derives from the User-Agent ("kubectl")."""
    manager = request.query.get("fieldManager")
    if manager:
        return manager
    return request.headers.get("User-Agent", "unknown").split("/", 1)[0] or "unknown"


@contextlib.contextmanager
def _dry_run(cluster: Cluster, enabled: bool) -> Iterator[None]:
    """dryRun=All: do the whole write, then put the state back."""
    if not enabled:
        yield
        return
    with cluster.lock:
        saved = copy.deepcopy((cluster.objects, cluster.history, cluster._rv))
        try:
            yield
        finally:
            cluster.objects, cluster.history, cluster._rv = saved


class Route:
    """A parsed resource path."""

    def __init__(
        self, resource: Resource, namespace: str | None, name: str | None, sub: str
    ) -> None:
        self.resource, self.namespace, self.name, self.sub = resource, namespace, name, sub


def parse_path(path: str) -> Route | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and resources.find(group, version, rest[2]) is not None
    ):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    resource = resources.find(group, version, rest[0])
    if resource is None:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else ""
    return Route(resource, namespace, name, sub)


class Handlers:
    def __init__(self, cluster: Cluster, controller: Controller, address: str) -> None:
        self.cluster, self.controller, self.address = cluster, controller, address
        self.requests: list[tuple[str, str]] = []

    async def any(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if request.path.rstrip("/") == "/version":  # public, as system:public-info-viewer
            return web.json_response(resources.VERSION_INFO)
        try:
            self.cluster.authenticate(request.headers.get("Authorization"))
            self.controller.reconcile()
            discovery = self._discovery(request.path)
            if discovery is not None:
                return web.json_response(discovery)
            route = parse_path(request.path)
            if route is None:
                raise ApiError(
                    404, "NotFound", "the server could not find the requested resource", {}
                )
            if route.sub == "log" and route.resource.plural == "pods":
                return await self._log(request, route)
            if route.sub == "exec" and route.resource.plural == "pods":
                return await self._exec(request, route)
            if (
                request.method == "GET"
                and route.name is None
                and request.query.get("watch") in ("true", "1")
            ):
                return await self._watch(request, route)
            created: list[bool] = []  # an apply that made the object answers 201
            body = await self._dispatch(request, route, created)
            status = 201 if request.method == "POST" or created else 200
            response = web.json_response(body, status=status)
            orphaning = request.method == "DELETE" and route.resource.plural == "jobs"
            if orphaning and not await _propagation(request):
                response.headers["Warning"] = _JOB_ORPHAN_WARNING
            return response
        except ApiError as error:
            return _status(error)

    def _discovery(self, path: str) -> dict[str, Any] | None:
        path = path.rstrip("/")
        if path == "/api":
            return resources.api_versions(self.address)
        if path == "/apis":
            return resources.api_group_list()
        parts = [p for p in path.split("/") if p]
        if parts == ["api", "v1"]:
            return resources.resource_list("", "v1")
        if len(parts) == 2 and parts[0] == "apis":
            return resources.api_group(parts[1])
        if len(parts) == 3 and parts[0] == "apis":
            return resources.resource_list(parts[1], parts[2])
        return None

    async def _dispatch(
        self, request: web.Request, route: Route, created: list[bool]
    ) -> dict[str, Any]:
        r, ns, name, sub = route.resource, route.namespace, route.name, route.sub
        if r.namespaced and ns is None and (name is not None or request.method != "GET"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        method = request.method
        verb = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }.get(method)
        if verb is None:
            raise errors.method_not_allowed()
        self.cluster.authorize(verb, r, ns, name, sub)
        dry = request.query.get("dryRun") == "All"
        if sub == "scale" and r.plural == "deployments":
            return await self._scale(request, route)
        if sub == "status":
            return await self._status(request, route)
        if sub:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET" and name:
            return self.cluster.get(r, ns or "", name)
        if method == "GET":
            limit = request.query.get("limit")
            return self.cluster.list(
                r,
                ns,
                request.query.get("labelSelector"),
                request.query.get("fieldSelector"),
                int(limit) if limit else None,
                request.query.get("continue"),
            )
        if method == "DELETE" and name is None:
            items = self.cluster.select(
                r, ns, request.query.get("labelSelector"), request.query.get("fieldSelector")
            )
            with _dry_run(self.cluster, dry):
                for item in items:
                    self.cluster.delete(r, ns, item["metadata"]["name"], None)
            return {
                "kind": r.list_kind,
                "apiVersion": r.api_version,
                "metadata": {"resourceVersion": str(self.cluster._rv)},
                "items": items,
            }
        if method == "DELETE":
            policy = await _propagation(request)
            with _dry_run(self.cluster, dry):
                return self.cluster.delete(r, ns, name, policy)
        if method == "POST":
            if name is not None:
                raise errors.method_not_allowed()
            body = await _json_body(request)
            with _dry_run(self.cluster, dry):
                return self.cluster.create(r, ns, body, _manager(request))
        if name is None:
            raise errors.method_not_allowed()
        if method == "PUT":
            body = await _json_body(request)
            with _dry_run(self.cluster, dry):
                return self.cluster.replace(r, ns, name, body, _manager(request))
        return await self._patch(request, route, dry, created)

    async def _patch(
        self, request: web.Request, route: Route, dry: bool, created: list[bool]
    ) -> dict[str, Any]:
        r, ns, name = route.resource, route.namespace, route.name
        assert name is not None
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type not in _PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types"
                f" include: {', '.join(_PATCH_TYPES)}",
            )
        apply = content_type == "application/apply-patch+yaml"
        if apply and not request.query.get("fieldManager"):
            raise ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is'
                " required for apply patch",
                {
                    "group": "meta.k8s.io",
                    "kind": "PatchOptions",
                    "causes": [
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value: is required for apply patch",
                            "field": "fieldManager",
                        }
                    ],
                },
            )
        if not apply and "force" in request.query:
            raise ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified'
                " for non-apply patch",
                {
                    "group": "meta.k8s.io",
                    "kind": "PatchOptions",
                    "causes": [
                        {
                            "reason": "FieldValueForbidden",
                            "message": "Forbidden: may not be specified for non-apply patch",
                            "field": "force",
                        }
                    ],
                },
            )
        text = await request.text()
        try:
            patch = yaml.safe_load(text) if apply else json.loads(text)
        except (yaml.YAMLError, ValueError) as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        with _dry_run(self.cluster, dry):
            if apply:
                existed = self.cluster.find(r, ns or "", name) is not None
                if not existed:
                    self.cluster.authorize("create", r, ns, name)
                force = request.query.get("force") in ("true", "1")
                obj = self.cluster.apply(r, ns, name, patch, request.query["fieldManager"], force)
                if not existed:
                    created.append(True)
                return obj
            return self.cluster.patch(r, ns, name, content_type, patch, _manager(request))

    async def _status(self, request: web.Request, route: Route) -> dict[str, Any]:
        """The status subresource: only `status` changes (a controller's write)."""
        r, ns, name = route.resource, route.namespace or "", route.name or ""
        current = self.cluster.get(r, ns, name)
        if request.method == "GET":
            return current
        body = await _json_body(request)
        if request.method == "PUT":
            status = body.get("status", {})
        elif request.method == "PATCH" and request.headers.get("Content-Type", "").startswith(
            "application/merge-patch+json"
        ):
            status = merge_patch({"status": current.get("status", {})}, body, r.kind, False)[
                "status"
            ]
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the status subresource of the test API server takes PUT and merge-patch+json",
            )
        self.cluster.write_status(r, ns, name, status or {}, _manager(request))
        return self.cluster.get(r, ns, name)

    async def _scale(self, request: web.Request, route: Route) -> dict[str, Any]:
        """autoscaling/v1 Scale of a Deployment; writes record a `scale` subresource entry."""
        r, ns, name = route.resource, route.namespace or "", route.name or ""
        if request.method in ("PUT", "PATCH"):
            body = await _json_body(request)
            replicas = body.get("spec", {}).get("replicas")
            if not isinstance(replicas, int):
                raise errors.bad_request("spec.replicas is required")
            self.cluster.scale(r, ns, name, replicas, _manager(request))
        deployment = self.cluster.get(r, ns, name)
        selector = ",".join(
            f"{k}={v}" for k, v in deployment["spec"]["selector"].get("matchLabels", {}).items()
        )
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: deployment["metadata"][k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": deployment["spec"]["replicas"]},
            "status": {
                "replicas": deployment.get("status", {}).get("replicas", 0),
                "selector": selector,
            },
        }

    async def _log(self, request: web.Request, route: Route) -> web.Response:
        self.cluster.authorize("get", route.resource, route.namespace, route.name, "log")
        pod = self.cluster.get(route.resource, route.namespace or "", route.name or "")
        name = pod["metadata"]["name"]
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {name}, choose one of:"
                    f" [{' '.join(containers)}]"
                )
            container = containers[0]
        if container not in containers:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        key = (pod["metadata"]["namespace"], name, container)
        if request.query.get("previous") in ("true", "1"):
            if key not in self.cluster.previous_logs:
                raise errors.bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            text = self.cluster.previous_logs[key]
        else:
            state = next(
                (
                    s.get("state", {})
                    for s in pod.get("status", {}).get("containerStatuses", [])
                    if s["name"] == container
                ),
                None,
            )
            if key not in self.cluster.logs:
                waiting = (state or {}).get("waiting", {}).get("reason")
                why = (
                    "trying and failing to pull image"
                    if waiting in ("ImagePullBackOff", "ErrImagePull")
                    else "ContainerCreating"
                )
                raise errors.bad_request(
                    f'container "{container}" in pod "{name}" is waiting to start: {why}'
                )
            text = self.cluster.logs[key]
        tail = request.query.get("tailLines")
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail) :]) if int(tail) > 0 else ""
        if request.query.get("follow") in ("true", "1"):
            return await self._follow(request, key, text, len(self.cluster.logs.get(key, "")))
        return web.Response(text=text, content_type="text/plain")

    async def _follow(
        self, request: web.Request, key: tuple[str, str, str], text: str, sent: int
    ) -> web.StreamResponse:
        """logs -f: `text` (the log up to `sent` characters, maybe its tail), then what the
        container adds, until the pod stops."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(text.encode())
        while request.transport is not None and not request.transport.is_closing():
            with self.cluster.lock:
                current = self.cluster.logs.get(key)
                pod = self.cluster.objects.get(("", "pods", key[0], key[1]))
            if current is not None and len(current) > sent:
                await response.write(current[sent:].encode())
                sent = len(current)
            phase = (pod or {}).get("status", {}).get("phase")
            if pod is None or phase in ("Succeeded", "Failed"):
                break
            await asyncio.sleep(0.02)
        return response

    async def _exec(self, request: web.Request, route: Route) -> web.StreamResponse:
        """pods/NAME/exec over a websocket, channel protocol v4/v5: stdout on 1, stderr on 2,
        the Status on 3 (exit code in details.causes[ExitCode]). The command "runs" in
        `controller.exec_runner(pod, container, command) -> (exit_code, stdout, stderr)`."""
        self.cluster.authorize("create", route.resource, route.namespace, route.name, "exec")
        pod = self.cluster.get(route.resource, route.namespace or "", route.name or "")
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        container = request.query.get("container") or (containers[0] if containers else "")
        if container not in containers:
            raise errors.bad_request(f"container {container} is not valid for pod {route.name}")
        if pod.get("status", {}).get("phase") != "Running":
            raise errors.bad_request(
                f'unable to upgrade connection: container not found ("{container}")'
            )
        command = request.query.getall("command", [])
        socket = web.WebSocketResponse(protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"))
        await socket.prepare(request)
        runner = self.controller.exec_runner
        if runner is None:
            code, out, err = 126, "", "exec is not simulated: the test sets an exec_runner\n"
        else:
            code, out, err = await asyncio.to_thread(runner, pod, container, command)
        if out:
            await socket.send_bytes(b"\x01" + out.encode())
        if err:
            await socket.send_bytes(b"\x02" + err.encode())
        if code == 0:
            status: dict[str, Any] = {"metadata": {}, "status": "Success"}
        else:
            status = {
                "metadata": {},
                "status": "Failure",
                "message": f"command terminated with non-zero exit code: error executing"
                f" command {command}, exit code {code}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        await socket.send_bytes(b"\x03" + json.dumps(status).encode())
        await socket.close()
        return socket

    async def _watch(self, request: web.Request, route: Route) -> web.StreamResponse:
        """Newline-delimited watch events after `resourceVersion` (or ADDED for what exists)."""
        r, ns = route.resource, route.namespace
        self.cluster.authorize("watch", r, ns, None)
        try:
            labels = label_matcher(request.query.get("labelSelector"))
            fields = field_matcher(request.query.get("fieldSelector"), r.plural)
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        since_text = request.query.get("resourceVersion")
        with self.cluster.lock:
            since = self.cluster._rv
            if not since_text or since_text == "0":
                initial = self.cluster.select(
                    r, ns, request.query.get("labelSelector"), request.query.get("fieldSelector")
                )
            else:
                initial, since = [], int(since_text)
        for obj in initial:
            await response.write(json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n")
        deadline = time.monotonic() + float(request.query.get("timeoutSeconds") or 1800)
        while time.monotonic() < deadline:
            with self.cluster.lock:
                events = [e for e in self.cluster.history if e.rv > since]
            for event in events:
                since = event.rv
                key = event.key
                if key[:2] != (r.group, r.plural) or (ns and key[2] != ns):
                    continue
                if not labels(event.object["metadata"].get("labels", {})) or not fields(
                    event.object
                ):
                    continue
                await response.write(
                    json.dumps({"type": event.type, "object": event.object}).encode() + b"\n"
                )
            if request.transport is None or request.transport.is_closing():
                break
            await asyncio.sleep(0.02)
        return response


async def _propagation(request: web.Request) -> str | None:
    """DeleteOptions.propagationPolicy, from the query or the body."""
    options = await _json_body(request, allow_empty=True)
    return request.query.get("propagationPolicy") or (options or {}).get("propagationPolicy")


async def _json_body(request: web.Request, allow_empty: bool = False) -> Any:
    text = await request.text()
    if not text.strip():
        if allow_empty:
            return None
        raise errors.bad_request("the request body is empty")
    try:
        if "yaml" in request.headers.get("Content-Type", ""):
            return yaml.safe_load(text)
        return json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc


def make_app(
    cluster: Cluster, controller: Controller, address: str
) -> tuple[web.Application, Handlers]:
    handlers = Handlers(cluster, controller, address)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handlers.any)
    return app, handlers


class KubeApiServer:
    """The server on 127.0.0.1, in its own thread with its own event loop."""

    def __init__(
        self,
        token: str = "doinfer-test-token",
        user: str = "system:serviceaccount:doinfer-test:deployer",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.cluster = Cluster(user=user, token=token)
        self.controller = Controller(self.cluster)
        self.host, self.port = host, port
        self.handlers: Handlers | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path?query) of every request so far, for tests that count writes."""
        return self.handlers.requests if self.handlers else []

    def start(self) -> KubeApiServer:
        self._thread = threading.Thread(target=self._run, name="kube-api-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"the test API server did not start: {self._error}")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app, self.handlers = make_app(self.cluster, self.controller, f"{self.host}:{self.port}")
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        self.handlers.address = f"{self.host}:{self.port}"
        self._ready.set()
        ticker = asyncio.create_task(self._tick())
        await self._stop.wait()
        ticker.cancel()
        await runner.cleanup()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.controller.interval)
            self.controller.reconcile()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
