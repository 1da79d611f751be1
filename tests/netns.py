"""A second host with its own address: a network namespace joined to this one by a veth pair.

    with network_namespace() as ns:     # ns.address is the host's address, 10.200.N.2
        ... start a server inside with `ip netns exec ns.name ...`
        ns.cut()                         # the host stops answering on port 22

Safety, in this order: a blackhole route for the namespace's /24 (inside 10.200.0.0/16)
exists before the namespace does, so that if the link ever goes away, traffic to the test
address dies here instead of leaving the machine by its default route. A host is cut off
only from inside its namespace (an nft rule dropping port 22), never by touching this
side of the link. Namespace, veth pair and route are removed when the block ends, even on
failure. Each use draws its own /24, so two test runs side by side cannot tear down each
other's route.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

RANGE = "10.200"  # 10.200.0.0/16: test addresses only


@dataclass(frozen=True)
class Namespace:
    name: str
    address: str  # the "host" inside the namespace
    local_address: str  # this side of the veth pair

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return ip("netns", "exec", self.name, *command)

    def cut(self) -> None:
        """The host stops answering SSH: its own firewall drops what arrives on port 22."""
        rules = (
            "table inet doinfer_cut {\n"
            "  chain input { type filter hook input priority 0; tcp dport 22 drop; }\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.name, "nft", "-f", "-"],
            input=rules,
            text=True,
            check=True,
            capture_output=True,
        )

    def pids(self) -> list[int]:
        result = ip("netns", "pids", self.name, check=False)
        return [int(p) for p in result.stdout.split()]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            return f"no {tool} command (apt-get install iproute2 nftables)"
    probe = f"doinfer-probe-{os.getpid()}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@contextlib.contextmanager
def network_namespace() -> Iterator[Namespace]:
    subnet = f"{RANGE}.{random.randrange(1, 255)}"
    tag = f"{os.getpid() % 100000}{random.randrange(100)}"
    ns = Namespace(f"doinfer-test-{tag}", f"{subnet}.2", f"{subnet}.1")
    here, there = f"dt{tag}h", f"dt{tag}n"  # interface names: at most 15 characters
    ip("route", "add", "blackhole", f"{subnet}.0/24")  # first, before anything else exists
    try:
        ip("netns", "add", ns.name)
        ip("link", "add", here, "type", "veth", "peer", "name", there, "netns", ns.name)
        ip("addr", "add", f"{ns.local_address}/30", "dev", here)
        ip("link", "set", here, "up")
        ns.run("ip", "addr", "add", f"{ns.address}/30", "dev", there)
        ns.run("ip", "link", "set", there, "up")
        ns.run("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        for pid in ns.pids():  # whatever still runs in there (an orphaned job, sshd)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        ip("netns", "del", ns.name, check=False)  # takes the veth pair with it
        ip("link", "del", here, check=False)  # in case the namespace never got its end
        ip("route", "del", "blackhole", f"{subnet}.0/24", check=False)
