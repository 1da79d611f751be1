"""Images of the Docker runtime: base images per processor, server images, registry pushes.

Names are known before apply (they follow from fingerprints); image ids and registry
digests only after. A base image is shared by every spec whose servers need the same
processor, Dockerfile and requirements, like a traced model in the cache; a server image
belongs to one server of one spec and environment, and carries its labels.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import engine
from engine.bundles import link_tree, write_bundle
from engine.errors import StepFailed
from engine.runtimes.contracts import ImageResult, PackRequest, PackResult, PushResult
from engine.runtimes.docker_engine import (
    ENVIRONMENT,
    FINGERPRINT,
    LABEL,
    SERVER,
    SPEC,
    STEP,
    classic_build,
    docker_command,
    docker_errors,
    labels_filter,
    reason,
    whales_errors,
)
from engine.runtimes.image_names import (
    base_tag,
    dockerfile,
    is_loopback,
    registry_host,
    registry_reference,
    server_tag,
)
from engine.runtimes.wheelhouse import Platform, ensure_wheelhouse

if TYPE_CHECKING:
    from python_on_whales import DockerClient

PROBE = (
    "import json, platform, sys; print(json.dumps({'python': '%d.%d' % sys.version_info[:2], "
    "'machine': platform.machine(), 'glibc': platform.libc_ver()[1]}))"
)
PYPI_PAGE = "https://pypi.org/project/doinfer/"  # the source of an installed doinfer
ECR = re.compile(r"^\d{12}\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")

Log = Callable[[str], None]
Cancelled = Callable[[], bool]


# -- base images ------------------------------------------------------------------------


def build_base(
    docker: DockerClient,
    inputs: dict[str, Any],
    fingerprint: str,
    work_dir: Path,
    cache_dir: Path,
    log: Log,
    cancelled: Cancelled,
) -> ImageResult:
    """Build the base image of a processor, unless an image of that name exists."""
    processor, base = inputs["processor"], inputs["base_image"]
    tag = base_tag(processor, fingerprint)
    existing = _image(docker, tag)
    if existing is not None:
        log(f"base image {tag} exists")
        return ImageResult(tag, existing.id)
    context = Path(tempfile.mkdtemp(prefix="image-", dir=work_dir))
    stages = [f"{tag}-python", f"{tag}-install"]
    try:
        (context / "Dockerfile").write_text(dockerfile(processor))
        what = f"building the {processor} base image from {base}"

        def build(*args: str) -> None:
            command = ["--build-arg", f"BASE_IMAGE={base}", *args, str(context)]
            classic_build(docker, command, what, log, cancelled)

        log(f"{what}: Python")
        build("--target", "python", "-t", stages[0])
        platform = _probe(docker, stages[0])
        log(f"{base} has Python {platform.python} on {platform.machine}, glibc {platform.glibc}")
        wheels = ensure_wheelhouse(
            cache_dir, inputs["requirements"], platform, inputs["pip_index"], log, cancelled
        )
        link_tree(wheels, context / "wheelhouse")
        log(f"{what}: installing the wheelhouse")
        build("--target", "install", "-t", stages[1])
        labels = {STEP: f"image/{processor}", FINGERPRINT: fingerprint}
        build(*[a for k, v in labels.items() for a in ("--label", f"{k}={v}")], "-t", tag)
    finally:
        shutil.rmtree(context, ignore_errors=True)
        # The stages' tags go: `install` (with the wheelhouse) is deleted, `python` stays as
        # the final image's parent. The classic builder would leave them dangling otherwise.
        for stage in stages:
            with contextlib.suppress(whales_errors().DockerException):
                docker.image.remove(stage)
    with docker_errors(f"inspecting {tag}"):
        image = docker.image.inspect(tag)
    log(f"built {tag} ({image.id[:19]})")
    return ImageResult(tag, image.id, platform.python)


def image_drift(docker: DockerClient, tag: str, image_id: str) -> list[str]:
    image = _image(docker, tag)
    if image is None:
        return [f"image {tag} is gone"]
    if image.id != image_id:
        return [f"image {tag} was rebuilt outside doinfer ({image.id[:19]})"]
    return []


def _probe(docker: DockerClient, image: str) -> Platform:
    with docker_errors(f"asking {image} which Python it has"):
        output = docker.run(image, ["python3", "-c", PROBE], remove=True, entrypoint="")
    data = json.loads(str(output).strip().splitlines()[-1])
    return Platform(data["python"], data["machine"], data["glibc"])


def _image(docker: DockerClient, reference: str) -> Any:
    try:
        return docker.image.inspect(reference)
    except whales_errors().NoSuchImage:
        return None
    except whales_errors().DockerException as exc:
        with docker_errors(f"inspecting {reference}"):
            raise exc


# -- server images ----------------------------------------------------------------------


def build_server(
    docker: DockerClient, request: PackRequest, work_dir: Path, log: Log, cancelled: Cancelled
) -> PackResult:
    """The server image: base + doinfer's code + the bundle, tagged by the pack fingerprint.

    `request.inputs["base_image"]` is the base image's tag, from the image step.
    """
    inputs, fingerprint = request.inputs, request.fingerprint
    tag = server_tag(inputs["spec"], inputs["environment"], inputs["server"], fingerprint)
    existing = _image(docker, tag)
    if existing is not None and existing.config.labels.get(FINGERPRINT) == fingerprint:
        log(f"server image {tag} exists")
        return PackResult(image=tag, image_id=existing.id)
    context = Path(tempfile.mkdtemp(prefix="pack-", dir=work_dir))
    try:
        (context / "Dockerfile").write_text(dockerfile("server"))
        shutil.copytree(
            Path(engine.__file__).parent,
            context / "engine",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "images"),
        )
        write_bundle(context / "bundle", inputs, request.artifacts)
        labels = {
            SPEC: inputs["spec"],
            ENVIRONMENT: inputs["environment"],
            SERVER: inputs["server"],
            STEP: f"pack/{inputs['server']}",
            FINGERPRINT: fingerprint,
        }
        labels.update(kubernetes_labels(inputs))
        args = ["-t", tag]
        for name, value in {"BASE_IMAGE": inputs["base_image"], **provenance()}.items():
            args += ["--build-arg", f"{name}={value}"]
        args += [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]
        what = f"building the server image {tag}"
        classic_build(docker, [*args, str(context)], what, log, cancelled)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    with docker_errors(f"inspecting {tag}"):
        image = docker.image.inspect(tag)
    log(f"built {tag} ({image.id[:19]})")
    return PackResult(image=tag, image_id=image.id)


def kubernetes_labels(inputs: dict[str, Any]) -> dict[str, str]:
    """The Kubernetes recommended labels' values, for whoever runs the image."""
    return {
        "app.kubernetes.io/name": inputs["server"],
        "app.kubernetes.io/instance": "-".join(
            (inputs["spec"], inputs["environment"], inputs["server"])
        ),
        "app.kubernetes.io/version": engine.__version__,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": inputs["spec"],
        "app.kubernetes.io/managed-by": "doinfer",
    }


