"""The Kubernetes API semantics doinfer relies on, through kr8s.asyncio as the runtime uses it.

They run against the test API server in tests/kube/ (no cluster can run here), and the same
tests run against a real cluster when DOINFER_TEST_KUBECONFIG is set: what passes on both is
what the runtime may rely on. Tests of the simulation's knobs (failure injection, RBAC and
quota refusals, the Job runner hook) skip on a real cluster, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Deployment, Job, Namespace, Pod

from tests.kube.handle import KubeApi

pytestmark = pytest.mark.integration

T = TypeVar("T")
APPLY = {"Content-Type": "application/apply-patch+yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}
IMAGE = "registry.k8s.io/pause:3.10"  # runs anywhere on a real cluster; here only a name


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def connect(kube_api: KubeApi) -> kr8s.asyncio.Api:
    return await kr8s.asyncio.api(kubeconfig=str(kube_api.kubeconfig), context=kube_api.context)


async def call(
    api: kr8s.asyncio.Api,
    method: str,
    version: str,
    url: str,
    namespace: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request; the status code and the decoded body (JSON, else text)."""
    kwargs: dict[str, Any] = {"raise_for_status": False}
    if body is not None:
        kwargs["content"] = body if isinstance(body, str) else json.dumps(body)
    if headers:
        kwargs["headers"] = headers
    if params:
        kwargs["params"] = params
    async with api.call_api(
        method, version=version, namespace=namespace, url=url, **kwargs
    ) as response:
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text


async def eventually(check: Callable[[], Awaitable[T | None]], kube_api: KubeApi, what: str) -> T:
    """Poll until `check` returns something truthy (a real cluster gets minutes)."""
    deadline = time.monotonic() + (10 if kube_api.simulated_cluster else 300)
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05 if kube_api.simulated_cluster else 1)
    raise AssertionError(f"timed out waiting for {what}")


async def make_namespace(api: kr8s.asyncio.Api, kube_api: KubeApi, name: str) -> str:
    full = kube_api.namespace(name)
    status, body = await call(
        api,
        "POST",
        "v1",
        "namespaces",
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": full}},
    )
    assert status == 201, body
    return full


def deployment(name: str, namespace: str, replicas: int | None = 2, **container: Any) -> dict:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app.kubernetes.io/instance": name}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/instance": name}},
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": IMAGE,
                        "ports": [{"containerPort": 8080}],
                        **container,
                    }
                ]
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "doinfer"},
        },
        "spec": spec,
    }


async def apply(
    api: kr8s.asyncio.Api, obj: dict, manager: str = "doinfer", force: bool = False
) -> tuple[int, Any]:
    params = {"fieldManager": manager, **({"force": "true"} if force else {})}
    plural = {
        "Deployment": "deployments",
        "Service": "services",
        "ConfigMap": "configmaps",
        "Job": "jobs",
    }[obj["kind"]]
    return await call(
        api,
        "PATCH",
        obj["apiVersion"],
        f"{plural}/{obj['metadata']['name']}",
        namespace=obj["metadata"]["namespace"],
        body=obj,
        headers=APPLY,
        params=params,
    )


async def pods_of(api: kr8s.asyncio.Api, namespace: str, selector: str = "") -> list[Pod]:
    return [p async for p in api.get("pods", namespace=namespace, label_selector=selector)]


def entry(obj: dict, manager: str, operation: str) -> dict | None:
    return next(
        (
            e
            for e in obj["metadata"].get("managedFields", [])
            if e["manager"] == manager and e["operation"] == operation
        ),
        None,
    )


# ---- discovery, reads, errors


