"""The stored state of the test API server and the REST semantics of its writes.

What a real API server does on each write, in the order it does it: authorization (RBAC, the
`forbidden` knob), admission (namespace exists and is not terminating, resource quota knob),
defaulting, validation (422), then storage with a new `metadata.resourceVersion`, a new
`metadata.generation` when the spec changed, and field ownership in `metadata.managedFields`
(see ssa.py). Deletes follow ownerReferences (Background and Foreground delete dependents,
Orphan leaves them; batch/v1 Jobs default to Orphan, everything else to Background), a
Namespace goes `Terminating` and the controller empties and removes it.

All methods take `lock`: the HTTP handlers, the simulated controller, the Job runner threads
and the test itself share one Cluster.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.kube import errors, ssa
from tests.kube.errors import ApiError
from tests.kube.resources import Resource, by_kind
from tests.kube.selectors import SelectorError, field_matcher, label_matcher

Key = tuple[str, str, str, str]  # group, plural, namespace ("" if cluster-scoped), name

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_WITH_GENERATION = ("deployments", "replicasets", "jobs")
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # of generated name suffixes (pods too)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: Key
    object: dict[str, Any]


class Cluster:
    """Objects, logs, watch history and the access knobs."""

    def __init__(self, user: str, token: str) -> None:
        self.lock = threading.RLock()
        self.user = user
        self.token = token
        self.objects: dict[Key, dict[str, Any]] = {}
        self.history: list[WatchEvent] = []
        self.logs: dict[tuple[str, str, str], str] = {}  # (namespace, pod, container) -> text
        self.previous_logs: dict[tuple[str, str, str], str] = {}
        self._rv = 1000
        # knobs
        self.unauthorized = False
        self.forbidden: set[tuple[str, str, str | None]] = set()
        self.quotas: dict[tuple[str, str | None], str] = {}
        self.on_write: list[Callable[[], None]] = []

    # ---- bookkeeping

    def next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(self, kind: str, key: Key, obj: dict[str, Any]) -> None:
        self.history.append(WatchEvent(int(obj["metadata"]["resourceVersion"]), kind, key, obj))

    # ---- access knobs

    def authenticate(self, header: str | None) -> None:
        if self.unauthorized or header != f"Bearer {self.token}":
            raise errors.unauthorized()

    def authorize(
        self,
        verb: str,
        resource: Resource,
        namespace: str | None,
        name: str | None,
        subresource: str = "",
    ) -> None:
        """The `forbidden` knob: (verb, resource, namespace) triples RBAC refuses; "*" and a
        None namespace match any."""
        plural = f"{resource.plural}/{subresource}" if subresource else resource.plural
        for f_verb, f_resource, f_namespace in self.forbidden:
            if (
                f_verb in ("*", verb)
                and f_resource in ("*", plural)
                and (f_namespace is None or f_namespace == namespace)
            ):
                raise errors.forbidden(self.user, verb, plural, resource.group, namespace, name)

    def _admit(self, resource: Resource, namespace: str, name: str) -> None:
        if resource.namespaced:
            ns = self.objects.get(("", "namespaces", "", namespace))
            if ns is None:
                raise errors.not_found("namespaces", "", namespace)
            if ns["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{errors.qualified(resource.plural, resource.group)} "{name}" is'
                    f" forbidden: unable to create new content in namespace {namespace}"
                    " because it is being terminated",
                    {
                        "name": name,
                        **({"group": resource.group} if resource.group else {}),
                        "kind": resource.plural,
                        "causes": [
                            {
                                "reason": "NamespaceTerminating",
                                "message": f"namespace {namespace} is being terminated",
                                "field": "metadata.namespace",
                            }
                        ],
                    },
                )
        for (q_plural, q_namespace), quota in self.quotas.items():
            if q_plural == resource.plural and q_namespace in (None, namespace):
                counted = f"count/{errors.qualified(resource.plural, resource.group)}"
                used = sum(
                    1 for k in self.objects if k[:3] == (resource.group, resource.plural, namespace)
                )
                raise errors.quota_exceeded(
                    resource.plural,
                    resource.group,
                    name,
                    quota,
                    f"{counted}=1",
                    f"{counted}={used}",
                    f"{counted}={used}",
                )

    # ---- reads

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.objects.get(self._key(resource, namespace, name))
            if obj is None:
                raise errors.not_found(resource.plural, resource.group, name)
            return copy.deepcopy(obj)

    def find(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get(self._key(resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def select(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Matching objects, ordered by namespace and name like etcd keys."""
        try:
            labels = label_matcher(label_selector)
            fields = field_matcher(field_selector, resource.plural)
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc
        with self.lock:
            found = [
                copy.deepcopy(obj)
                for key, obj in sorted(self.objects.items())
                if key[:2] == (resource.group, resource.plural)
                and (not namespace or key[2] == namespace)
                and labels(obj["metadata"].get("labels", {}))
                and fields(obj)
            ]
        return found

    def list(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> dict[str, Any]:
        """A `<Kind>List`; with `limit`, a page and `metadata.continue` for the rest."""
        with self.lock:
            items = self.select(resource, namespace, label_selector, field_selector)
            list_rv = str(self._rv)
        if continue_token:
            try:
                state = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                after, list_rv = state["start"], state["rv"]
            except (ValueError, KeyError) as exc:
                raise errors.bad_request("continue key is not valid: " + str(exc)) from exc
            items = [
                i
                for i in items
                if (i["metadata"].get("namespace", ""), i["metadata"]["name"]) > tuple(after)
            ]
        metadata: dict[str, Any] = {"resourceVersion": list_rv}
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            token = {"rv": list_rv, "start": [last.get("namespace", ""), last["name"]]}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": items,
        }

    # ---- writes

    def _key(self, resource: Resource, namespace: str | None, name: str) -> Key:
        return (
            resource.group,
            resource.plural,
            namespace or "" if resource.namespaced else "",
            name,
        )

    def _existing(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        old = self.objects.get(self._key(resource, namespace, name))
        if old is None:
            raise errors.not_found(resource.plural, resource.group, name)
        return old

    def _check_identity(
        self,
        resource: Resource,
        body: dict[str, Any],
        namespace: str | None,
        name: str | None,
    ) -> str:
        if not isinstance(body, dict):
            raise errors.bad_request("the object provided is unrecognized (must be an object)")
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if (kind and kind != resource.kind) or (
            api_version and api_version != resource.api_version
        ):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API"
                f" version ({resource.api_version})"
                if kind == resource.kind
                else f"the kind in the data ({kind}) does not match the expected kind"
                f" ({resource.kind})"
            )
        metadata = body.setdefault("metadata", {})
        body_name = metadata.get("name")
        if name is not None and body_name and body_name != name:
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        body_ns = metadata.get("namespace")
        if resource.namespaced and body_ns and namespace and body_ns != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the"
                " request"
            )
        final = name or body_name
        if not final and metadata.get("generateName"):
            final = metadata["generateName"] + "".join(
                secrets.choice(NAME_ALPHABET) for _ in range(5)
            )
            metadata["name"] = final
        if not final:
            raise errors.invalid(
                resource.kind,
                resource.group,
                "",
                [
                    (
                        "FieldValueRequired",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    )
                ],
            )
        return final

    def create(
        self,
        resource: Resource,
        namespace: str | None,
        body: dict[str, Any],
        manager: str,
    ) -> dict[str, Any]:
        with self.lock:
            name = self._check_identity(resource, body, namespace, None)
            if self._key(resource, namespace, name) in self.objects:
                raise errors.already_exists(resource.plural, resource.group, name)
            self._admit(resource, namespace or "", name)
            obj = ssa.strip(body)
            return self._store(
                resource, namespace, name, None, obj, manager, status=body.get("status")
            )

    def replace(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        manager: str,
    ) -> dict[str, Any]:
        with self.lock:
            self._check_identity(resource, body, namespace, name)
            old = self._existing(resource, namespace, name)
            rv = body["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise errors.stale(resource.plural, resource.group, name)
            return self._store(resource, namespace, name, old, ssa.strip(body), manager)

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        manager: str,
    ) -> dict[str, Any]:
        """merge-patch+json, strategic-merge-patch+json or json-patch+json (not apply)."""
        with self.lock:
            old = self._existing(resource, namespace, name)
            current = ssa.strip(old)
            if content_type == "application/json-patch+json":
                new = _json_patch(current, patch)
            elif content_type == "application/strategic-merge-patch+json":
                new = merge_patch(current, _no_identity(patch), resource.kind, keyed=True)
            else:
                new = merge_patch(current, _no_identity(patch), resource.kind, keyed=False)
            return self._store(resource, namespace, name, old, new, manager)

    def apply(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        manager: str,
        force: bool,
    ) -> dict[str, Any]:
        """Server-side apply: creates when missing; 409 on a conflict unless force."""
        with self.lock:
            self._check_identity(resource, body, namespace, name)
            if not body.get("kind") or not body.get("apiVersion"):
                raise errors.bad_request(
                    "invalid object type: /, Kind="
                    if not body.get("kind")
                    else "apiVersion is required"
                )
            old = self.objects.get(self._key(resource, namespace, name))
            if old is None:
                self._admit(resource, namespace or "", name)
            entries = [
                ssa.Entry.from_json(e)
                for e in (old or {}).get("metadata", {}).get("managedFields", [])
            ]
            live = ssa.strip(old) if old else {}
            try:
                merged, new_entries = ssa.apply(
                    live,
                    body,
                    entries,
                    manager,
                    force,
                    resource.kind,
                    resource.api_version,
                    now(),
                )
            except ssa.ConflictError as exc:
                raise ApiError(409, "Conflict", exc.message(), {"causes": exc.causes()}) from exc
            return self._store(resource, namespace, name, old, merged, manager, entries=new_entries)

    def scale(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        replicas: int,
        manager: str,
    ) -> dict[str, Any]:
        """A write of the scale subresource (kubectl scale, an autoscaler)."""
        with self.lock:
            old = self._existing(resource, namespace, name)
            new = ssa.strip(old)
            new.setdefault("spec", {})["replicas"] = replicas
            return self._store(resource, namespace, name, old, new, manager, subresource="scale")

    def write_status(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        status: dict[str, Any],
        manager: str = "kube-controller-manager",
    ) -> dict[str, Any] | None:
        """What a controller's PUT of the status subresource does (no spec change)."""
        with self.lock:
            key = self._key(resource, namespace, name)
            old = self.objects.get(key)
            if old is None or old.get("status") == status:
                return None
            new = copy.deepcopy(old)
            new["status"] = copy.deepcopy(status)
            entries = [ssa.Entry.from_json(e) for e in old["metadata"].get("managedFields", [])]
            entries = ssa.update(
                {"status": old.get("status", {})},
                {"status": status},
                entries,
                manager,
                resource.kind,
                resource.api_version,
                now(),
                "status",
            )
            new["metadata"]["managedFields"] = [e.to_json() for e in entries]
            new["metadata"]["resourceVersion"] = str(self.next_rv())
            self.objects[key] = new
            self._record("MODIFIED", key, copy.deepcopy(new))
            return copy.deepcopy(new)

    def _store(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        old: dict[str, Any] | None,
        content: dict[str, Any],
        manager: str,
        entries: list[ssa.Entry] | None = None,
        status: dict[str, Any] | None = None,
        subresource: str = "",
    ) -> dict[str, Any]:
        """Default, validate, version and keep `content` (a stripped object) as the new state."""
        obj: dict[str, Any] = {"apiVersion": resource.api_version, "kind": resource.kind}
        obj.update(copy.deepcopy(content))
        metadata = obj.setdefault("metadata", {})
        metadata["name"] = name
        if resource.namespaced:
            metadata["namespace"] = namespace
        _default(resource, obj)
        _validate(resource, obj)
        if entries is None:
            old_entries = [
                ssa.Entry.from_json(e)
                for e in (old or {}).get("metadata", {}).get("managedFields", [])
            ]
            entries = ssa.update(
                ssa.strip(old) if old else None,
                ssa.strip(obj),
                old_entries,
                manager,
                resource.kind,
                resource.api_version,
                now(),
                subresource,
            )
        if old is not None:
            for field in (
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "ownerReferences",
            ):
                if field in old["metadata"] and field not in metadata:
                    metadata[field] = old["metadata"][field]
            if "status" in old:
                obj["status"] = old["status"]
            if old.get("spec") != obj.get("spec") and resource.plural in _WITH_GENERATION:
                metadata["generation"] = old["metadata"].get("generation", 1) + 1
            if ssa.strip(old) == ssa.strip(obj) and _ownership(
                [e.to_json() for e in entries]
            ) == _ownership(old["metadata"].get("managedFields", [])):
                return copy.deepcopy(old)  # a no-op write keeps the resourceVersion
        else:
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = now()
            if resource.plural in _WITH_GENERATION:
                metadata["generation"] = 1
            if status is not None:
                obj["status"] = status
            elif resource.plural == "namespaces":
                obj["status"] = {"phase": "Active"}
        metadata["managedFields"] = [e.to_json() for e in entries]
        metadata["resourceVersion"] = str(self.next_rv())
        key = self._key(resource, namespace, name)
        self.objects[key] = obj
        self._record("MODIFIED" if old else "ADDED", key, copy.deepcopy(obj))
        for hook in self.on_write:
            hook()
        return copy.deepcopy(obj)

    # ---- deletes

    def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        propagation: str | None,
    ) -> dict[str, Any]:
        with self.lock:
            key = self._key(resource, namespace, name)
            obj = self.objects.get(key)
            if obj is None:
                raise errors.not_found(resource.plural, resource.group, name)
            if resource.plural == "namespaces":
                if not obj["metadata"].get("deletionTimestamp"):
                    obj = copy.deepcopy(obj)
                    obj["metadata"]["deletionTimestamp"] = now()
                    obj["status"] = {"phase": "Terminating"}
                    obj["metadata"]["resourceVersion"] = str(self.next_rv())
                    self.objects[key] = obj
                    self._record("MODIFIED", key, copy.deepcopy(obj))
                return copy.deepcopy(obj)
            policy = propagation or ("Orphan" if resource.plural == "jobs" else "Background")
            self.remove(key, orphan=policy == "Orphan")
            return copy.deepcopy(obj)

    def remove(self, key: Key, orphan: bool = False) -> None:
        """Delete one stored object; its dependents go too, or lose the ownerReference."""
        obj = self.objects.pop(key, None)
        if obj is None:
            return
        deleted = copy.deepcopy(obj)
        deleted["metadata"]["resourceVersion"] = str(self.next_rv())
        self._record("DELETED", key, deleted)
        uid = obj["metadata"].get("uid")
        for child_key, child in list(self.objects.items()):
            refs = child["metadata"].get("ownerReferences", [])
            if not any(ref.get("uid") == uid for ref in refs):
                continue
            if orphan:
                child["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                child["metadata"]["resourceVersion"] = str(self.next_rv())
                self._record("MODIFIED", child_key, copy.deepcopy(child))
            else:
                self.remove(child_key)
        if key[1] == "pods":
            for log_key in [k for k in self.logs if k[:2] == (key[2], key[3])]:
                del self.logs[log_key]

    def put_raw(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object a controller made or changed (no admission); a new one gets the
        controller's Update entry in managedFields, as a real controller's create does."""
        with self.lock:
            metadata = obj["metadata"]
            key = self._key(resource, metadata.get("namespace"), metadata["name"])
            old = self.objects.get(key)
            if old is None and "managedFields" not in metadata:
                made = ssa.update(
                    None,
                    ssa.strip(obj),
                    [],
                    "kube-controller-manager",
                    resource.kind,
                    resource.api_version,
                    now(),
                )
                metadata["managedFields"] = [e.to_json() for e in made]
            if old is not None and {
                **old,
                "metadata": {**old["metadata"], "resourceVersion": ""},
            } == {**obj, "metadata": {**metadata, "resourceVersion": ""}}:
                return copy.deepcopy(old)
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", now())
            metadata["resourceVersion"] = str(self.next_rv())
            self.objects[key] = obj
            self._record("MODIFIED" if old else "ADDED", key, copy.deepcopy(obj))
            return copy.deepcopy(obj)


def _ownership(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """managedFields without the times, to tell a no-op write."""
    return [(e["manager"], e["operation"], e.get("subresource"), e["fieldsV1"]) for e in entries]


def _no_identity(patch: Any) -> Any:
    if isinstance(patch, dict):
        patch = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "status")}
        if isinstance(patch.get("metadata"), dict):
            patch["metadata"] = {
                k: v
                for k, v in patch["metadata"].items()
                if k not in ("name", "namespace", "resourceVersion", "managedFields", "uid")
            }
    return patch


def merge_patch(
    target: Any, patch: Any, kind: str, keyed: bool, names: tuple[str, ...] = ()
) -> Any:
    """RFC 7386 JSON merge patch; `keyed` merges lists by their merge keys as a strategic
    merge patch does (without its `$patch` directives)."""
    if not isinstance(patch, dict):
        if keyed and isinstance(patch, list) and isinstance(target, list):
            keys = ssa.list_type(kind, names)
            if isinstance(keys, tuple):
                return ssa.merge(target, patch, kind, names)
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value, kind, keyed, (*names, key))
    return out


def _json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902: add, remove, replace and test."""
    doc = copy.deepcopy(target)
    if not isinstance(operations, list):
        raise errors.bad_request("json patch must be a list of operations")
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        kind = op["op"]
        if kind in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif kind == "test":
            actual = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if actual != op["value"]:
                raise ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an error"
                    f" in our request: testing value {op['path']} failed",
                )
        else:
            raise errors.bad_request(f"unsupported json patch operation {kind!r}")
    return doc


def _default(resource: Resource, obj: dict[str, Any]) -> None:
    """The defaults the API server fills in that doinfer's checks can see."""
    spec = obj.get("spec")
    if resource.plural == "deployments" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("type", "RollingUpdate")
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        _default_pod_spec(spec.get("template", {}).get("spec"))
    elif resource.plural == "jobs" and isinstance(spec, dict):
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        template = spec.setdefault("template", {})
        _default_pod_spec(template.get("spec"), restart="Never")
    elif resource.plural == "pods" and isinstance(spec, dict):
        _default_pod_spec(spec)
    elif resource.plural == "services" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports", []):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        if spec.get("clusterIP") is None:
            digest = uuid.uuid5(uuid.NAMESPACE_DNS, obj["metadata"]["name"]).int
            spec["clusterIP"] = f"10.96.{digest % 250}.{(digest >> 8) % 250 + 2}"
            spec["clusterIPs"] = [spec["clusterIP"]]
    elif resource.plural == "namespaces":
        labels = obj["metadata"].setdefault("labels", {})
        labels.setdefault("kubernetes.io/metadata.name", obj["metadata"]["name"])


def _default_pod_spec(spec: Any, restart: str = "Always") -> None:
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", restart)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault(
            "imagePullPolicy", "Always" if latest and "@" not in image else "IfNotPresent"
        )
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        for port in container.get("ports", []):
            port.setdefault("protocol", "TCP")