def provenance() -> dict[str, str]:
    """The OCI labels' build arguments: doinfer's version, the commit its code comes from
    (when it runs from a git checkout), where that source lives, and when the image is built.
    They label the image only: its tag is the pack fingerprint, whatever the time."""
    package = Path(engine.__file__).parent

    def git(*args: str) -> str:
        try:
            result = subprocess.run(
                ["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return result.stdout.strip() if result.returncode == 0 else ""

    return {
        "DOINFER_VERSION": engine.__version__,
        "DOINFER_REVISION": git("rev-parse", "HEAD") or "unknown",
        "DOINFER_SOURCE": git("config", "--get", "remote.origin.url") or PYPI_PAGE,
        "CREATED": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def remove_image(docker: DockerClient, reference: str, log: Log) -> None:
    """Remove one tag; the image goes with its last tag (a running container keeps it)."""
    try:
        docker.image.remove(reference)
        log(f"removed image {reference}")
    except whales_errors().NoSuchImage:
        pass
    except whales_errors().DockerException as exc:
        log(f"kept image {reference}: {reason(exc)}")


def prune_server_images(
    docker: DockerClient, spec: str, environment: str, server: str, keep: set[str], log: Log
) -> None:
    """Remove a server's older images that no container runs (kept: `keep`, by id)."""
    with docker_errors("listing images"):
        images = docker.image.list(
            filters=labels_filter(**{SPEC: spec, ENVIRONMENT: environment, SERVER: server})
        )
        in_use = {c.image for c in docker.container.list(all=True, filters=[("label", LABEL)])}
    for image in images:
        if image.id in keep or image.id in in_use:
            continue
        for tag in image.repo_tags:
            remove_image(docker, tag, log)


# -- registry ---------------------------------------------------------------------------


def push(docker: DockerClient, inputs: dict[str, Any], image: str, log: Log) -> PushResult:
    """Tag the server image for the registry, log in where doinfer knows how, push."""
    reference = registry_reference(inputs["registry"], image)
    _login(docker, registry_host(reference), log)
    with docker_errors(f"pushing {reference}"):
        docker.image.tag(image, reference)
        log(f"pushing {reference}")
        docker.image.push(reference, quiet=True)
        pushed = docker.image.inspect(reference)
    repository = reference.rsplit(":", 1)[0]
    digest = next((d for d in pushed.repo_digests if d.startswith(f"{repository}@")), None)
    if digest is None:
        raise StepFailed(f"pushed {reference}, but the registry returned no digest for it")
    log(f"pushed {digest}")
    return PushResult(reference, digest, pushed.id)


def push_drift(docker: DockerClient, reference: str) -> list[str]:
    """Ask the registry whether the pushed manifest is still there."""
    command = [*docker_command(docker), "manifest", "inspect"]
    if is_loopback(registry_host(reference)):
        command.append("--insecure")  # the engine, too, speaks plain HTTP to loopback
    from python_on_whales.utils import run as run_docker

    try:
        run_docker([*command, reference])
    except whales_errors().DockerException as exc:
        detail = reason(exc)
        if "no such manifest" in detail or "not found" in detail.lower():
            return [f"{reference} is no longer in the registry"]
        return [f"cannot check {reference} in the registry ({detail})"]
    return []


def _login(docker: DockerClient, host: str, log: Log) -> None:
    """ECR needs a token from the AWS CLI; other registries use docker's credential helpers."""
    match = ECR.match(host)
    if not match:
        return
    region = match.group(1)
    try:
        password = subprocess.run(
            ["aws", "ecr", "get-login-password", "--region", region],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    except FileNotFoundError:
        raise StepFailed(
            f"pushing to the ECR registry {host} needs the AWS CLI (aws ecr get-login-password)"
        ) from None
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "").strip().splitlines()
        raise StepFailed(
            f"cannot get an ECR login for {host}: {detail[-1] if detail else exc}"
        ) from None
    with docker_errors(f"logging in to {host}"):
        docker.login(server=host, username="AWS", password=password)
    log(f"logged in to {host}")