def test_kubernetes_discovery_names_the_kinds_doinfer_uses(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        assert (await api.version())["gitVersion"].startswith("v1.")
        found = {(r["version"], r["name"]): r for r in await api.api_resources()}
        assert found[("apps/v1", "deployments")]["kind"] == "Deployment"
        assert found[("apps/v1", "deployments")]["namespaced"] is True
        assert "patch" in found[("apps/v1", "deployments")]["verbs"]
        assert found[("batch/v1", "jobs")]["kind"] == "Job"
        assert found[("v1", "namespaces")]["namespaced"] is False
        for name in ("pods", "services", "events"):
            assert ("v1", name) in found
        assert await api.lookup_kind("deploy") == ("deployment.apps/v1", "deployments", True)

    run(body())


def test_kubernetes_errors_are_status_objects(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "errors")
        status, missing = await call(api, "GET", "apps/v1", "deployments/nope", namespace=ns)
        assert status == 404
        assert missing["kind"] == "Status" and missing["apiVersion"] == "v1"
        assert missing["status"] == "Failure" and missing["reason"] == "NotFound"
        assert missing["message"] == 'deployments.apps "nope" not found'
        assert missing["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
        assert missing["code"] == 404

        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {"a": "1"},
        }
        assert (await call(api, "POST", "v1", "configmaps", namespace=ns, body=config))[0] == 201
        status, again = await call(api, "POST", "v1", "configmaps", namespace=ns, body=config)
        assert (status, again["reason"]) == (409, "AlreadyExists")
        assert again["message"] == 'configmaps "c" already exists'
        generated = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "c-"}}
        status, made = await call(api, "POST", "v1", "configmaps", namespace=ns, body=generated)
        assert status == 201 and len(made["metadata"]["name"]) == len("c-") + 5

        bad = deployment("bad", ns)
        bad["spec"]["template"]["metadata"]["labels"] = {"other": "x"}
        status, invalid = await apply(api, bad)
        assert (status, invalid["reason"]) == (422, "Invalid")
        assert invalid["message"].startswith('Deployment.apps "bad" is invalid: ')
        assert "spec.template.metadata.labels" in [c["field"] for c in invalid["details"]["causes"]]

        # optimistic concurrency: a PUT carrying an old resourceVersion is refused
        _, current = await call(api, "GET", "v1", "configmaps/c", namespace=ns)
        stale = {**current, "data": {"a": "2"}}
        assert (await call(api, "PUT", "v1", "configmaps/c", namespace=ns, body=stale))[0] == 200
        status, conflict = await call(
            api, "PUT", "v1", "configmaps/c", namespace=ns, body={**current, "data": {"a": "3"}}
        )
        assert (status, conflict["reason"]) == (409, "Conflict")
        assert "the object has been modified" in conflict["message"]

    run(body())


def test_kubernetes_label_selectors_equality_and_set_forms(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "selectors")
        labels = {
            "a": {"tier": "web", "env": "prod"},
            "b": {"tier": "db", "env": "prod"},
            "c": {"tier": "web"},
            "d": {},
        }
        for name, lab in labels.items():
            cm = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "labels": lab},
            }
            assert (await call(api, "POST", "v1", "configmaps", namespace=ns, body=cm))[0] == 201

        async def names(selector: str) -> list[str]:
            status, listed = await call(
                api, "GET", "v1", "configmaps", namespace=ns, params={"labelSelector": selector}
            )
            assert status == 200, listed
            return sorted(
                i["metadata"]["name"] for i in listed["items"] if i["metadata"]["name"] in labels
            )

        assert await names("tier=web") == ["a", "c"]
        assert await names("tier==web") == ["a", "c"]
        assert await names("tier!=web") == ["b", "d"]  # also matches objects without the key
        assert await names("tier in (web,db)") == ["a", "b", "c"]
        assert await names("tier notin (web)") == ["b", "d"]
        assert await names("env") == ["a", "b"]
        assert await names("!env") == ["c", "d"]
        assert await names("tier=web,env=prod") == ["a"]
        assert await names("tier in (web),!env") == ["c"]
        status, bad = await call(
            api, "GET", "v1", "configmaps", namespace=ns, params={"labelSelector": "tier in web"}
        )
        assert (status, bad["reason"]) == (400, "BadRequest")

    run(body())


