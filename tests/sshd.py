"""A real OpenSSH server for tests: the stand-in for a GPU or Inferentia trace host.

    with ssh_server(directory) as server:       # 127.0.0.1, a free port
        server.host_settings("gpu-a", "gpu")     # a spec host's settings for it

starts `sshd -D -e -f CONFIG` with a host key, a client key and an authorized_keys file
made for the test, and waits for its banner. It is an honest stand-in for an accelerator
host, with one declared difference: its sessions get DOINFER_TEST_ONLY_DEVICE=cpu (sshd's
SetEnv), so the trace script traces a gpu or inf model on the cpu (and HF_HUB_OFFLINE=1:
the Hub is out of reach here, so a download fails at once). Everything else (keys, SFTP,
the remote command, its output and exit status) is the real thing.

`skip_reason()` says why sshd cannot run here (tests then skip, printing it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
BANNER_TIMEOUT_S = 10.0


@dataclass
class SshServer:
    address: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    client_key: Path
    known_hosts: Path  # holds this server's host key, as a user's known_hosts would
    log: Path

    def host_settings(self, name: str, processor: str, **extra: Any) -> dict[str, Any]:
        """The settings of a spec host for this server, as a step's runs_on holds them."""
        return {
            "name": name,
            "address": self.address,
            "port": self.port,
            "processor": processor,
            "user": os.environ.get("USER") or _user(),
            "identity": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "python": sys.executable,
            "max_parallel": 1,
            "connect_timeout_s": 5.0,
            "connect_attempts": 2,
            "trace_timeout_s": 300.0,
            **extra,
        }

    def logins(self) -> int:
        """Sessions sshd accepted so far (a second apply must open none)."""
        return self.log.read_text(errors="replace").count("Accepted publickey")


def skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "sshd tests run on Linux only"
    if not Path(SSHD).is_file():
        return f"no OpenSSH server at {SSHD} (apt-get install openssh-server)"
    if not shutil.which("ssh-keygen"):
        return "no ssh-keygen (apt-get install openssh-client)"
    return None


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "doinfer-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_suffix(".pub").read_text().strip()


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def ssh_server(
    directory: Path,
    address: str = "127.0.0.1",
    port: int | None = None,
    netns: str | None = None,
    client_key: Path | None = None,
) -> Iterator[SshServer]:
    """A running sshd; stopped (and reaped) when the block ends, even on failure."""
    directory.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    host_key = directory / "host_key"
    host_pub = keygen(host_key)
    if client_key is None:
        client_key = directory / "client_key"
        keygen(client_key)
    (directory / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    port = port or free_port(address)
    pattern = address if port == 22 else f"[{address}]:{port}"
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"{pattern} {host_pub}\n")
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress {address}\n"
        f"Port {port}\n"
        f"HostKey {host_key}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "PidFile none\n"
        "UsePAM no\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "StrictModes no\n"
        "Subsystem sftp internal-sftp\n"
        "LogLevel VERBOSE\n"
        # the declared difference from a real accelerator host, see the module docstring
        "SetEnv DOINFER_TEST_ONLY_DEVICE=cpu HF_HUB_OFFLINE=1\n"
        # notice a vanished client within ~3 s, as a trace host should be configured
        "ClientAliveInterval 1\n"
        "ClientAliveCountMax 2\n"
    )
    log = directory / "sshd.log"
    command = [SSHD, "-D", "-e", "-f", str(config)]
    if netns:
        command = ["ip", "netns", "exec", netns, *command]
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=log_file)
    try:
        wait_for_banner(address, port, process, log)
        yield SshServer(address, port, directory, process, client_key, known_hosts, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_banner(address: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """sshd is up when it says `SSH-2.0-...`, not merely when the port is open."""
    deadline = time.monotonic() + BANNER_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited ({process.returncode}): {log.read_text()}")
        try:
            with socket.create_connection((address, port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"sshd did not answer on {address}:{port}: {log.read_text()}")


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
