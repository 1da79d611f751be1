"""What the runtimes need of this machine: a Docker engine, a Kubernetes context.

Each check says what it found, and never changes anything. The kube context is read from
the kubeconfig files alone; the cluster is contacted only when asked (`contact`).
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from engine.doctor import Check
from engine.errors import DoinferError


def docker_check(contact: bool = False) -> Check:
    from engine.runtimes.docker_engine import check_daemon, client

    docker = client()
    try:
        check_daemon(docker)
        version = docker.version().server.version  # type: ignore[union-attr]
    except DoinferError as exc:
        return Check("docker engine", False, str(exc))
    except Exception as exc:  # an unexpected answer: say it, do not crash the report
        return Check("docker engine", False, f"unexpected answer: {exc}")
    host = os.environ.get("DOCKER_HOST", "the default socket")
    return Check("docker engine", True, f"Docker {version} reachable at {host}")


def kube_check(contact: bool = False) -> Check:
    """The current context of KUBECONFIG (or ~/.kube/config) and its API server; with
    `contact`, whether that server accepts a TCP connection."""
    paths = kubeconfig_paths()
    configs = [_read_yaml(p) for p in paths if p.is_file()]
    if not configs:
        shown = os.pathsep.join(str(p) for p in paths)
        return Check("kube context", False, f"no kubeconfig ({shown})")
    current = next((c.get("current-context") for c in configs if c.get("current-context")), None)
    if not current:
        return Check("kube context", False, "the kubeconfig sets no current-context")
    context = _named(configs, "contexts", current).get("context", {})
    cluster = _named(configs, "clusters", context.get("cluster", "")).get("cluster", {})
    server = cluster.get("server", "")
    detail = f"context {current}, cluster {context.get('cluster', '?')} at {server or '?'}"
    if context.get("namespace"):
        detail += f", namespace {context['namespace']}"
    if not contact:
        return Check("kube context", True, detail + " (not contacted; --contact to try)")
    reachable, why = _tcp_reachable(server)
    return Check("kube context", reachable, f"{detail}: {why}")


def kubeconfig_paths() -> list[Path]:
    """KUBECONFIG's files, in order (kubectl merges them; the first current-context wins)."""
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return [Path(p).expanduser() for p in listed] or [Path.home() / ".kube" / "config"]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _named(configs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for config in configs:
        for entry in config.get(kind) or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                return entry
    return {}


def _tcp_reachable(server: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    url = urllib.parse.urlparse(server)
    if not url.hostname:
        return False, "no API server address"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return True, "API server accepts connections"
    except OSError as exc:
        return False, f"API server unreachable ({exc})"


def runtime_checks(contact: bool = False) -> list[Check]:
    """What each runtime needs of this machine, and whether it is there."""
    return [check(contact) for check in (docker_check, kube_check)]