def test_kubernetes_lists_page_with_limit_and_continue(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "pages")
        for i in range(5):
            cm = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"page-{i}", "labels": {"paged": "yes"}},
            }
            await call(api, "POST", "v1", "configmaps", namespace=ns, body=cm)
        seen: list[str] = []
        params = {"labelSelector": "paged=yes", "limit": "2"}
        pages = 0
        while True:
            status, page = await call(api, "GET", "v1", "configmaps", namespace=ns, params=params)
            assert status == 200 and page["kind"] == "ConfigMapList"
            assert page["apiVersion"] == "v1" and page["metadata"]["resourceVersion"]
            assert len(page["items"]) <= 2
            seen += [i["metadata"]["name"] for i in page["items"]]
            pages += 1
            if not page["metadata"].get("continue"):
                break
            params = {**params, "continue": page["metadata"]["continue"]}
        # a real API server may answer short pages while filtering; never more than the limit
        assert sorted(seen) == [f"page-{i}" for i in range(5)] and pages >= 3
        # kr8s pages by itself, and lists across namespaces
        everywhere = [
            o
            async for o in api.get(
                "configmaps", namespace=kr8s.ALL, label_selector={"paged": "yes"}
            )
        ]
        assert sorted(o.name for o in everywhere if o.namespace == ns) == sorted(seen)

    run(body())


# ---- server-side apply


def test_kubernetes_apply_creates_and_records_field_ownership(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "apply")
        obj = deployment("web", ns, env=[{"name": "MODEL", "value": "m"}], args=["--a", "--b"])
        status, created = await apply(api, obj)
        assert status == 201, created
        meta = created["metadata"]
        assert meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"]
        mine = entry(created, "doinfer", "Apply")
        assert mine is not None and mine["fieldsType"] == "FieldsV1"
        assert mine["apiVersion"] == "apps/v1"
        fields = mine["fieldsV1"]
        assert fields["f:spec"]["f:replicas"] == {}
        container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"server"}']
        assert container["."] == {} and container["f:image"] == {}
        assert container["f:args"] == {}  # atomic list: owned whole
        assert 'k:{"containerPort":8080,"protocol":"TCP"}' in container["f:ports"]
        assert 'k:{"name":"MODEL"}' in container["f:env"]

        # the same configuration again writes nothing (a ConfigMap: no controller writes it)
        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": ns},
            "data": {"a": "1"},
        }
        _, first = await apply(api, config)
        _, again = await apply(api, config)
        assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        config["data"]["a"] = "2"
        _, changed_config = await apply(api, config)
        assert changed_config["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]
        status, again = await apply(api, obj)
        assert status == 200 and again["metadata"]["generation"] == 1

        # a label is metadata: a new resourceVersion, the same generation
        obj["metadata"]["labels"]["extra"] = "1"
        _, relabelled = await apply(api, obj)
        assert relabelled["metadata"]["labels"]["extra"] == "1"
        assert relabelled["metadata"]["generation"] == 1
        # a spec change bumps the generation
        obj["spec"]["template"]["spec"]["containers"][0]["image"] = IMAGE + "-other"
        _, changed = await apply(api, obj)
        assert changed["metadata"]["generation"] == 2

        # without a field manager the API server refuses an apply
        status, refused = await call(
            api, "PATCH", "apps/v1", "deployments/web", namespace=ns, body=obj, headers=APPLY
        )
        assert status == 422 and refused["reason"] == "Invalid"
        assert refused["message"] == (
            'PatchOptions.meta.k8s.io "" is invalid: fieldManager:'
            " Required value: is required for apply patch"
        )

    run(body())


def test_kubernetes_apply_conflicts_share_and_force(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "conflict")
        obj = deployment("web", ns, replicas=2)
        assert (await apply(api, obj))[0] == 201
        # another manager (kubectl scale, an autoscaler) sets replicas
        status, scaled = await call(
            api,
            "PATCH",
            "apps/v1",
            "deployments/web",
            namespace=ns,
            body={"spec": {"replicas": 3}},
            headers=MERGE,
            params={"fieldManager": "kubectl"},
        )
        assert status == 200 and scaled["spec"]["replicas"] == 3
        kubectl = entry(scaled, "kubectl", "Update")
        assert kubectl is not None and "f:replicas" in kubectl["fieldsV1"]["f:spec"]
        assert "f:replicas" not in entry(scaled, "doinfer", "Apply")["fieldsV1"]["f:spec"]

        obj["spec"]["replicas"] = 4
        status, conflict = await apply(api, obj)
        assert status == 409 and conflict["kind"] == "Status"
        assert conflict["reason"] == "Conflict" and conflict["code"] == 409
        assert conflict["message"] == (
            'Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas'
        )
        assert conflict["details"]["causes"] == [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "kubectl" using apps/v1',
                "field": ".spec.replicas",
            }
        ]

        # the value the other manager set: shared ownership, no conflict
        obj["spec"]["replicas"] = 3
        status, shared = await apply(api, obj)
        assert status == 200, shared
        assert "f:replicas" in entry(shared, "doinfer", "Apply")["fieldsV1"]["f:spec"]
        assert "f:replicas" in entry(shared, "kubectl", "Update")["fieldsV1"]["f:spec"]

        # force takes the field
        obj["spec"]["replicas"] = 5
        status, forced = await apply(api, obj, force=True)
        assert status == 200 and forced["spec"]["replicas"] == 5
        assert "f:replicas" in entry(forced, "doinfer", "Apply")["fieldsV1"]["f:spec"]
        assert entry(forced, "kubectl", "Update") is None  # it owned nothing else

    run(body())


