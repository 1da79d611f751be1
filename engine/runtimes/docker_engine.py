"""The Docker engine as doinfer reaches it: a python-on-whales client, the labels doinfer
puts on what it creates, and Docker's errors turned into messages a user can act on.

The client honours DOCKER_HOST and docker contexts as the docker command does. Builds
use the classic builder (DOCKER_BUILDKIT=0): it needs no BuildKit daemon or buildx plugin,
which plain engines (Debian's docker.io) lack.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from engine.errors import DoinferError, StepFailed
from engine.runtimes.streams import run_streaming

LABEL = "io.doinfer"  # prefix of every label doinfer sets
SPEC, ENVIRONMENT, SERVER = f"{LABEL}.spec", f"{LABEL}.environment", f"{LABEL}.server"
STEP, FINGERPRINT, REPLICA, ROLE = (
    f"{LABEL}.step",
    f"{LABEL}.fingerprint",
    f"{LABEL}.replica",
    f"{LABEL}.role",
)


if TYPE_CHECKING:
    from python_on_whales import DockerClient
    from python_on_whales.exceptions import DockerException


class DaemonUnavailable(DoinferError):
    """No Docker engine answers: nothing was changed."""


def client() -> DockerClient:
    from python_on_whales import DockerClient

    return DockerClient()


def whales_errors() -> ModuleType:
    """python-on-whales' exceptions, imported when the engine is first used: importing
    python-on-whales takes a tenth of a second, and a plan never talks to the engine.
    (`except whales_errors().NoSuchContainer:` looks the class up only on an error.)"""
    from python_on_whales import exceptions

    return exceptions


def labels_filter(**labels: str) -> list[tuple[str, str]]:
    return [("label", f"{k}={v}") for k, v in labels.items()]


def reason(exc: DockerException) -> str:
    """The line of Docker's output that says what went wrong."""
    text = (exc.stderr or "") + "\n" + (exc.stdout or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "Error response from daemon:" in line:
            return line.split("Error response from daemon:", 1)[1].strip()
    for line in lines:
        if not line.startswith(("DEPRECATED", "BuildKit", "Install the buildx", "WARNING")):
            return line
    return f"docker exited with code {exc.return_code}"


def unavailable_message(detail: str) -> str | None:
    """A message for a daemon that is not there, or None when `detail` is another error."""
    if "Cannot connect to the Docker daemon" in detail or "docker daemon is not running" in detail:
        return (
            f"the Docker daemon is not reachable ({detail.rstrip('.')}). Start it (`dockerd`, or "
            f"`systemctl start docker`) or point DOCKER_HOST at one; nothing was changed"
        )
    if "permission denied" in detail and "docker.sock" in detail:
        return (
            f"no permission to use the Docker daemon ({detail}): join the docker group or "
            f"run as root; nothing was changed"
        )
    return None


@contextlib.contextmanager
def docker_errors(what: str) -> Iterator[None]:
    """Turn Docker's exceptions into DoinferError (StepFailed) with `what` as the subject."""
    from python_on_whales.client_config import ClientNotFoundError

    try:
        yield
    except ClientNotFoundError:
        raise DaemonUnavailable(
            "the docker command is not installed (the Docker runtime drives the Docker engine "
            "through it): install Docker, e.g. `apt-get install docker.io`"
        ) from None
    except whales_errors().DockerException as exc:
        detail = reason(exc)
        message = unavailable_message(detail)
        if message:
            raise DaemonUnavailable(message) from None
        raise StepFailed(f"{what}: {detail}") from None


def check_daemon(docker: DockerClient) -> None:
    """Raise DaemonUnavailable unless a Docker engine answers."""
    with docker_errors("cannot reach the Docker engine"):
        docker.system.info()


def docker_command(docker: DockerClient) -> list[str]:
    """The docker command line python-on-whales runs (binary, host and context options)."""
    return [str(part) for part in docker.docker_cmd]


def classic_build(
    docker: DockerClient,
    args: Sequence[str],
    what: str,
    log: Callable[[str], None],
    cancelled: Callable[[], bool],
) -> None:
    """`docker build ARGS` with the classic builder, its output streamed to `log`.

    python-on-whales' legacy_build prints to stdout or stays silent; a build of minutes
    needs its progress in the step's log, so the command is run here.
    """
    # --force-rm: a failed step's container goes too (by default only successful ones do)
    command = [*docker_command(docker), "build", "--force-rm", *args]
    code, tail = run_streaming(command, log, cancelled, env={"DOCKER_BUILDKIT": "0"})
    if code == 0:
        return
    text = "\n".join(tail)
    message = unavailable_message(text)
    if message:
        raise DaemonUnavailable(message)
    failed = next(
        (line for line in reversed(tail) if re.search(r"returned a non-zero code|^ERROR", line)),
        None,
    ) or next((line for line in reversed(tail) if "rror" in line), tail[-1] if tail else "")
    raise StepFailed(f"{what} failed: {failed.strip()}", text)
