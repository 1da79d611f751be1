"""Hosts that cannot be used: each fails fast, by name, saying what to do (real sshd)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.remote.connect import RemoteError
from engine.remote.hosts import RemoteHost
from tests import sshd

from .conftest import Lines, apply_trace, trace_inputs, trace_step

pytestmark = pytest.mark.integration


def fail(settings: dict, tmp_path: Path) -> tuple[str, Lines, float]:
    log = Lines()
    started = time.monotonic()
    with pytest.raises(RemoteError) as failed:
        apply_trace(trace_step(trace_inputs("m", str(tmp_path)), settings), tmp_path, log)
    return str(failed.value), log, time.monotonic() - started


def test_an_unknown_host_key_says_how_to_add_it(server: sshd.SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    settings = server.host_settings("gpu-a", "gpu", known_hosts=str(empty))
    logins = server.logins()
    message, _, _ = fail(settings, tmp_path)
    label = RemoteHost.from_settings(settings).label
    assert message.startswith(f"host {label}: its host key is not in {empty} (it offers ")
    assert f"then add it: `ssh-keyscan -p {server.port} 127.0.0.1 >> {empty}`" in message
    assert server.logins() == logins


def test_a_changed_host_key_is_refused(server: sshd.SshServer, tmp_path: Path) -> None:
    other_key = sshd.keygen(tmp_path / "other_host_key")
    stale = tmp_path / "known_hosts"
    stale.write_text(f"[127.0.0.1]:{server.port} {other_key}\n")
    logins = server.logins()
    message, _, _ = fail(server.host_settings("gpu-a", "gpu", known_hosts=str(stale)), tmp_path)
    assert "its host key does not match the one recorded in" in message
    assert f"`ssh-keygen -R '[127.0.0.1]:{server.port}' -f {stale}`" in message
    assert "someone may be intercepting" in message
    assert server.logins() == logins  # never logged in to a host it could not verify


def test_a_missing_known_hosts_file_is_an_error(server: sshd.SshServer, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "known_hosts"
    message, _, _ = fail(server.host_settings("gpu-a", "gpu", known_hosts=str(missing)), tmp_path)
    assert f"known_hosts file {missing} does not exist; host keys are always verified" in message


def test_a_key_the_host_does_not_accept_is_refused_without_prompting(
    server: sshd.SshServer, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    sshd.keygen(stranger)
    message, log, took = fail(
        server.host_settings("gpu-a", "gpu", identity=str(stranger), connect_attempts=3),
        tmp_path,
    )
    assert "login refused" in message and "never passwords" in message
    assert "retrying" not in log.text and took < 5  # a refusal is not retried


def test_a_refusing_host_is_retried_with_backoff_then_named(tmp_path: Path) -> None:
    port = sshd.free_port()  # nothing listens there
    settings = {
        "name": "gpu-down",
        "address": "127.0.0.1",
        "port": port,
        "user": "root",
        "known_hosts": str(tmp_path / "known_hosts"),
        "connect_timeout_s": 2.0,
        "connect_attempts": 3,
    }
    (tmp_path / "known_hosts").write_text("")
    message, log, took = fail(settings, tmp_path)
    assert message == (
        f"cannot reach host gpu-down (root@127.0.0.1:{port}) after 3 attempt(s): "
        f"connection refused (is sshd running, on that port?)"
    )
    retries = [line for line in log.lines if line.startswith("cannot reach host")]
    assert [line.rsplit(", ", 1)[1] for line in retries] == ["retrying in 1s", "retrying in 2s"]
    assert 3 <= took < 6  # waits of 1 s then 2 s, and refusals are instant
