"""The resource types the test server serves, and its discovery documents.

Only what doinfer uses: namespaces, pods (+log), services, events, configmaps (v1);
deployments and replicasets (apps/v1); jobs (batch/v1). Discovery answers in the shapes of
`GET /api`, `/api/v1`, `/apis` and `/apis/GROUP/VERSION` (APIVersions, APIResourceList,
APIGroupList), which is what kr8s reads to map a kind to its URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VERSION_INFO = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0",
    "gitCommit": "doinfer-test-api-server",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = tuple(_ALL_VERBS)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


RESOURCES = (
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",)),
    Resource("", "v1", "pods", "Pod", short_names=("po",)),
    Resource("", "v1", "services", "Service", short_names=("svc",)),
    Resource("", "v1", "events", "Event", short_names=("ev",)),
    Resource("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    Resource("apps", "v1", "deployments", "Deployment", short_names=("deploy",)),
    Resource("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",)),
    Resource("batch", "v1", "jobs", "Job"),
)

# subresources listed in discovery as "plural/sub" (kr8s skips names with a slash)
_SUBRESOURCES = {
    "pods": (("log", "Pod", ("get",)), ("status", "Pod", ("get", "patch", "update"))),
    "deployments": (
        ("status", "Deployment", ("get", "patch", "update")),
        ("scale", "Scale", ("get", "patch", "update")),
    ),
    "replicasets": (("status", "ReplicaSet", ("get", "patch", "update")),),
    "jobs": (("status", "Job", ("get", "patch", "update")),),
    "namespaces": (("status", "Namespace", ("get", "patch", "update")),),
}


def find(group: str, version: str, plural: str) -> Resource | None:
    for resource in RESOURCES:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def by_kind(api_version: str, kind: str) -> Resource | None:
    for resource in RESOURCES:
        if (resource.api_version, resource.kind) == (api_version, kind):
            return resource
    return None


def groups() -> list[tuple[str, str]]:
    """The (group, version) pairs outside the core group, in a stable order."""
    seen: list[tuple[str, str]] = []
    for resource in RESOURCES:
        pair = (resource.group, resource.version)
        if resource.group and pair not in seen:
            seen.append(pair)
    return seen


def api_versions(server_address: str) -> dict[str, Any]:
    """GET /api"""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list() -> dict[str, Any]:
    """GET /apis"""
    entries = []
    for group, version in groups():
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        entries.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": entries}


def api_group(group: str) -> dict[str, Any] | None:
    """GET /apis/GROUP"""
    for entry in api_group_list()["groups"]:
        if entry["name"] == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **entry}
    return None


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """GET /api/v1 or /apis/GROUP/VERSION: an APIResourceList."""
    entries: list[dict[str, Any]] = []
    for r in RESOURCES:
        if (r.group, r.version) != (group, version):
            continue
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.kind.lower(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        entries.append(entry)
        for sub, kind, verbs in _SUBRESOURCES.get(r.plural, ()):
            entries.append(
                {
                    "name": f"{r.plural}/{sub}",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": kind,
                    "verbs": list(verbs),
                }
            )
    if not entries:
        return None
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }
