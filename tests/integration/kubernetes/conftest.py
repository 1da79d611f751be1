"""The cluster the kubernetes tests talk to: the test API server in tests/kube/ by default, a
real cluster (kind, EKS) when DOINFER_TEST_KUBECONFIG names its kubeconfig
(DOINFER_TEST_KUBE_CONTEXT picks the context, DOINFER_TEST_NAMESPACE_PREFIX the prefix of
every namespace the tests make). See docs/KUBERNETES.md, "Testing"."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import kr8s
import pytest

from tests.kube.handle import KubeApi

REAL_KUBECONFIG = os.environ.get("DOINFER_TEST_KUBECONFIG")


def _forget_kr8s_clients() -> None:
    """kr8s caches one Api per arguments (and thread and loop): a cached client would keep
    talking to the previous test's server."""
    kr8s.Api._instances.clear()  # one dict, shared with kr8s.asyncio.Api


async def _delete_namespaces(api_handle: KubeApi) -> None:
    api = await kr8s.asyncio.api(kubeconfig=str(api_handle.kubeconfig), context=api_handle.context)
    for name in api_handle.namespaces:
        try:
            ns = await kr8s.asyncio.objects.Namespace.get(name, api=api)
            await ns.delete()
        except kr8s.NotFoundError:
            pass


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[KubeApi]:
    _forget_kr8s_clients()
    if REAL_KUBECONFIG:
        handle = KubeApi.real(Path(REAL_KUBECONFIG), os.environ.get("DOINFER_TEST_KUBE_CONTEXT"))
    else:
        handle = KubeApi.simulated(tmp_path)
    try:
        yield handle
    finally:
        if handle.server is None and handle.namespaces:
            _forget_kr8s_clients()
            asyncio.run(_delete_namespaces(handle))
        handle.stop()
        _forget_kr8s_clients()
