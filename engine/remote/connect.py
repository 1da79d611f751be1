"""Log in to a remote host over SSH, safely and patiently.

Host keys are always verified against a known_hosts file (an unknown or changed key is an
error that says how to add or replace it); the agent is never forwarded; passwords and
keyboard-interactive prompts are off, as is ~/.ssh/config (the spec says everything). A
host that cannot be reached is tried `connect_attempts` times, the wait between attempts
doubling from `first_wait_s`, and then fails with a message naming it.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from pathlib import Path

import asyncssh

from engine.errors import DoinferError
from engine.remote.hosts import RemoteHost

Log = Callable[[str], None]
KEEPALIVE_COUNT = 3  # unanswered keepalives, connect_timeout_s / 3 apart, lose a host


class RemoteError(DoinferError):
    """A remote host could not be used; the message names the host and what to do."""


async def connect(
    host: RemoteHost, log: Log, first_wait_s: float = 1.0
) -> asyncssh.SSHClientConnection:
    known_hosts = host.known_hosts_file
    if not known_hosts.is_file():
        raise RemoteError(
            f"host {host.label}: known_hosts file {known_hosts} does not exist; host keys are "
            f"always verified. {_how_to_add(host, known_hosts)}"
        )
    if host.identity and not Path(host.identity).is_file():
        raise RemoteError(f"host {host.label}: identity file {host.identity} does not exist")
    wait = first_wait_s
    reason = ""
    for attempt in range(1, host.connect_attempts + 1):
        try:
            return await asyncssh.connect(
                host.address,
                host.port,
                username=host.user or (),
                known_hosts=str(known_hosts),
                client_keys=[host.identity] if host.identity else (),
                agent_path=None if host.identity else (),  # an identity means only that key
                agent_forwarding=False,
                password_auth=False,
                kbdint_auth=False,
                preferred_auth="publickey",
                config=None,
                connect_timeout=host.connect_timeout_s,
                keepalive_interval=host.connect_timeout_s / KEEPALIVE_COUNT,
                keepalive_count_max=KEEPALIVE_COUNT,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise RemoteError(await _host_key_problem(host, known_hosts)) from None
        except asyncssh.PermissionDenied as exc:
            raise RemoteError(
                f"host {host.label}: login refused ({exc.reason}); check user and identity "
                f"(only public-key logins are tried, never passwords)"
            ) from None
        except asyncssh.KeyImportError as exc:
            raise RemoteError(
                f"host {host.label}: cannot use identity {host.identity}: {exc}"
            ) from None
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            reason = describe(exc, host)
        if attempt < host.connect_attempts:
            log(
                f"cannot reach host {host.label}: {reason}; attempt {attempt} of "
                f"{host.connect_attempts}, retrying in {wait:g}s"
            )
            await asyncio.sleep(wait)
            wait *= 2
    raise RemoteError(
        f"cannot reach host {host.label} after {host.connect_attempts} attempt(s): {reason}"
    )


def describe(exc: BaseException, host: RemoteHost) -> str:
    """A short reason for a failed connection or a lost one."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {host.connect_timeout_s:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is sshd running, on that port?)"
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


async def _host_key_problem(host: RemoteHost, known_hosts: Path) -> str:
    """Unknown or changed: which, the key the host offers now, and how to fix it."""
    recorded = asyncssh.read_known_hosts(str(known_hosts)).match(host.address, "", host.port)
    offered = ""
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(host.address, host.port, config=None),
            host.connect_timeout_s,
        )
        if key is not None:
            offered = f" (it offers {key.get_algorithm()} key {key.get_fingerprint()})"
    except (OSError, TimeoutError, asyncssh.Error):
        pass
    if recorded[0] or recorded[1]:
        pattern = shlex.quote(host.known_hosts_pattern)
        return (
            f"host {host.label}: its host key does not match the one recorded in "
            f"{known_hosts}{offered}. If the host was rebuilt, check the new key on the host "
            f"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), remove the old one with "
            f"`ssh-keygen -R {pattern} -f {shlex.quote(str(known_hosts))}` and add the new "
            f"one; otherwise someone may be intercepting the connection"
        )
    return (
        f"host {host.label}: its host key is not in {known_hosts}{offered}. "
        f"{_how_to_add(host, known_hosts)}"
    )


def _how_to_add(host: RemoteHost, known_hosts: Path) -> str:
    return (
        f"Check the key's fingerprint on the host (ssh-keygen -lf "
        f"/etc/ssh/ssh_host_ed25519_key.pub), then add it: `ssh-keyscan -p {host.port} "
        f"{shlex.quote(host.address)} >> {shlex.quote(str(known_hosts))}`"
    )
