"""The few Kubernetes API calls the kubernetes runtime makes, through kr8s, with errors a
user can act on.

Objects travel as plain dicts (what kubernetes_manifests renders). kr8s 0.20 has no
server-side apply, so `apply` is the PATCH `kubectl apply --server-side` sends:
`application/apply-patch+yaml` under the field manager `doinfer`. Every failure becomes a
DoinferError naming what was refused and why: an unreachable server, credentials refused
(401), RBAC (403, with verb and resource), a quota, a conflict with another field manager
(409, with the manager and the fields).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import kr8s.asyncio
from kr8s._exceptions import APITimeoutError, ServerError

from engine.errors import DoinferError
from engine.runtimes.kubernetes_manifests import MANAGER

PAGE = 250  # objects per list request (lists are paged with limit + continue)


@dataclass(frozen=True)
class Kind:
    version: str  # "v1", "apps/v1"
    plural: str
    namespaced: bool = True


KINDS = {
    "Namespace": Kind("v1", "namespaces", namespaced=False),
    "Deployment": Kind("apps/v1", "deployments"),
    "ReplicaSet": Kind("apps/v1", "replicasets"),
    "Service": Kind("v1", "services"),
    "ConfigMap": Kind("v1", "configmaps"),
    "Job": Kind("batch/v1", "jobs"),
    "Pod": Kind("v1", "pods"),
    "Event": Kind("v1", "events"),
}


class KubeError(DoinferError):
    """A refused API call; `code` is its HTTP status (0: no answer)."""

    def __init__(self, message: str, code: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ApplyConflict(KubeError):
    """Server-side apply met fields another field manager owns (409)."""


class KubeClient:
    """One cluster, as a kubeconfig context names it (KUBECONFIG is honoured by kr8s)."""

    def __init__(self, context: str | None = None, kubeconfig: str | None = None) -> None:
        self.context = context
        self.kubeconfig = kubeconfig
        self._api: Any = None

    @property
    def api(self) -> Any:
        """The connected kr8s.asyncio Api (after `connect`), for kr8s's own objects."""
        return self._api

    @property
    def where(self) -> str:
        server = self._api.auth.server if self._api is not None else "?"
        return f"{server} (context {self.context or 'current'})"

    async def connect(self) -> None:
        """Reach the API server (kr8s asks for /version): fail here, before any change."""
        if self._api is not None:
            return
        try:
            self._api = await kr8s.asyncio.api(kubeconfig=self.kubeconfig, context=self.context)
        except (httpx.HTTPError, OSError, APITimeoutError) as exc:
            raise KubeError(
                f"cannot reach the Kubernetes API server of context "
                f"{self.context or '(current)'}: {_cause(exc)}"
            ) from None
        except ServerError as exc:
            raise _refused(exc, "get", "the server version", self) from None
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise KubeError(
                f"no usable kubeconfig context {self.context or '(current)'} "
                f"(KUBECONFIG or ~/.kube/config): {exc}"
            ) from None

    async def apply(self, obj: dict[str, Any], force: bool = False) -> dict[str, Any]:
        """Server-side apply: create or update the fields doinfer manages, leave the rest."""
        kind, meta = obj["kind"], obj["metadata"]
        params = {"fieldManager": MANAGER} | ({"force": "true"} if force else {})
        return await self._call(
            "PATCH",
            kind,
            meta.get("namespace"),
            meta["name"],
            verb="apply",
            content=json.dumps(obj),
            headers={"Content-Type": "application/apply-patch+yaml"},
            params=params,
        )

    async def get(
        self, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        try:
            return await self._call("GET", kind, namespace, name, verb="get")
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise

    async def list(
        self,
        kind: str,
        namespace: str | None,
        selector: dict[str, str] | None = None,
        **params: str,
    ) -> list[dict[str, Any]]:
        """Every object of a kind matching the labels, page by page."""
        query: dict[str, Any] = dict(params)
        if selector:
            query["labelSelector"] = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        items: list[dict[str, Any]] = []
        while True:
            page = await self._call(
                "GET", kind, namespace, "", verb="list", params=query | {"limit": PAGE}
            )
            items += page.get("items", [])
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items
            query["continue"] = token

    async def delete(self, kind: str, name: str, namespace: str | None) -> bool:
        """Delete one object and what it owns (pods of a Job); False when already gone."""
        try:
            await self._call(
                "DELETE",
                kind,
                namespace,
                name,
                verb="delete",
                content=json.dumps({"propagationPolicy": "Background"}),
            )
        except KubeError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    async def log(self, pod: str, namespace: str, tail: int | None = None) -> str:
        params = {"tailLines": str(tail)} if tail else {}
        return await self._call(
            "GET", "Pod", namespace, f"{pod}/log", verb="get logs of", params=params, text=True
        )

    async def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Events about one object, oldest first."""
        found = await self.list("Event", namespace, fieldSelector=f"involvedObject.name={name}")
        return sorted(found, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    async def _call(
        self,
        method: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        verb: str,
        text: bool = False,
        **kwargs: Any,
    ) -> Any:
        await self.connect()
        spec = KINDS[kind]
        url = f"{spec.plural}/{name}" if name else spec.plural
        what = f"{kind} {namespace}/{name}" if namespace and name else f"{spec.plural}"
        if namespace and not name:
            what += f" in namespace {namespace}"
        try:
            async with self._api.call_api(
                method,
                version=spec.version,
                namespace=namespace if spec.namespaced else None,
                url=url,
                **kwargs,
            ) as response:
                return response.text if text else response.json()
        except ServerError as exc:
            raise _refused(exc, verb, what, self) from None
        except (httpx.HTTPError, OSError, APITimeoutError) as exc:
            raise KubeError(f"lost the Kubernetes API server {self.where}: {_cause(exc)}") from None


def _cause(exc: BaseException) -> str:
    while exc.__cause__ is not None and not str(exc):
        exc = exc.__cause__
    return str(exc) or type(exc).__name__


def _refused(exc: ServerError, verb: str, what: str, client: KubeClient) -> KubeError:
    """A refused call as a message naming what was refused and what to do."""
    response = exc.response
    code = response.status_code if response is not None else 0
    status = exc.status if isinstance(exc.status, dict) else {}
    reason = status.get("reason", "")
    message = status.get("message") or str(exc)
    if code == 401:
        return KubeError(
            f"the Kubernetes API server {client.where} refused doinfer's credentials "
            f"(401 Unauthorized): renew them (on EKS: aws eks update-kubeconfig)",
            code,
            reason,
        )
    if code == 403 and "quota" in message.lower():
        return KubeError(f"a ResourceQuota refused to {verb} {what}: {message}", code, reason)
    if code == 403:
        return KubeError(
            f"RBAC does not allow doinfer to {verb} {what} ({message}); ask the cluster's "
            f"administrator for that permission, or use another context",
            code,
            reason,
        )
    if code == 409 and verb == "apply":
        causes = status.get("details", {}).get("causes", [])
        owned = [
            f"{c.get('field', '?')} (owned by {_manager(c.get('message', ''))})" for c in causes
        ] or [message]
        return ApplyConflict(
            f"{what}: another field manager set fields doinfer also sets: {', '.join(owned)}; "
            f"nothing was changed. Apply with --force-conflicts to take them over (like "
            f"kubectl apply --server-side --force-conflicts), or drop them from the spec",
            code,
            reason,
        )
    return KubeError(
        f"the Kubernetes API refused to {verb} {what} ({code} {reason}): {message}", code, reason
    )


def _manager(message: str) -> str:
    """'conflict with "kubectl-edit" using apps/v1' -> 'kubectl-edit'."""
    match = re.search(r'conflict with "([^"]+)"', message)
    return match.group(1) if match else message or "another manager"
