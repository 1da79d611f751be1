"""`doinfer render` and `plan --no-refresh` of the EKS examples, as on a fresh clone: no
cluster (KUBECONFIG names nothing), no Docker engine asked, no state written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

from engine.state import StateStore

REPO = Path(__file__).resolve().parents[3]
GPU = REPO / "specs" / "examples" / "eks-gpu.yaml"
INF = REPO / "specs" / "examples" / "eks-inf.yaml"


def doinfer(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={
            "PYTHONPATH": str(REPO),
            "PATH": "/usr/bin:/bin",
            "KUBECONFIG": str(cwd / "no-such-kubeconfig"),
            "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        },
    )


def test_render_prints_valid_objects_naming_the_image_it_will_push(tmp_path: Path) -> None:
    result = doinfer(tmp_path, "render", str(GPU))
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    assert [o["kind"] for o in objects] == ["Namespace", "Deployment", "Service"]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33", strict=True)
    plan = json.loads(
        doinfer(tmp_path, "plan", str(GPU), "--no-refresh", "--format", "json").stdout
    )
    (pack,) = [c for c in plan["changes"] if c["step"] == "pack/qa-gpu"]
    tag = pack["summary"].rsplit(" into ", 1)[1]  # doinfer-bert-qa-gpu-qa-gpu:default-<fp>
    container = objects[1]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"123456789012.dkr.ecr.us-west-2.amazonaws.com/{tag}"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert not (tmp_path / ".doinfer").exists()  # nothing recorded, no cache made


def test_render_out_writes_one_file_per_object(tmp_path: Path) -> None:
    result = doinfer(tmp_path, "render", str(INF), "--out", str(tmp_path / "manifests"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "manifests").iterdir()) == [
        "00-namespace-mpi.yaml",
        "deployment-bert-inf-bert-inf.yaml",
        "service-bert-inf-bert-inf.yaml",
    ]
    deployment = yaml.safe_load(
        (tmp_path / "manifests/deployment-bert-inf-bert-inf.yaml").read_text()
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["aws.amazon.com/neuron"] == 1
    assert pod["tolerations"] == [{"key": "aws.amazon.com/neuron", "operator": "Exists"}]


def test_render_names_a_pushed_image_by_its_digest(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    plan_file = tmp_path / "plan.json"
    doinfer(
        tmp_path,
        "plan",
        str(GPU),
        "--no-refresh",
        "--state-dir",
        str(state_dir),
        "--out",
        str(plan_file),
    )
    (push,) = [s for s in json.loads(plan_file.read_text())["steps"] if s["id"] == "push/qa-gpu"]
    repository = "123456789012.dkr.ecr.us-west-2.amazonaws.com/doinfer-bert-qa-gpu-qa-gpu"
    digest = f"{repository}@sha256:{'ab' * 32}"
    store = StateStore(state_dir, "bert-qa-gpu", "default")
    store.record(
        store.load(),
        "push/qa-gpu",
        {
            "kind": "push",
            "fingerprint": push["fingerprint"],
            "inputs": push["inputs"],
            "outputs": {
                "reference": f"{repository}:default-x",
                "digest": digest,
                "image_id": "sha256:1",
            },
        },
    )
    result = doinfer(tmp_path, "render", str(GPU), "--state-dir", str(state_dir))
    assert result.returncode == 0, result.stderr
    deployment = list(yaml.safe_load_all(result.stdout))[1]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == digest


def test_plan_without_refresh_of_the_inferentia_example_reads_well(tmp_path: Path) -> None:
    result = doinfer(tmp_path, "plan", str(INF), "--no-refresh", "--format", "markdown")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "### doinfer plan: `bert-inf` (default, kubernetes)"
    assert "**Plan: 8 to create, 0 to update, 0 to replace, 0 to delete, 0 unchanged.**" in lines
    text = result.stdout
    assert "on host inf-builder (ec2-user@10.0.0.7:22)" in text
    assert "push bert-inf's image to 123456789012.dkr.ecr.us-west-2.amazonaws.com/" in text
    assert "deploy bert-inf: 4 replica(s) on kubernetes" in text
    assert not (tmp_path / ".doinfer").exists()


def test_render_of_a_spec_without_kubernetes_objects_says_so(tmp_path: Path) -> None:
    result = doinfer(tmp_path, "render", str(REPO / "specs" / "local.yaml"))
    assert result.returncode == 1
    assert "the local runtime creates no objects to render" in result.stderr
    assert "Traceback" not in result.stderr
