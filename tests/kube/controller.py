"""A simulated kube-controller-manager, scheduler and kubelet for the test API server.

What it does, pass by pass (`reconcile()`; the server runs a pass before each request and
every `interval` seconds unless `paused`, and a test may call `step()` itself):
- Deployment -> ReplicaSet `NAME-<pod-template-hash>` per template -> pods `RS-<5 chars>`,
  labels from the template plus `pod-template-hash`. New pods are Pending for one pass, then
  Running and Ready (or fail, below). Old ReplicaSets scale to 0 only once the new one is fully
  available (`maxUnavailable: 0` behaviour), so a failed rollout keeps the old pods serving.
  Status: observedGeneration, replicas, updatedReplicas, readyReplicas, availableReplicas,
  unavailableReplicas, conditions Available and Progressing (ReplicaSetUpdated,
  NewReplicaSetAvailable, or ProgressDeadlineExceeded once the rollout has made no progress for
  `min(spec.progressDeadlineSeconds, progress_deadline)` real seconds).
- Failures, per Deployment or Job name (`failures`): "ImagePullBackOff" (container waiting
  ImagePullBackOff, events Failed "Failed to pull image ..." and BackOff), "Unschedulable"
  (pod Pending, PodScheduled False, event FailedScheduling "0/3 nodes are available: 3
  Insufficient <resource>." naming the first extended resource the pod asks for), and
  "CrashLoopBackOff" (waiting CrashLoopBackOff, lastState terminated exit 1, restartCount, event
  BackOff, the failure's log as the container's current and previous log).
- Job -> pods (`JOB-<index>-<5 chars>` for Indexed, with the completion-index annotation, label
  and JOB_COMPLETION_INDEX env the Job controller adds). Each pod "runs" `job_runner(job,
  index, env) -> (exit_code, log)` in its own thread (pods of one Job run concurrently; env has
  HOSTNAME = the pod's name, so a runner can print progress meanwhile with
  `KubeApi.append_log`); the returned log follows what it printed. Then status active, ready,
  succeeded, failed, completedIndexes, conditions SuccessCriteriaMet+Complete or
  FailureTarget+Failed (BackoffLimitExceeded), with failed pods replaced until backoffLimit.
- A Namespace marked for deletion is emptied and removed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.kube.cluster import NAME_ALPHABET, Cluster, Key, now
from tests.kube.resources import find

DEPLOYMENTS = find("apps", "v1", "deployments")
REPLICASETS = find("apps", "v1", "replicasets")
PODS = find("", "v1", "pods")
JOBS = find("batch", "v1", "jobs")
EVENTS = find("", "v1", "events")
_EXTENDED = ("aws.amazon.com/neuron", "aws.amazon.com/neuroncore", "nvidia.com/gpu")
NODE = "ip-10-0-1-17.ec2.internal"
_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"

JobRunner = Callable[[dict[str, Any], int, dict[str, str]], tuple[int, str]]
ExecRunner = Callable[[dict[str, Any], str, list[str]], tuple[int, str, str]]


@dataclass(frozen=True)
class Failure:
    """How the pods of one Deployment or Job fail."""

    reason: str  # "ImagePullBackOff" | "Unschedulable" | "CrashLoopBackOff"
    log: str = ""  # CrashLoopBackOff: what the container printed before it exited
    message: str = ""  # overrides the scheduler's or kubelet's message


def _safe(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(NAME_ALPHABET[b % len(NAME_ALPHABET)] for b in digest[:length])


def template_hash(template: dict[str, Any]) -> str:
    return _safe(json.dumps(template, sort_keys=True), 10)


def _condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    stamp = now()
    return {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = owner["metadata"]["uid"]
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences", []))


class Controller:
    """The knobs a test turns: failures, job_runner, pod_log, paused, progress_deadline."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.failures: dict[str, Failure] = {}
        self.job_runner: JobRunner | None = None
        # pods/exec: (pod, container, command) -> (exit_code, stdout, stderr)
        self.exec_runner: ExecRunner | None = None
        self.pod_log: Callable[[dict[str, Any]], str] = lambda pod: (
            f"pod {pod['metadata']['name']} started\n"
        )
        self.paused = False
        self.interval = 0.05
        self.progress_deadline = 1.0  # real seconds standing in for progressDeadlineSeconds
        self._progress: dict[tuple[str, str], float] = {}  # (uid, rs) -> last progress time
        self._events: set[tuple[str, str]] = set()
        self._names = 0
        self._replica_failures: dict[str, str] = {}  # Deployment uid -> why pods are not made
        self._workloads: dict[tuple[str, str], str] = {}  # pod -> its Deployment's or Job's name

    # ---- knobs

    def fail_image_pull(self, name: str) -> None:
        self.failures[name] = Failure("ImagePullBackOff")

    def fail_unschedulable(self, name: str, message: str = "") -> None:
        self.failures[name] = Failure("Unschedulable", message=message)

    def fail_crash_loop(self, name: str, log: str) -> None:
        self.failures[name] = Failure("CrashLoopBackOff", log=log)

    def step(self) -> None:
        """One pass, even when paused (for tests that drive the controller themselves)."""
        with self.cluster.lock:
            self._pass()

    def reconcile(self) -> None:
        if not self.paused:
            self.step()

    # ---- the pass

    def _pass(self) -> None:
        self._namespaces()
        for pod in self._all(PODS):
            self._advance_pod(pod)
        for deployment in self._all(DEPLOYMENTS):
            self._deployment(deployment)
        for job in self._all(JOBS):
            self._job(job)

    def _all(self, resource: Any) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for k, o in sorted(self.cluster.objects.items())
            if k[:2] == (resource.group, resource.plural)
        ]

    def _namespaces(self) -> None:
        for key, ns in sorted(self.cluster.objects.items()):
            if key[1] != "namespaces" or not ns["metadata"].get("deletionTimestamp"):
                continue
            name = key[3]
            for other in [k for k in self.cluster.objects if k[2] == name]:
                self.cluster.remove(other)
            self.cluster.remove(key)

    def _put(self, resource: Any, obj: dict[str, Any]) -> None:
        self.cluster.put_raw(resource, obj)

    def _name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}-{_safe(f'{prefix}/{self._names}', 5)}"

    # ---- deployments

    def _deployment(self, deployment: dict[str, Any]) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        namespace, name = meta["namespace"], meta["name"]
        template = spec["template"]
        pth = template_hash(template)
        rs_name = f"{name}-{pth}"
        replica_sets = [
            rs
            for rs in self._all(REPLICASETS)
            if rs["metadata"]["namespace"] == namespace and _owned_by(rs, deployment)
        ]
        current = next((rs for rs in replica_sets if rs["metadata"]["name"] == rs_name), None)
        revision = 1 + max(
            (
                int(
                    rs["metadata"]
                    .get("annotations", {})
                    .get("deployment.kubernetes.io/revision", "0")
                )
                for rs in replica_sets
            ),
            default=0,
        )
        replicas = spec.get("replicas", 1)
        if current is None:
            labels = {**template.get("metadata", {}).get("labels", {}), "pod-template-hash": pth}
            rs_template = copy.deepcopy(template)
            rs_template.setdefault("metadata", {})["labels"] = labels
            current = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name,
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                    "ownerReferences": [_owner(deployment)],
                    "generation": 1,
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {
                        "matchLabels": {
                            **spec["selector"].get("matchLabels", {}),
                            "pod-template-hash": pth,
                        }
                    },
                    "template": rs_template,
                },
                "status": {"replicas": 0, "observedGeneration": 1},
            }
            self._put(REPLICASETS, current)
            self._progress[(meta["uid"], rs_name)] = time.monotonic()
            replica_sets.append(current)
        elif current["spec"]["replicas"] != replicas:
            current["spec"]["replicas"] = replicas
            self._put(REPLICASETS, current)

        self._revision(deployment, current)
        pods_of = {rs["metadata"]["name"]: self._pods_of(rs) for rs in replica_sets}
        self._scale_pods(current, pods_of[rs_name], replicas, deployment)
        pods_of[rs_name] = self._pods_of(current)
        new_ready = [p for p in pods_of[rs_name] if _ready(p)]
        if len(new_ready) >= replicas:  # the new ReplicaSet is available: retire the old ones
            for rs in replica_sets:
                if rs["metadata"]["name"] != rs_name and rs["spec"]["replicas"] != 0:
                    rs["spec"]["replicas"] = 0
                    self._put(REPLICASETS, rs)
                    for pod in pods_of[rs["metadata"]["name"]]:
                        self.cluster.remove(self._pod_key(pod))
                    pods_of[rs["metadata"]["name"]] = []
        self._deployment_status(deployment, rs_name, pods_of, replicas)

    def _revision(self, deployment: dict[str, Any], rs: dict[str, Any]) -> None:
        """The controller marks the Deployment with its current revision (an Update entry of
        its own in managedFields, as on a real cluster)."""
        key = "deployment.kubernetes.io/revision"
        revision = rs["metadata"]["annotations"][key]
        if deployment["metadata"].get("annotations", {}).get(key) != revision:
            meta = deployment["metadata"]
            self.cluster.patch(
                DEPLOYMENTS,
                meta["namespace"],
                meta["name"],
                "application/merge-patch+json",
                {"metadata": {"annotations": {key: revision}}},
                "kube-controller-manager",
            )

    def _pods_of(self, rs: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            p
            for p in self._all(PODS)
            if p["metadata"]["namespace"] == rs["metadata"]["namespace"] and _owned_by(p, rs)
        ]

    def _pod_key(self, pod: dict[str, Any]) -> Key:
        return ("", "pods", pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _scale_pods(
        self,
        rs: dict[str, Any],
        pods: list[dict[str, Any]],
        replicas: int,
        deployment: dict[str, Any],
    ) -> None:
        for pod in pods[replicas:]:
            self.cluster.remove(self._pod_key(pod))
        namespace = rs["metadata"]["namespace"]
        quota = next(
            (
                q
                for (plural, ns), q in self.cluster.quotas.items()
                if plural == "pods" and ns in (None, namespace)
            ),
            None,
        )
        self._replica_failures.pop(deployment["metadata"]["uid"], None)
        if quota is not None and replicas > len(pods):  # the ResourceQuota admission refuses
            used = len(pods)
            message = (
                f'pods "{rs["metadata"]["name"]}-{_safe(str(used), 5)}" is forbidden: exceeded'
                f" quota: {quota}, requested: pods=1, used: pods={used}, limited: pods={used}"
            )
            self._replica_failures[deployment["metadata"]["uid"]] = message
            self._event(rs, "FailedCreate", f"Error creating: {message}", "replicaset-controller")
        else:
            for _ in range(replicas - len(pods)):
                self._new_pod(rs, rs["spec"]["template"], deployment["metadata"]["name"], {}, {})
        current = self._pods_of(rs)
        ready = sum(1 for p in current if _ready(p))
        status = {
            "replicas": len(current),
            "fullyLabeledReplicas": len(current),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": 1,
        }
        self.cluster.write_status(
            REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], status
        )

    def _new_pod(
        self,
        owner: dict[str, Any],
        template: dict[str, Any],
        workload: str,
        labels: dict[str, str],
        annotations: dict[str, str],
        name: str | None = None,
    ) -> dict[str, Any]:
        meta = template.get("metadata", {})
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name or self._name(owner["metadata"]["name"]),
                "generateName": f"{name.rsplit('-', 1)[0] if name else owner['metadata']['name']}-",
                "namespace": owner["metadata"]["namespace"],
                "labels": {**meta.get("labels", {}), **labels},
                "annotations": {**meta.get("annotations", {}), **annotations},
                "ownerReferences": [_owner(owner)],
            },
            "spec": copy.deepcopy(template.get("spec", {})),
            "status": {"phase": "Pending", "qosClass": "Burstable"},
        }
        if not pod["metadata"]["annotations"]:
            del pod["metadata"]["annotations"]
        self._workloads[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = workload
        self._put(PODS, pod)
        return pod

    def _advance_pod(self, pod: dict[str, Any]) -> None:
        """Pending pods start (or fail) one pass after they were made."""
        status = pod["status"]
        if status.get("phase") != "Pending" or status.get("containerStatuses"):
            return
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        failure = self.failures.get(self._workloads.get((namespace, name), ""))
        containers = pod["spec"].get("containers", [])
        stamp = now()
        if failure is not None and failure.reason == "Unschedulable":
            if any(c.get("reason") == "Unschedulable" for c in status.get("conditions", [])):
                return
            message = failure.message or (
                f"0/3 nodes are available: 3 Insufficient {_extended(pod)}. preemption: 0/3 nodes"
                " are available: 3 No preemption victims found for incoming pod."
            )
            status["conditions"] = [_condition("PodScheduled", "False", "Unschedulable", message)]
            self._put(PODS, pod)
            self._event(pod, "FailedScheduling", message, "default-scheduler")
            return
        pod["spec"]["nodeName"] = NODE
        self._event(
            pod,
            "Scheduled",
            f"Successfully assigned {namespace}/{name} to {NODE}",
            "default-scheduler",
            warning=False,
        )
        status.update(
            {
                "hostIP": "10.0.1.17",
                "podIP": f"10.0.1.{100 + self._names % 150}",
                "startTime": stamp,
            }
        )
        if failure is None:
            for c in containers:
                self._event(
                    pod,
                    "Started",
                    f"Started container {c['name']}",
                    "kubelet",
                    c["name"],
                    warning=False,
                )
        if failure is None and pod["metadata"].get("labels", {}).get("job-name"):
            status["phase"] = "Running"
            status["conditions"] = _pod_conditions(True)
            status["containerStatuses"] = [_running(c, stamp) for c in containers]
            self._put(PODS, pod)
            for c in containers:  # running, nothing printed yet
                self.cluster.logs[(namespace, name, c["name"])] = ""
            self._run_job_pod(pod)
            return
        if failure is None:
            status["phase"] = "Running"
            status["conditions"] = _pod_conditions(True)
            status["containerStatuses"] = [_running(c, stamp) for c in containers]
            self._put(PODS, pod)
            for c in containers:
                self.cluster.logs[(namespace, name, c["name"])] = self.pod_log(pod)
            return
        first = containers[0]
        if failure.reason == "ImagePullBackOff":
            image = first.get("image", "")
            status["conditions"] = _pod_conditions(False)
            status["containerStatuses"] = [
                {
                    "name": first["name"],
                    "image": image,
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": f'Back-off pulling image "{image}"',
                        }
                    },
                    "lastState": {},
                }
            ]
            self._put(PODS, pod)
            self._event(
                pod,
                "Failed",
                failure.message
                or (
                    f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to'
                    f' pull and unpack image "{image}": failed to resolve reference "{image}":'
                    f' "{image}": not found'
                ),
                "kubelet",
                first["name"],
            )
            self._event(pod, "Failed", "Error: ErrImagePull", "kubelet", first["name"])
            self._event(
                pod,
                "BackOff",
                f'Back-off pulling image "{image}"',
                "kubelet",
                first["name"],
                warning=False,
            )
            return
        # CrashLoopBackOff
        status["phase"] = "Running"
        status["conditions"] = _pod_conditions(False)
        status["containerStatuses"] = [
            {
                "name": first["name"],
                "image": first.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 3,
                "state": {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off 40s restarting failed container={first['name']}"
                        f" pod={name}_{namespace}({pod['metadata']['uid']})",
                    }
                },
                "lastState": {
                    "terminated": {
                        "exitCode": 1,
                        "reason": "Error",
                        "startedAt": stamp,
                        "finishedAt": stamp,
                    }
                },
            }
        ]
        self._put(PODS, pod)
        self.cluster.logs[(namespace, name, first["name"])] = failure.log
        self.cluster.previous_logs[(namespace, name, first["name"])] = failure.log
        self._event(
            pod,
            "BackOff",
            f"Back-off restarting failed container {first['name']} in"
            f" pod {name}_{namespace}({pod['metadata']['uid']})",
            "kubelet",
            first["name"],
        )

    def _event(
        self,
        obj: dict[str, Any],
        reason: str,
        message: str,
        component: str,
        container: str | None = None,
        warning: bool = True,
    ) -> None:
        meta = obj["metadata"]
        if (meta["uid"], reason + message) in self._events:
            return
        self._events.add((meta["uid"], reason + message))
        stamp = now()
        involved = {
            "kind": obj["kind"],
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": obj["apiVersion"],
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        self._put(
            EVENTS,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{meta['name']}.{_safe(meta['uid'] + reason + message, 16)}",
                    "namespace": meta["namespace"],
                },
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "source": {
                    "component": component,
                    **({"host": NODE} if component == "kubelet" else {}),
                },
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "type": "Warning" if warning else "Normal",
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": NODE if component == "kubelet" else "",
            },
        )

    def _deployment_status(
        self,
        deployment: dict[str, Any],
        rs_name: str,
        pods_of: dict[str, list[dict[str, Any]]],
        replicas: int,
    ) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        all_pods = [p for pods in pods_of.values() for p in pods]
        updated = len(pods_of.get(rs_name, []))
        available = sum(1 for p in all_pods if _ready(p))
        complete = updated == replicas and available == replicas and len(all_pods) == replicas
        key = (meta["uid"], rs_name)
        started = self._progress.setdefault(key, time.monotonic())
        deadline = min(spec.get("progressDeadlineSeconds", 600), self.progress_deadline)
        old = deployment.get("status", {})
        old_progressing = next(
            (c for c in old.get("conditions", []) if c["type"] == "Progressing"), None
        )
        stamp = now()
        if complete:
            progressing = (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        elif (
            old_progressing is not None
            and old_progressing["reason"] == "ProgressDeadlineExceeded"
            and f'"{rs_name}"' in old_progressing["message"]  # this rollout's, not an older one
        ) or time.monotonic() - started > deadline:
            progressing = (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
            )
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        max_unavailable = spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable", 0)
        allowed = _resolve(max_unavailable, replicas)
        is_available = available >= replicas - allowed
        conditions = [
            {
                "type": "Available",
                "status": "True" if is_available else "False",
                "lastUpdateTime": stamp,
                "lastTransitionTime": stamp,
                "reason": "MinimumReplicasAvailable"
                if is_available
                else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if is_available
                else "Deployment does not have minimum availability.",
            },
            {
                "type": "Progressing",
                "status": progressing[0],
                "lastUpdateTime": stamp,
                "lastTransitionTime": stamp,
                "reason": progressing[1],
                "message": progressing[2],
            },
        ]
        failure = self._replica_failures.get(meta["uid"])
        if failure is not None:
            conditions.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "lastUpdateTime": stamp,
                    "lastTransitionTime": stamp,
                    "reason": "FailedCreate",
                    "message": failure,
                }
            )
        for new in conditions:  # keep the times of conditions that did not change
            before = next((c for c in old.get("conditions", []) if c["type"] == new["type"]), None)
            if before and (before["status"], before["reason"]) == (new["status"], new["reason"]):
                new["lastUpdateTime"] = before["lastUpdateTime"]
                new["lastTransitionTime"] = before["lastTransitionTime"]
        status: dict[str, Any] = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(all_pods),
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": conditions,
        }
        if len(all_pods) - available > 0:
            status["unavailableReplicas"] = len(all_pods) - available
        status = {k: v for k, v in status.items() if v != 0 or k == "observedGeneration"}
        self.cluster.write_status(DEPLOYMENTS, meta["namespace"], meta["name"], status)

    # ---- jobs

    def _job(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job["spec"]
        status = job.get("status", {})
        if any(
            c["type"] in ("Complete", "Failed") and c["status"] == "True"
            for c in status.get("conditions", [])
        ):
            return
        pods = [
            p
            for p in self._all(PODS)
            if p["metadata"]["namespace"] == meta["namespace"] and _owned_by(p, job)
        ]
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions", 1)
        parallelism = spec.get("parallelism", 1)
        succeeded = [p for p in pods if p["status"].get("phase") == "Succeeded"]
        failed = [p for p in pods if p["status"].get("phase") == "Failed"]
        active = [p for p in pods if p["status"].get("phase") in ("Pending", "Running")]
        done_indexes = {_index(p) for p in succeeded}
        stamp = now()
        new_status: dict[str, Any] = {"startTime": status.get("startTime", stamp)}
        conditions: list[dict[str, Any]] = []
        if len(failed) > spec.get("backoffLimit", 6):
            for pod in active:
                self.cluster.remove(self._pod_key(pod))
            active = []
            message = "Job has reached the specified backoff limit"
            conditions = [
                _job_condition("FailureTarget", "BackoffLimitExceeded", message, stamp),
                _job_condition("Failed", "BackoffLimitExceeded", message, stamp),
            ]
        elif (len(done_indexes) if indexed else len(succeeded)) >= completions:
            conditions = [
                _job_condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    stamp,
                ),
                _job_condition(
                    "Complete",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    stamp,
                ),
            ]
            new_status["completionTime"] = stamp
        else:
            running_indexes = {_index(p) for p in active}
            if indexed:
                wanted = [
                    i
                    for i in range(completions)
                    if i not in done_indexes and i not in running_indexes
                ]
            else:
                wanted = list(range(completions - len(succeeded) - len(active)))
            for index in wanted[: max(0, parallelism - len(active))]:
                active.append(self._new_job_pod(job, index if indexed else None))
        new_status.update(
            {
                "active": len(active),
                "ready": sum(1 for p in active if _ready(p)),
                "succeeded": len(succeeded),
                "failed": len(failed),
                "terminating": 0,
                "uncountedTerminatedPods": {},
            }
        )
        if indexed and done_indexes:
            new_status["completedIndexes"] = _ranges(sorted(done_indexes))
        if conditions:
            new_status["conditions"] = conditions
        new_status = {k: v for k, v in new_status.items() if v not in (0, {})}
        self.cluster.write_status(JOBS, meta["namespace"], meta["name"], new_status)

    def _new_job_pod(self, job: dict[str, Any], index: int | None) -> dict[str, Any]:
        meta = job["metadata"]
        uid, name = meta["uid"], meta["name"]
        labels = {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        annotations = {}
        template = copy.deepcopy(job["spec"]["template"])
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
            for container in template.get("spec", {}).get("containers", []):
                container.setdefault("env", []).append(
                    {
                        "name": "JOB_COMPLETION_INDEX",
                        "valueFrom": {
                            "fieldRef": {
                                "apiVersion": "v1",
                                "fieldPath": _INDEX_FIELD,
                            }
                        },
                    }
                )
        prefix = f"{name}-{index}" if index is not None else name
        return self._new_pod(job, template, name, labels, annotations, self._name(prefix))

    def _run_job_pod(self, pod: dict[str, Any]) -> None:
        namespace = pod["metadata"]["namespace"]
        job_name = pod["metadata"]["labels"]["job-name"]
        job = self.cluster.find(JOBS, namespace, job_name)
        if job is None:
            return
        index = int(
            pod["metadata"]
            .get("annotations", {})
            .get("batch.kubernetes.io/job-completion-index", "0")
        )
        env = _environment(pod)
        runner = self.job_runner or (lambda job, index, env: (0, ""))
        thread = threading.Thread(
            target=self._finish_job_pod,
            args=(runner, job, index, env, pod),
            name=f"job-pod-{pod['metadata']['name']}",
            daemon=True,
        )
        thread.start()

    def _finish_job_pod(
        self,
        runner: JobRunner,
        job: dict[str, Any],
        index: int,
        env: dict[str, str],
        pod: dict[str, Any],
    ) -> None:
        try:
            exit_code, log = runner(job, index, env)
        except Exception:
            exit_code, log = 1, traceback.format_exc()
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        with self.cluster.lock:
            live = self.cluster.find(PODS, namespace, name)
            if live is None:
                return
            container = live["spec"]["containers"][0]["name"]
            key = (namespace, name, container)  # after what it printed while running
            self.cluster.logs[key] = self.cluster.logs.get(key, "") + log
            stamp = now()
            live["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            live["status"]["conditions"] = _pod_conditions(False)
            live["status"]["containerStatuses"] = [
                {
                    "name": container,
                    "image": live["spec"]["containers"][0].get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Completed" if exit_code == 0 else "Error",
                            "startedAt": live["status"].get("startTime", stamp),
                            "finishedAt": stamp,
                        }
                    },
                    "lastState": {},
                }
            ]
            self._put(PODS, live)


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _pod_conditions(ready: bool) -> list[dict[str, Any]]:
    flag = "True" if ready else "False"
    reason = "" if ready else "ContainersNotReady"
    conditions = [
        _condition("PodReadyToStartContainers", "True", "", ""),
        _condition("Initialized", "True", "", ""),
        _condition("Ready", flag, reason, ""),
        _condition("ContainersReady", flag, reason, ""),
        _condition("PodScheduled", "True", "", ""),
    ]
    for c in conditions:
        for field in ("reason", "message"):
            if not c[field]:
                del c[field]
    return conditions