def test_kubernetes_apply_keeps_other_managers_fields_and_drops_its_own(
    kube_api: KubeApi,
) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "owners")
        obj = deployment(
            "web", ns, replicas=None, env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
        )
        obj["metadata"]["annotations"] = {"doinfer.dev/fingerprint": "f1"}
        assert (await apply(api, obj))[0] == 201
        # hand edits: an annotation, and replicas by an autoscaler through the scale subresource
        await call(
            api,
            "PATCH",
            "apps/v1",
            "deployments/web",
            namespace=ns,
            headers=MERGE,
            body={"metadata": {"annotations": {"owner": "alice"}}},
            params={"fieldManager": "kubectl-annotate"},
        )
        status, _ = await call(
            api,
            "PATCH",
            "apps/v1",
            "deployments/web/scale",
            namespace=ns,
            headers=MERGE,
            body={"spec": {"replicas": 4}},
            params={"fieldManager": "hpa"},
        )
        assert status == 200
        # the next apply no longer names env B and changes the fingerprint
        obj["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
        obj["metadata"]["annotations"] = {"doinfer.dev/fingerprint": "f2"}
        status, after = await apply(api, obj)
        assert status == 200, after
        annotations = after["metadata"]["annotations"]
        assert annotations["doinfer.dev/fingerprint"] == "f2" and annotations["owner"] == "alice"
        assert after["spec"]["replicas"] == 4
        env = after["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env == [{"name": "A", "value": "1"}]
        hpa = entry(after, "hpa", "Update")
        assert hpa is not None and hpa.get("subresource") == "scale"

    run(body())


def test_kubernetes_merge_and_json_patches_are_hand_edits(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "patches")
        assert (await apply(api, deployment("web", ns)))[0] == 201
        d = await Deployment.get("web", namespace=ns, api=api)
        await d.annotate({"note": "by hand"})  # kr8s: merge patch, manager from User-Agent
        await d.refresh()
        assert d.metadata["annotations"]["note"] == "by hand"
        assert entry(d.raw, "kr8s", "Update") is not None
        status, patched = await call(
            api,
            "PATCH",
            "apps/v1",
            "deployments/web",
            namespace=ns,
            headers={"Content-Type": "application/json-patch+json"},
            body=[{"op": "replace", "path": "/spec/replicas", "value": 1}],
        )
        assert status == 200 and patched["spec"]["replicas"] == 1
        status, refused = await call(
            api,
            "PATCH",
            "apps/v1",
            "deployments/web",
            namespace=ns,
            headers=MERGE,
            body={},
            params={"force": "true"},
        )
        assert status == 422 and "may not be specified for non-apply patch" in refused["message"]

    run(body())


# ---- workloads


def test_kubernetes_deployment_rolls_out_and_reports_status(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "rollout")
        assert (await apply(api, deployment("web", ns, replicas=2)))[0] == 201
        d = await Deployment.get("web", namespace=ns, api=api)

        async def done() -> bool:
            await d.refresh()
            s = d.raw.get("status", {})
            return (
                s.get("observedGeneration", 0) >= d.metadata["generation"]
                and s.get("updatedReplicas") == 2
                and s.get("availableReplicas") == 2
                and s.get("replicas") == 2
            )

        await eventually(done, kube_api, "the rollout")
        conditions = {c["type"]: c for c in d.raw["status"]["conditions"]}
        assert conditions["Available"]["status"] == "True"
        assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
        pods = await pods_of(api, ns, "app.kubernetes.io/instance=web")
        assert len(pods) == 2
        for pod in pods:
            assert pod.name.startswith("web-")
            assert pod.labels["pod-template-hash"] in pod.name
            assert pod.raw["status"]["phase"] == "Running"
        # kr8s waits with a watch
        await d.wait("condition=Available", timeout=30)

    run(body())


def test_kubernetes_delete_takes_dependents(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "delete")
        assert (await apply(api, deployment("web", ns, replicas=1)))[0] == 201

        async def pods() -> list[Pod]:
            return await pods_of(api, ns, "app.kubernetes.io/instance=web")

        await eventually(pods, kube_api, "the deployment's pod")
        d = await Deployment.get("web", namespace=ns, api=api)
        await d.delete()
        assert not await d.exists()
        await eventually(lambda: _none(pods), kube_api, "the pods to go with the deployment")
        status, _ = await call(api, "GET", "apps/v1", "deployments/web", namespace=ns)
        assert status == 404

        namespace = await Namespace.get(ns, api=api)
        await namespace.delete()

        async def gone() -> bool:
            return not await namespace.exists()

        await eventually(gone, kube_api, "the namespace to be deleted")

    run(body())


async def _none(fetch: Callable[[], Awaitable[list[Any]]]) -> bool:
    return not await fetch()


def _job(name: str, namespace: str, completions: int) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "completions": completions,
            "parallelism": completions,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "client",
                            "image": "busybox:1.36",
                            "command": ["sh", "-c", "echo index $JOB_COMPLETION_INDEX"],
                        }
                    ],
                }
            },
        },
    }


