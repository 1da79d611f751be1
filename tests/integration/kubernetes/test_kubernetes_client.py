"""The kubernetes runtime's API calls (engine/runtimes/kubernetes_api.py) and their errors.

Against the test API server in tests/kube/ (no cluster runs here; it implements the
Kubernetes REST semantics from the API documentation), or a real cluster when
DOINFER_TEST_KUBECONFIG is set; tests of the simulation's knobs (RBAC, quota, a refused
token) skip there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from engine.runtimes.kubernetes_api import ApplyConflict, KubeClient, KubeError
from tests.kube.handle import KubeApi

pytestmark = pytest.mark.integration

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def client(kube_api: KubeApi, context: str | None = None) -> KubeClient:
    return KubeClient(context or kube_api.context, kubeconfig=str(kube_api.kubeconfig))


def service(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": "http"}]},
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def test_kubernetes_apply_get_list_delete(kube_api: KubeApi) -> None:
    ns = kube_api.namespace("client")

    async def body() -> None:
        kube = client(kube_api)
        await kube.apply(namespace(ns))
        for i in range(7):
            await kube.apply(service(f"s{i}", ns, team="a" if i % 2 else "b"))
        created = await kube.get("Service", "s1", ns)
        assert created is not None and created["metadata"]["labels"] == {"team": "a"}
        assert await kube.get("Service", "nope", ns) is None
        names = [s["metadata"]["name"] for s in await kube.list("Service", ns, {"team": "a"})]
        assert sorted(names) == ["s1", "s3", "s5"]
        assert len(await kube.list("Service", ns)) == 7
        assert await kube.delete("Service", "s1", ns) is True
        assert await kube.delete("Service", "s1", ns) is False
        assert await kube.get("Service", "s1", ns) is None

    run(body())


def test_kubernetes_lists_are_read_page_by_page(kube_api: KubeApi, monkeypatch) -> None:
    monkeypatch.setattr("engine.runtimes.kubernetes_api.PAGE", 2)
    ns = kube_api.namespace("pages")

    async def body() -> None:
        kube = client(kube_api)
        await kube.apply(namespace(ns))
        for i in range(5):
            await kube.apply(service(f"s{i}", ns))
        found = await kube.list("Service", ns)
        assert sorted(s["metadata"]["name"] for s in found) == [f"s{i}" for i in range(5)]

    run(body())
    if kube_api.simulated_cluster:
        pages = [p for m, p in kube_api.requests if m == "GET" and "/services?" in p]
        assert len(pages) == 3 and "continue=" in pages[-1]


def test_kubernetes_conflict_names_the_manager_and_field_and_force_takes_it(
    kube_api: KubeApi,
) -> None:
    ns = kube_api.namespace("conflict")

    async def body() -> None:
        kube = client(kube_api)
        await kube.apply(namespace(ns))
        obj = service("web", ns)
        obj["metadata"]["annotations"] = {"owner": "doinfer"}
        await kube.apply(obj)
        async with kube.api.call_api(
            "PATCH",
            version="v1",
            namespace=ns,
            url="services/web",
            content='{"metadata": {"annotations": {"owner": "alice"}}}',
            headers={"Content-Type": "application/merge-patch+json"},
            params={"fieldManager": "kubectl-annotate"},
        ) as response:
            assert response.status_code == 200
        with pytest.raises(ApplyConflict) as conflict:
            await kube.apply(obj)
        message = str(conflict.value)
        assert ".metadata.annotations.owner (owned by kubectl-annotate)" in message
        assert "--force-conflicts" in message
        unchanged = await kube.get("Service", "web", ns)
        assert unchanged is not None
        assert unchanged["metadata"]["annotations"]["owner"] == "alice"
        forced = await kube.apply(obj, force=True)
        assert forced["metadata"]["annotations"]["owner"] == "doinfer"

    run(body())


def test_kubernetes_rbac_quota_and_token_refusals_say_what_was_refused(
    kube_api: KubeApi,
) -> None:
    ns = kube_api.namespace("refused")

    async def body() -> None:
        kube = client(kube_api)
        await kube.apply(namespace(ns))
        kube_api.forbid("patch", "services", ns)
        with pytest.raises(KubeError) as rbac:
            await kube.apply(service("web", ns))
        assert rbac.value.code == 403
        text = str(rbac.value)
        assert text.startswith(f"RBAC does not allow doinfer to apply Service {ns}/web")
        assert 'cannot patch resource "services"' in text
        kube_api.server.cluster.forbidden.clear()
        kube_api.exceed_quota("services", ns)
        with pytest.raises(KubeError) as quota:
            await kube.apply(service("web", ns))
        assert str(quota.value).startswith(f"a ResourceQuota refused to apply Service {ns}/web")
        kube_api.set_unauthorized()
        with pytest.raises(KubeError) as token:
            await kube.get("Service", "web", ns)
        assert "refused doinfer's credentials (401 Unauthorized)" in str(token.value)

    if not kube_api.simulated_cluster:
        pytest.skip("RBAC, quota and token refusals are knobs of the test API server")
    run(body())


def test_kubernetes_unreachable_cluster_is_one_clear_line(kube_api: KubeApi) -> None:
    if not kube_api.simulated_cluster:
        pytest.skip("the unreachable context exists only in the test server's kubeconfig")
    kube = client(kube_api, kube_api.unreachable_context)
    with pytest.raises(KubeError) as info:
        run(kube.connect())
    assert str(info.value).startswith(
        f"cannot reach the Kubernetes API server of context {kube_api.unreachable_context}: "
    )
