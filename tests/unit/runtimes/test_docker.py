"""The Docker runtime's pure parts: container options, names, wheel platforms, requirement
pins, Docker's error messages, the ECR login. The engine itself is exercised by
tests/integration/docker/."""

from __future__ import annotations

import concurrent.futures
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from python_on_whales.exceptions import DockerException

from engine.errors import DoinferError, StepFailed
from engine.runtimes import docker as docker_runtime
from engine.runtimes import docker_images
from engine.runtimes.docker import replica_key, run_options
from engine.runtimes.docker_engine import DaemonUnavailable, docker_errors, reason
from engine.runtimes.image_names import is_loopback, registry_reference, server_tag
from engine.runtimes.wheelhouse import Platform, pip_index_args, server_requirements

INPUTS: dict[str, Any] = {
    "spec": "demo",
    "environment": "prod",
    "server": "web",
    "runtime": "docker",
    "processor": "cpu",
    "replicas": 2,
    "port": 8081,
    "bind_address": "127.0.0.1",
    "threads": 2,
    "container_port": 8080,
    "restart": "unless-stopped",
    "models": [],
}


def test_a_replica_runs_with_init_labels_restart_and_a_port_on_loopback() -> None:
    options = run_options(INPUTS, "img:1", 1, "k" * 16, "doinfer-demo-prod")
    assert options["name"] == "doinfer-demo-prod-web-1"
    assert options["init"] is True and options["detach"] is True
    assert options["restart"] == "unless-stopped"
    assert options["publish"] == [("127.0.0.1:8082", 8080)]
    assert options["networks"] == ["doinfer-demo-prod"]
    assert options["network_aliases"] == ["web-1"]
    assert options["command"] == ["--port", "8080", "--threads", "2"]
    assert options["labels"] == {
        "io.doinfer.spec": "demo",
        "io.doinfer.environment": "prod",
        "io.doinfer.server": "web",
        "io.doinfer.replica": "1",
        "io.doinfer.step": "deploy/web",
        "io.doinfer.fingerprint": "k" * 16,
    }
    assert "privileged" not in options and "gpus" not in options


def test_without_a_port_docker_picks_a_free_one_on_the_bind_address() -> None:
    options = run_options({**INPUTS, "port": None}, "img:1", 0, "k", "net")
    assert options["publish"] == [("127.0.0.1:", 8080)]  # -p 127.0.0.1::8080


def test_gpu_replicas_get_the_gpus_and_inf_replicas_the_neuron_devices(monkeypatch) -> None:
    assert run_options({**INPUTS, "processor": "gpu"}, "i", 0, "k", "n")["gpus"] == "all"
    monkeypatch.setattr(docker_runtime.glob, "glob", lambda _: ["/dev/neuron1", "/dev/neuron0"])
    options = run_options({**INPUTS, "processor": "inf"}, "i", 0, "k", "n")
    assert options["devices"] == ["/dev/neuron0", "/dev/neuron1"]
    monkeypatch.setattr(docker_runtime.glob, "glob", lambda _: [])
    with pytest.raises(StepFailed, match="no /dev/neuron"):
        run_options({**INPUTS, "processor": "inf"}, "i", 0, "k", "n")


def test_the_replica_key_follows_what_runs() -> None:
    key = replica_key(INPUTS, "sha256:a", 0)
    assert key == replica_key({**INPUTS, "replicas": 5}, "sha256:a", 0)  # scaling keeps it
    assert key != replica_key(INPUTS, "sha256:b", 0)  # another image
    assert key != replica_key({**INPUTS, "threads": 1}, "sha256:a", 0)
    assert key != replica_key(INPUTS, "sha256:a", 1)  # another host port


def test_names_of_images_and_registry_references() -> None:
    tag = server_tag("demo", "prod", "web", "0123456789abcdef")
    assert tag == "doinfer-demo-web:prod-0123456789ab"
    assert registry_reference("localhost:5000/team/", tag) == f"localhost:5000/team/{tag}"
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:5000")
    assert not is_loopback("123456789012.dkr.ecr.us-west-2.amazonaws.com")