def test_kubernetes_indexed_job_runs_every_index_and_keeps_logs(kube_api: KubeApi) -> None:
    if kube_api.simulated_cluster:  # what busybox's `echo` prints on a real cluster
        kube_api.set_job_runner(
            lambda job, index, env: (0, f"index {env['JOB_COMPLETION_INDEX']}\n")
        )

    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "job")
        assert (await apply(api, _job("bench", ns, 3)))[0] == 201
        job = await Job.get("bench", namespace=ns, api=api)
        await job.wait(["condition=Complete", "condition=Failed"], timeout=300)
        assert job.raw["status"]["succeeded"] == 3
        assert job.raw["status"]["completedIndexes"] == "0-2"
        pods = await pods_of(api, ns, "batch.kubernetes.io/job-name=bench")
        logs: list[str] = []
        for pod in pods:
            logs += [line async for line in pod.logs()]
        assert sorted(logs) == ["index 0", "index 1", "index 2"]
        # a Job deleted without a propagation policy leaves its pods, and the server says so
        async with api.call_api("DELETE", version="batch/v1", namespace=ns, url="jobs/bench") as r:
            assert "child pods are preserved" in r.headers.get("Warning", "")
        left = await pods_of(api, ns, "batch.kubernetes.io/job-name=bench")
        assert len(left) == 3 and all(not p.metadata.get("ownerReferences") for p in left)

    run(body())