def _validate(resource: Resource, obj: dict[str, Any]) -> None:
    """The validation errors doinfer could cause (422 Invalid), with the real field paths."""
    name = obj["metadata"]["name"]
    causes: list[tuple[str, str, str]] = []
    pattern = _DNS_LABEL if resource.plural in ("namespaces", "services") else _DNS_SUBDOMAIN
    if not pattern.match(name) or len(name) > (63 if pattern is _DNS_LABEL else 253):
        causes.append(
            (
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of'
                " lower case alphanumeric characters or '-', and must start and end"
                " with an alphanumeric character",
            )
        )
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    if resource.plural in ("deployments", "replicasets"):
        selector = spec.get("selector")
        labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
        if not selector:
            causes.append(("FieldValueRequired", "spec.selector", "Required value"))
        elif not label_matcher(
            ",".join(f"{k}={v}" for k, v in selector.get("matchLabels", {}).items())
        )(labels):
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.template.metadata.labels",
                    f"Invalid value: {json.dumps(labels)}: `selector` does not match"
                    " template `labels`",
                )
            )
    if resource.plural in ("deployments", "replicasets", "jobs"):
        causes += _pod_causes(spec.get("template", {}).get("spec"), "spec.template.spec")
    if resource.plural == "pods":
        causes += _pod_causes(spec, "spec")
    if resource.plural == "services" and not spec.get("ports") and spec.get("clusterIP") != "None":
        causes.append(("FieldValueRequired", "spec.ports", "Required value"))
    if causes:
        raise errors.invalid(resource.kind, resource.group, name, causes)


def _pod_causes(spec: Any, where: str) -> list[tuple[str, str, str]]:
    if not isinstance(spec, dict) or not spec.get("containers"):
        return [("FieldValueRequired", f"{where}.containers", "Required value")]
    causes = []
    for i, container in enumerate(spec["containers"]):
        if not container.get("name"):
            causes.append(("FieldValueRequired", f"{where}.containers[{i}].name", "Required value"))
        if not container.get("image"):
            causes.append(
                ("FieldValueRequired", f"{where}.containers[{i}].image", "Required value")
            )
    return causes


def resource_of(obj: dict[str, Any]) -> Resource:
    resource = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
    if resource is None:
        raise KeyError(f"the test API server does not serve {obj.get('kind')}")
    return resource