def test_wheel_platforms_run_from_the_image_glibc_down() -> None:
    tags = Platform("3.11", "x86_64", "2.36").tags()
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_17_x86_64" in tags and "manylinux2014_x86_64" in tags
    assert tags[-1] == "linux_x86_64"
    assert "manylinux2014_aarch64" in Platform("3.12", "aarch64", "2.17").tags()
    assert "manylinux_2_28_x86_64" not in Platform("3.11", "x86_64", "2.17").tags()


def test_requirements_are_pinned_to_what_runs_here() -> None:
    import importlib.metadata

    pins = server_requirements("cpu")
    torch = next(p for p in pins if p.startswith("torch=="))
    assert torch == "torch==" + importlib.metadata.version("torch").split("+")[0]
    assert f"litestar=={importlib.metadata.version('litestar')}" in pins
    assert not any(p.startswith(("pytest", "ruff")) for p in pins)  # no test extras
    inf = server_requirements("inf")
    assert "torch-neuronx" in inf and not any(p.startswith("torch==") for p in inf)
    assert pip_index_args("inf") and pip_index_args("cpu") == []


def failure(stderr: str) -> DockerException:
    return DockerException(["docker", "x"], 1, b"", stderr.encode())


def test_a_missing_daemon_is_a_message_that_says_what_to_do() -> None:
    missing = failure(
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?\n"
    )
    with pytest.raises(DaemonUnavailable, match="Start it") as caught, docker_errors("listing"):
        raise missing
    assert "nothing was changed" in str(caught.value)


def test_other_docker_errors_name_what_was_being_done() -> None:
    error = failure("Error response from daemon: conflict: unable to remove repository\n")
    assert reason(error) == "conflict: unable to remove repository"
    expected = r"^removing x: conflict: unable to remove repository$"
    with pytest.raises(StepFailed, match=expected), docker_errors("removing x"):
        raise error


class FakeDocker:
    def __init__(self) -> None:
        self.logins: list[dict[str, str]] = []

    def login(self, **kwargs: str) -> None:
        self.logins.append(kwargs)


def fake_aws(tmp_path: Path, script: str) -> None:
    aws = tmp_path / "bin" / "aws"
    aws.parent.mkdir()
    aws.write_text(f"#!/bin/sh\n{script}\n")
    aws.chmod(aws.stat().st_mode | stat.S_IEXEC)


def test_ecr_logs_in_with_a_token_from_the_aws_cli(tmp_path: Path, monkeypatch) -> None:
    fake_aws(tmp_path, 'echo "$@" > "$(dirname "$0")/args"; echo secret-token')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    docker = FakeDocker()
    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    docker_images._login(docker, host, lambda _: None)  # type: ignore[arg-type]
    assert docker.logins == [{"server": host, "username": "AWS", "password": "secret-token"}]
    args = (tmp_path / "bin" / "args").read_text().split()
    assert args == ["ecr", "get-login-password", "--region", "eu-west-1"]
    other = FakeDocker()
    docker_images._login(other, "127.0.0.1:5000", lambda _: None)  # type: ignore[arg-type]
    assert other.logins == []  # docker's own credential helpers do the rest


def test_ecr_without_the_aws_cli_is_a_clear_failure(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StepFailed, match="needs the AWS CLI"):
        docker_images._login(
            FakeDocker(),  # type: ignore[arg-type]
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            lambda _: None,
        )


def test_exec_is_for_containers(tmp_path: Path) -> None:
    from engine.runtimes.local import LocalRuntime

    with pytest.raises(DoinferError, match="exec needs a container runtime"):
        LocalRuntime(tmp_path).exec("demo", "default", "web", 0, ["sh"], False)