def test_kubernetes_failed_job_reports_backoff_limit(kube_api: KubeApi) -> None:
    kube_api.set_job_runner(lambda job, index, env: (3, "boom\n"))

    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "jobfail")
        assert (await apply(api, _job("bench", ns, 2)))[0] == 201
        job = await Job.get("bench", namespace=ns, api=api)
        await job.wait(["condition=Complete", "condition=Failed"], timeout=30)
        failed = next(c for c in job.raw["status"]["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "BackoffLimitExceeded"
        pods = await pods_of(api, ns, "job-name=bench")
        assert any(p.raw["status"]["phase"] == "Failed" for p in pods)

    run(body())


def test_kubernetes_job_pod_log_grows_while_it_runs(kube_api: KubeApi) -> None:
    release = threading.Event()

    def runner(job: dict, index: int, env: dict[str, str]) -> tuple[int, str]:
        kube_api.append_log(job["metadata"]["namespace"], env["HOSTNAME"], "client", "50%\n")
        release.wait(10)
        return 0, '{"done": true}\n'

    kube_api.set_job_runner(runner)

    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "progress")
        assert (await apply(api, _job("bench", ns, 1)))[0] == 201

        async def progress() -> list[str]:
            pods = await pods_of(api, ns, "job-name=bench")
            return [line for p in pods async for line in p.logs()] if pods else []

        assert await eventually(progress, kube_api, "the pod's progress") == ["50%"]
        release.set()
        job = await Job.get("bench", namespace=ns, api=api)
        await job.wait("condition=Complete", timeout=30)
        assert await progress() == ["50%", '{"done": true}']

    run(body())


@pytest.mark.parametrize(
    ("reason", "event_reason", "text"),
    [
        ("ImagePullBackOff", "Failed", "Failed to pull image"),
        (
            "Unschedulable",
            "FailedScheduling",
            "0/3 nodes are available: 3 Insufficient aws.amazon.com/neuron.",
        ),
        ("CrashLoopBackOff", "BackOff", "Back-off restarting failed container server"),
    ],
)
def test_kubernetes_failed_rollout_says_why(
    kube_api: KubeApi, reason: str, event_reason: str, text: str
) -> None:
    kube_api.fail_rollout("web", reason, log="loading model\nKeyError: 'weights'\n")
    kube_api.controller.progress_deadline = 0.3

    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "failing")
        obj = deployment("web", ns, replicas=1, resources={"limits": {"aws.amazon.com/neuron": 1}})
        assert (await apply(api, obj))[0] == 201
        d = await Deployment.get("web", namespace=ns, api=api)

        async def exceeded() -> bool:
            await d.refresh()
            return any(
                c["reason"] == "ProgressDeadlineExceeded"
                for c in d.raw.get("status", {}).get("conditions", [])
            )

        await eventually(exceeded, kube_api, "ProgressDeadlineExceeded")
        assert d.raw["status"].get("availableReplicas", 0) == 0
        [pod] = await pods_of(api, ns, "app.kubernetes.io/instance=web")
        events = [
            e
            async for e in api.get(
                "events",
                namespace=ns,
                field_selector=f"involvedObject.name={pod.name},involvedObject.kind=Pod",
            )
        ]
        assert any(e.raw["reason"] == event_reason and text in e.raw["message"] for e in events)
        status = pod.raw["status"]
        if reason == "Unschedulable":
            assert status["phase"] == "Pending"
            scheduled = next(c for c in status["conditions"] if c["type"] == "PodScheduled")
            assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
        else:
            waiting = status["containerStatuses"][0]["state"]["waiting"]
            assert waiting["reason"] == reason
        if reason == "CrashLoopBackOff":
            assert status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
            last = [line async for line in pod.logs(tail_lines=1)]
            assert last == ["KeyError: 'weights'"]
            previous = [line async for line in pod.logs(previous=True)]
            assert previous == ["loading model", "KeyError: 'weights'"]

    run(body())


def test_kubernetes_failed_new_version_keeps_the_old_pods(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "keep")
        obj = deployment("web", ns, replicas=1)
        assert (await apply(api, obj))[0] == 201
        d = await Deployment.get("web", namespace=ns, api=api)
        await d.wait("condition=Available", timeout=30)
        old = {p.name for p in await pods_of(api, ns)}
        kube_api.fail_rollout("web", "ImagePullBackOff")
        obj["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.invalid/x:2"
        await apply(api, obj)

        async def both() -> bool:
            await d.refresh()
            s = d.raw["status"]
            return s.get("observedGeneration") == 2 and s.get("updatedReplicas") == 1

        await eventually(both, kube_api, "the new ReplicaSet's pod")
        names = {p.name for p in await pods_of(api, ns)}
        assert old < names  # the old pod still serves
        assert d.raw["status"]["availableReplicas"] == 1

    run(body())


# ---- access


def test_kubernetes_rbac_refusal_names_verb_resource_and_user(kube_api: KubeApi) -> None:
    kube_api.forbid("patch", "deployments", kube_api.namespace("rbac"))
    kube_api.forbid("create", "namespaces")

    async def body() -> None:
        api = await connect(kube_api)
        ns = kube_api.namespace("rbac")
        status, refused = await call(
            api,
            "POST",
            "v1",
            "namespaces",
            body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "another"}},
        )
        assert (status, refused["reason"]) == (403, "Forbidden")
        assert refused["message"] == (
            'namespaces is forbidden: User "system:serviceaccount:doinfer-test:deployer" cannot'
            ' create resource "namespaces" in API group "" at the cluster scope'
        )
        kube_api.server.cluster.forbidden.discard(("create", "namespaces", None))
        await make_namespace(api, kube_api, "rbac")
        status, refused = await apply(api, deployment("web", ns))
        assert status == 403
        assert refused["message"] == (
            f'deployments.apps "web" is forbidden: User'
            f' "system:serviceaccount:doinfer-test:deployer" cannot patch resource'
            f' "deployments" in API group "apps" in the namespace "{ns}"'
        )
        assert refused["details"] == {"name": "web", "group": "apps", "kind": "deployments"}

    run(body())