def _running(container: dict[str, Any], stamp: str) -> dict[str, Any]:
    image = container.get("image", "")
    return {
        "name": container["name"],
        "image": image,
        "imageID": f"{image.split('@')[0].split(':')[0]}@sha256:"
        + hashlib.sha256(image.encode()).hexdigest(),
        "ready": True,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": stamp}},
        "lastState": {},
    }


def _extended(pod: dict[str, Any]) -> str:
    """The resource the scheduler would find missing: the first extended one asked for."""
    for container in pod["spec"].get("containers", []):
        limits = container.get("resources", {}).get("limits", {})
        for name in _EXTENDED:
            if name in limits:
                return name
    return "cpu"


def _resolve(value: Any, replicas: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return int(replicas * int(value[:-1]) / 100)
    return int(value or 0)


def _index(pod: dict[str, Any]) -> int:
    return int(
        pod["metadata"].get("annotations", {}).get("batch.kubernetes.io/job-completion-index", -1)
    )


def _ranges(indexes: list[int]) -> str:
    """`0-3,5`, as status.completedIndexes writes them."""
    parts: list[str] = []
    start = prev = indexes[0]
    for i in [*indexes[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


def _job_condition(kind: str, reason: str, message: str, stamp: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def _environment(pod: dict[str, Any]) -> dict[str, str]:
    """The first container's environment as the kubelet would resolve it."""
    container = pod["spec"]["containers"][0]
    meta = pod["metadata"]
    env: dict[str, str] = {"HOSTNAME": meta["name"]}  # as in every container
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        path = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
        if path.startswith("metadata.labels['"):
            env[var["name"]] = meta.get("labels", {}).get(path[len("metadata.labels['") : -2], "")
        elif path.startswith("metadata.annotations['"):
            env[var["name"]] = meta.get("annotations", {}).get(
                path[len("metadata.annotations['") : -2], ""
            )
        elif path == "metadata.name":
            env[var["name"]] = meta["name"]
        elif path == "metadata.namespace":
            env[var["name"]] = meta["namespace"]
    return env