def test_a_wheelhouse_is_downloaded_once_and_a_failure_says_why(
    tmp_path: Path, monkeypatch
) -> None:
    from engine.runtimes import wheelhouse

    calls: list[list[str]] = []

    def pip(command: list[str], log: Any, cancelled: Any) -> tuple[int, list[str]]:
        calls.append(command)
        dest = Path(command[command.index("--dest") + 1])
        (dest / "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"w")
        return 0, []

    monkeypatch.setattr(wheelhouse, "run_streaming", pip)
    platform = Platform("3.11", "x86_64", "2.36")
    first = wheelhouse.ensure_wheelhouse(tmp_path, ["torch==2.13.0"], platform, [], print, bool)
    again = wheelhouse.ensure_wheelhouse(tmp_path, ["torch==2.13.0"], platform, [], print, bool)
    assert first == again and len(calls) == 1
    assert (first / "requirements.txt").read_text() == "torch==2.13.0\n"
    assert calls[0][calls[0].index("--python-version") + 1] == "3.11"
    assert "--only-binary=:all:" in calls[0] and "manylinux2014_x86_64" in calls[0]

    monkeypatch.setattr(
        wheelhouse,
        "run_streaming",
        lambda *_: (1, ["ERROR: No matching distribution found for torch==9.9"]),
    )
    with pytest.raises(StepFailed, match=r"No matching distribution found for torch==9\.9"):
        wheelhouse.ensure_wheelhouse(tmp_path, ["torch==9.9"], platform, [], print, bool)
    assert not list((tmp_path / "wheelhouses").glob(".tmp-*"))  # nothing half-made is left


def test_the_specs_server_limits_are_flags_of_the_server_and_part_of_the_key() -> None:
    """A spec's `limits` reach the server as flags; changing them restarts the replica;
    `docker stop` waits for the drain they allow before it kills."""
    limited = {**INPUTS, "limits": {"max_body_bytes": 65536.0, "drain_timeout_s": 50}}
    options = run_options(limited, "img:1", 0, "k" * 16, "net")
    command = options["command"]
    assert command[command.index("--max-body-bytes") + 1] == "65536"
    assert command[command.index("--drain-timeout-s") + 1] == "50.0"
    assert options["stop_timeout"] == 55  # the drain and a margin
    assert run_options(INPUTS, "img:1", 0, "k" * 16, "net")["stop_timeout"] == 35
    assert "--max-body-bytes" not in run_options(INPUTS, "img:1", 0, "k" * 16, "net")["command"]
    assert replica_key(limited, "sha256:a", 0) != replica_key(INPUTS, "sha256:a", 0)


class Recorded:
    """A stand-in container: what the deploy reads of it."""

    def __init__(self, name: str, key: str) -> None:
        self.name = name
        self.config = type("Config", (), {"labels": {docker_runtime.FINGERPRINT: key}})()
        self.state = type("State", (), {"status": "running"})()


class StoppingDocker:
    """The docker client's container calls, recorded in order."""

    def __init__(self, events: list[str]) -> None:
        self.container = self
        self.events = events

    def stop(self, name: str, time: int) -> None:
        self.events.append(f"stop {name} (SIGTERM, {time} s to drain)")

    def remove(self, name: str, force: bool) -> None:
        self.events.append(f"remove {name}")


def test_changed_replicas_are_replaced_one_at_a_time_each_drained_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docker engine itself is tests/integration/docker/'s; here, the order: a replica's
    old container drains (docker stop) before its new one starts on the port, and the new
    one is ready before the next replica's old one stops."""
    from engine.runtimes.contracts import DeployInput, PackResult, ReplicaRecord

    events: list[str] = []
    runtime = docker_runtime.DockerRuntime(tmp_path, docker=StoppingDocker(events))  # type: ignore[arg-type]
    old = {i: Recorded(f"old-{i}", "stale") for i in range(2)}
    monkeypatch.setattr(runtime, "_containers", lambda *a: list(old.items()))
    monkeypatch.setattr(runtime, "_check_ports", lambda *a: None)
    monkeypatch.setattr(runtime, "_ensure_network", lambda *a: "net")
    monkeypatch.setattr(docker_images, "prune_server_images", lambda *a: None)

    def start(options: dict[str, Any], log: Any) -> Recorded:
        events.append(f"start {options['name']}")
        return Recorded(options["name"], "new")

    def wait_ready(container: Recorded, inputs: dict[str, Any], log: Any, cancelled: Any):
        events.append(f"ready {container.name}")
        return ReplicaRecord(0, "http://127.0.0.1:1", "new")

    monkeypatch.setattr(runtime, "_start", start)
    monkeypatch.setattr(runtime, "_wait_ready", wait_ready)
    pack = PackResult(image="doinfer/demo:1", image_id="sha256:1")
    runtime.deploy({**INPUTS, "threads": 2}, DeployInput(pack), lambda _: None, lambda: False)
    first, second = (docker_runtime.container_name("demo", "prod", "web", i) for i in (0, 1))
    assert events == [
        "stop old-0 (SIGTERM, 35 s to drain)",
        "remove old-0",
        f"start {first}",
        f"ready {first}",
        "stop old-1 (SIGTERM, 35 s to drain)",
        "remove old-1",
        f"start {second}",
        f"ready {second}",
    ]


def test_a_router_runs_its_table_mounted_read_only_and_a_new_table_is_a_new_key(
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "routers" / "0123456789abcdef"
    options = run_options(INPUTS, "img:1", 0, "k", "net", bundle)
    assert options["volumes"] == [(str(bundle / "router.json"), "/router/router.json", "ro")]
    # the image's entrypoint names its own bundle; the last --bundle wins
    assert options["command"][-2:] == ["--bundle", "/router"]
    assert options["labels"]["io.doinfer.step"] == "router/web"
    assert options["network_aliases"] == ["web-0"]
    assert "volumes" not in run_options(INPUTS, "img:1", 0, "k", "net")
    key = replica_key(INPUTS, "sha256:a", 0, bundle)
    assert key == replica_key(INPUTS, "sha256:a", 0, tmp_path / "elsewhere" / bundle.name)
    assert key != replica_key(INPUTS, "sha256:a", 0, bundle.with_name("fedcba9876543210"))
    assert key != replica_key(INPUTS, "sha256:a", 0)  # a server's


def test_the_router_runs_the_first_device_s_image_on_its_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.runtimes.contracts import DeployResult, ReplicaRecord

    runtime = docker_runtime.DockerRuntime(tmp_path, docker=object())  # type: ignore[arg-type]
    ran: list[tuple[Any, ...]] = []
    monkeypatch.setattr(runtime, "_deploy", lambda *args: ran.append(args))
    devices = [
        DeployResult(
            (ReplicaRecord(0, "http://127.0.0.1:1", "k", {}, f"http://{name}-0:8080"),),
            (),
            extra={"image": f"reg/{name}:1", "image_id": f"sha256:{name}"},
        )
        for name in ("fleet-a-0", "fleet-b-0")
    ]
    bundle = tmp_path / "routers" / "0123456789abcdef"
    runtime.deploy_router(INPUTS, bundle, devices, print, lambda: False)
    ((inputs, image, built, table, _, _),) = ran
    assert (inputs, image, built, table) == (
        INPUTS,
        "reg/fleet-a-0:1",
        "sha256:fleet-a-0",
        bundle,
    )


def test_parallel_deploys_create_their_network_once(tmp_path: Path) -> None:
    """Docker lets two networks share a name, and a fleet's device servers deploy in
    parallel: one of them creates the spec's network, the others find it (two networks
    of one name left every later `docker run --network NAME` ambiguous)."""

    class Networks:
        def __init__(self) -> None:
            self.created: list[str] = []

        def exists(self, name: str) -> bool:
            time.sleep(0.01)  # the engine answers slowly: threads interleave here
            return name in self.created

        def create(self, name: str, labels: dict[str, str]) -> None:
            time.sleep(0.01)
            self.created.append(name)

    class NetworkDocker:
        network = Networks()

    docker = NetworkDocker()
    runtime = docker_runtime.DockerRuntime(tmp_path, docker=docker)  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        names = list(pool.map(lambda _: runtime._ensure_network("s", "e", print), range(8)))
    assert docker.network.created == ["doinfer-s-e"] and set(names) == {"doinfer-s-e"}
