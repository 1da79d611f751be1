"""Whether a Deployment's rollout is done, and why one is stuck, from the API's own words.

Pure functions of the objects the API returns (a Deployment, its pods, their events and
log tails), so each judgement is testable with plain data. The rules are Kubernetes'
(`kubectl rollout status`): done when the controller has seen the newest generation and
every replica is updated and available with no old one left; failed when the
Progressing condition says ProgressDeadlineExceeded or a pod cannot start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# waiting reasons that do not heal by waiting (kubelet retries, with growing back-off)
STUCK = (
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
)
# of those, what fails a rollout at once (a missing image or a crashing server does not
# heal by itself; ErrImagePull may be a registry's hiccup, a Pending pod may wait for a
# node that Karpenter or the cluster autoscaler is bringing up)
FAIL_FAST = (
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
)
LOG_LINES = 20


def rollout_done(deployment: Mapping[str, Any]) -> bool:
    meta, spec = deployment["metadata"], deployment.get("spec", {})
    status = deployment.get("status", {})
    wanted = spec.get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= meta.get("generation", 1)
        and status.get("updatedReplicas", 0) == wanted
        and status.get("availableReplicas", 0) == wanted
        and status.get("replicas", 0) == wanted  # no old replica left
    )


def deadline_exceeded(deployment: Mapping[str, Any]) -> str | None:
    """The controller's verdict that the rollout stopped progressing, if it gave one."""
    for condition in deployment.get("status", {}).get("conditions", []):
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return condition.get("message") or "ProgressDeadlineExceeded"
    return None


def unavailable(deployment: Mapping[str, Any]) -> str | None:
    """Why a Deployment that should be serving is not (drift), or None."""
    if deployment.get("spec", {}).get("replicas", 1) == 0:
        return None
    status = deployment.get("status", {})
    wanted = deployment.get("spec", {}).get("replicas", 1)
    available = status.get("availableReplicas", 0)
    if available < wanted:
        return f"{available} of {wanted} replica(s) available"
    return None


def waiting_reasons(pod: Mapping[str, Any]) -> list[str]:
    """Why a pod's containers wait, if they do (ContainerCreating, ImagePullBackOff...)."""
    reasons = []
    for container in pod.get("status", {}).get("containerStatuses", []):
        reason = (container.get("state", {}).get("waiting") or {}).get("reason")
        if reason:
            reasons.append(reason)
    return reasons


def crashing(pod: Mapping[str, Any]) -> bool:
    """Whether a pod's container crashes over and over (its log then tells why)."""
    return "CrashLoopBackOff" in waiting_reasons(pod)


def pod_problems(
    pods: list[Mapping[str, Any]],
    events: Mapping[str, list[Mapping[str, Any]]],
    logs: Mapping[str, str],
) -> list[str]:
    """Why pods cannot become ready: a stuck container (with its log's last lines when it
    crashed) or a pod no node can take (with the scheduler's reason), one line per pod.
    `events` and `logs` are by pod name (logs of the crashing pods)."""
    problems = []
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status", {})
        for container in status.get("containerStatuses", []):
            waiting = container.get("state", {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            if reason not in STUCK:
                continue
            detail = waiting.get("message") or _last_event(
                events.get(name, []), ("Failed", "BackOff")
            )
            line = f"pod {name}: {reason}" + (f": {detail}" if detail else "")
            if reason == "CrashLoopBackOff":
                terminated = container.get("lastState", {}).get("terminated") or {}
                if "exitCode" in terminated:
                    line += f" (exit code {terminated['exitCode']})"
                tail = logs.get(name, "").rstrip()
                line += "; its log ends:\n" + (
                    "\n".join(tail.splitlines()[-LOG_LINES:]) if tail else "(empty)"
                )
            problems.append(line)
            break
        else:
            scheduled = next(
                (c for c in status.get("conditions", []) if c.get("type") == "PodScheduled"), None
            )
            if (
                status.get("phase") == "Pending"
                and scheduled
                and scheduled.get("status") == "False"
            ):
                detail = _last_event(events.get(name, []), ("FailedScheduling",)) or scheduled.get(
                    "message", ""
                )
                problems.append(f"pod {name}: Unschedulable: {detail}")
    return problems


def _last_event(events: list[Mapping[str, Any]], reasons: tuple[str, ...]) -> str:
    matching = [e for e in events if e.get("reason") in reasons]
    return matching[-1].get("message", "") if matching else ""
