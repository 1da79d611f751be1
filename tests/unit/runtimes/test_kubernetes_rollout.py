"""Judging a Deployment's rollout and explaining stuck pods, from API objects as data.

The objects are shaped as the Kubernetes API returns them (status fields, container
states and events as documented for apps/v1 Deployment and v1 Pod/Event).
"""

from __future__ import annotations

from typing import Any

from engine.runtimes.kubernetes_rollout import (
    crashing,
    deadline_exceeded,
    pod_problems,
    rollout_done,
    unavailable,
)


def deployment(**status: Any) -> dict[str, Any]:
    """A Deployment at generation 2 that wants 2 replicas, with this status."""
    return {
        "metadata": {"name": "qa-bert", "generation": 2},
        "spec": {"replicas": 2},
        "status": status,
    }


def test_a_rollout_is_done_only_when_every_replica_is_new_and_available() -> None:
    done = {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    assert rollout_done(deployment(**done))
    assert not rollout_done(deployment(**(done | {"observedGeneration": 1})))  # not seen yet
    assert not rollout_done(deployment(**(done | {"updatedReplicas": 1})))
    assert not rollout_done(deployment(**(done | {"availableReplicas": 1})))
    assert not rollout_done(deployment(**(done | {"replicas": 3})))  # an old one is left
    assert not rollout_done(deployment())


def test_deadline_and_availability() -> None:
    stuck = deployment(
        conditions=[
            {"type": "Available", "status": "True"},
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "qa-bert-5d8f" has timed out progressing.',
            },
        ]
    )
    assert deadline_exceeded(stuck) == 'ReplicaSet "qa-bert-5d8f" has timed out progressing.'
    progressing = deployment(
        conditions=[{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
    )
    assert deadline_exceeded(progressing) is None
    assert unavailable(deployment(availableReplicas=1)) == "1 of 2 replica(s) available"
    assert unavailable(deployment(availableReplicas=2)) is None


def pod(name: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": status}


def waiting(reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": "server", "state": {"waiting": {"reason": reason, "message": message}}, **extra}


def test_image_pull_failure_names_the_image() -> None:
    pods = [
        pod(
            "qa-bert-5d8f-x2k9q",
            phase="Pending",
            containerStatuses=[
                waiting("ImagePullBackOff", 'Back-off pulling image "ecr/doinfer-qa:default-abc"')
            ],
        )
    ]
    assert pod_problems(pods, {}, {}) == [
        'pod qa-bert-5d8f-x2k9q: ImagePullBackOff: Back-off pulling image "ecr/doinfer-qa:'
        'default-abc"'
    ]


def test_unschedulable_pod_says_the_missing_resource_from_its_event() -> None:
    pods = [
        pod(
            "qa-inf-7c9-abcde",
            phase="Pending",
            conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
        )
    ]
    events = {
        "qa-inf-7c9-abcde": [
            {"reason": "Scheduled", "message": "old"},
            {
                "reason": "FailedScheduling",
                "message": "0/3 nodes are available: 3 Insufficient aws.amazon.com/neuron.",
            },
        ]
    }
    assert pod_problems(pods, events, {}) == [
        "pod qa-inf-7c9-abcde: Unschedulable: 0/3 nodes are available: 3 Insufficient "
        "aws.amazon.com/neuron."
    ]


def test_crash_loop_shows_the_exit_code_and_the_last_log_lines() -> None:
    crashed = pod(
        "qa-bert-5d8f-zz",
        phase="Running",
        containerStatuses=[
            waiting(
                "CrashLoopBackOff",
                "back-off 40s restarting failed container",
                lastState={"terminated": {"exitCode": 1}},
            )
        ],
    )
    healthy = pod(
        "qa-bert-5d8f-ok",
        phase="Running",
        containerStatuses=[{"name": "server", "state": {"running": {}}}],
    )
    assert crashing(crashed) and not crashing(healthy)
    log = "\n".join(f"line {i}" for i in range(30)) + "\nBundleError: no server.json\n"
    (problem,) = pod_problems([crashed, healthy], {}, {"qa-bert-5d8f-zz": log})
    head, tail = problem.split("; its log ends:\n")
    assert head == (
        "pod qa-bert-5d8f-zz: CrashLoopBackOff: back-off 40s restarting failed container "
        "(exit code 1)"
    )
    assert tail.splitlines()[-1] == "BundleError: no server.json"
    assert len(tail.splitlines()) == 20 and "line 10" not in tail