def test_kubernetes_quota_and_bad_token(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "quota")
        kube_api.exceed_quota("services", ns)
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"ports": [{"port": 80}]},
        }
        status, refused = await apply(api, svc)
        assert (status, refused["reason"]) == (403, "Forbidden")
        assert refused["message"].startswith(
            'services "web" is forbidden: exceeded quota: compute-resources, requested:'
        )
        kube_api.set_unauthorized()
        with pytest.raises(kr8s.ServerError) as info:
            await Deployment.get("web", namespace=ns, api=api)
        assert info.value.response.status_code == 401
        assert info.value.status["reason"] == "Unauthorized"

    run(body())


def test_kubernetes_unreachable_context_fails_to_connect(kube_api: KubeApi) -> None:
    if not kube_api.simulated_cluster:
        pytest.skip("the unreachable context exists only in the test server's kubeconfig")

    async def body() -> None:
        with pytest.raises(Exception) as info:  # kr8s lets httpx's ConnectError through
            await kr8s.asyncio.api(
                kubeconfig=str(kube_api.kubeconfig), context=kube_api.unreachable_context
            )
        assert "connect" in type(info.value).__name__.lower() + str(info.value).lower()

    run(body())


def test_kubernetes_exec_in_a_pod(kube_api: KubeApi) -> None:
    kube_api.set_exec_runner(
        lambda pod, container, command: (
            (0, f"{pod['metadata']['name']}/{container}: {' '.join(command)}\n", "")
            if command[0] == "echo"
            else (3, "", "no such command\n")
        )
    )

    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "exec")
        assert (await apply(api, deployment("web", ns, replicas=1)))[0] == 201
        d = await Deployment.get("web", namespace=ns, api=api)
        await d.wait("condition=Available", timeout=30)
        [pod] = await pods_of(api, ns)
        done = await pod.exec(["echo", "hello"])
        assert done.returncode == 0
        assert done.stdout.decode() == f"{pod.name}/server: echo hello\n"
        failed = await pod.exec(["false"], check=False)
        assert failed.returncode == 3 and failed.stderr == b"no such command\n"

    run(body())


def test_kubernetes_status_subresource_changes_only_status(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "status")
        kube_api.controller.paused = True  # nobody else writes the status meanwhile
        assert (await apply(api, deployment("web", ns, replicas=1)))[0] == 201
        status, written = await call(
            api,
            "PATCH",
            "apps/v1",
            "deployments/web/status",
            namespace=ns,
            headers=MERGE,
            body={"status": {"observedGeneration": 1, "replicas": 7}, "spec": {"replicas": 9}},
            params={"fieldManager": "someone"},
        )
        assert status == 200, written
        assert written["status"]["replicas"] == 7 and written["spec"]["replicas"] == 1
        someone = entry(written, "someone", "Update")
        assert someone is not None and someone["subresource"] == "status"
        # and an apply to the main resource never touches the status
        _, applied = await apply(api, deployment("web", ns, replicas=1))
        assert applied["status"]["replicas"] == 7

    run(body())


def test_kubernetes_pod_quota_stops_the_replicaset(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "podquota")
        kube_api.exceed_quota("pods", ns, quota="compute-resources")
        kube_api.controller.progress_deadline = 0.3
        assert (await apply(api, deployment("web", ns, replicas=1)))[0] == 201
        d = await Deployment.get("web", namespace=ns, api=api)

        async def refused() -> dict | None:
            await d.refresh()
            conditions = d.raw.get("status", {}).get("conditions", [])
            return next((c for c in conditions if c["type"] == "ReplicaFailure"), None)

        failure = await eventually(refused, kube_api, "the ReplicaFailure condition")
        assert failure["reason"] == "FailedCreate"
        assert "exceeded quota: compute-resources" in failure["message"]
        assert await pods_of(api, ns) == []
        assert d.annotations["deployment.kubernetes.io/revision"] == "1"

    run(body())


def test_kubernetes_follow_streams_what_the_container_prints(kube_api: KubeApi) -> None:
    if not kube_api.simulated_cluster:
        pytest.skip("what a real container prints is not the test's to write")

    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "follow")
        assert (await apply(api, deployment("web", ns, replicas=1)))[0] == 201
        d = await Deployment.get("web", namespace=ns, api=api)
        await d.wait("condition=Available", timeout=30)
        [pod] = await pods_of(api, ns)
        lines: list[str] = []
        async for line in pod.logs(follow=True, timeout=10):
            lines.append(line)
            if len(lines) == 1:
                kube_api.append_log(ns, pod.name, "server", "ready\n")
            if line == "ready":
                break
        assert lines == [f"pod {pod.name} started", "ready"]

    run(body())


def test_kubernetes_dry_run_and_delete_collection(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "dryrun")
        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": ns, "labels": {"set": "a"}},
        }
        status, answer = await call(
            api,
            "PATCH",
            "v1",
            "configmaps/c",
            namespace=ns,
            body=config,
            headers=APPLY,
            params={"fieldManager": "doinfer", "dryRun": "All"},
        )
        assert status == 201 and answer["metadata"]["name"] == "c"
        assert (await call(api, "GET", "v1", "configmaps/c", namespace=ns))[0] == 404
        for name in ("a1", "a2", "b1"):
            labels = {"set": name[0]}
            body_ = {**config, "metadata": {**config["metadata"], "name": name, "labels": labels}}
            assert (await apply(api, body_))[0] == 201
        status, deleted = await call(
            api, "DELETE", "v1", "configmaps", namespace=ns, params={"labelSelector": "set=a"}
        )
        assert status == 200 and deleted["kind"] == "ConfigMapList"
        _, left = await call(
            api, "GET", "v1", "configmaps", namespace=ns, params={"labelSelector": "set"}
        )
        assert [i["metadata"]["name"] for i in left["items"]] == ["b1"]

    run(body())


def test_kubernetes_watch_streams_added_modified_deleted(kube_api: KubeApi) -> None:
    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "watch")
        seen: list[tuple[str, str]] = []

        async def watch() -> None:
            events = api.watch("configmaps", namespace=ns, label_selector="watched=yes")
            async with contextlib.aclosing(events):  # close the stream when done
                async for kind, obj in events:
                    seen.append((kind, obj.name))
                    if kind == "DELETED":
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.3 if kube_api.simulated_cluster else 2)
        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "w", "namespace": ns, "labels": {"watched": "yes"}},
            "data": {"a": "1"},
        }
        other = {**config, "metadata": {"name": "unwatched", "namespace": ns}}
        assert (await apply(api, other))[0] == 201
        assert (await apply(api, config))[0] == 201
        config["data"]["a"] = "2"
        assert (await apply(api, config))[0] == 200
        assert (await call(api, "DELETE", "v1", "configmaps/w", namespace=ns))[0] == 200
        await asyncio.wait_for(watcher, 30)
        assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]

    run(body())


def test_kubernetes_terminating_namespace_refuses_new_objects(kube_api: KubeApi) -> None:
    kube_api.controller.paused = True  # hold the namespace in Terminating

    async def body() -> None:
        api = await connect(kube_api)
        ns = await make_namespace(api, kube_api, "terminating")
        status, deleted = await call(api, "DELETE", "v1", f"namespaces/{ns}")
        assert status == 200 and deleted["status"]["phase"] == "Terminating"
        status, refused = await apply(api, deployment("web", ns))
        assert (status, refused["reason"]) == (403, "Forbidden")
        assert refused["message"].endswith(
            f"unable to create new content in namespace {ns} because it is being terminated"
        )
        status, missing = await apply(api, deployment("web", kube_api.namespace("absent")))
        assert (status, missing["reason"]) == (404, "NotFound")
        assert missing["message"] == f'namespaces "{kube_api.prefix}absent" not found'

    run(body())
