"""A remote host's connection settings, as a step records them (plain data, no asyncssh)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


@dataclass(frozen=True)
class RemoteHost:
    name: str
    address: str
    port: int = 22
    user: str | None = None  # None: the local user's name, as ssh does
    identity: str | None = None  # None: the default keys in ~/.ssh and the ssh-agent
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    connect_timeout_s: float = 10.0
    connect_attempts: int = 3

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> RemoteHost:
        """From a spec host's settings (extra keys, such as python, are not ours)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})

    @property
    def label(self) -> str:
        """How messages and plans name the host: `gpu-a (ec2-user@10.0.0.7:22)`."""
        user = f"{self.user}@" if self.user else ""
        return f"{self.name} ({user}{self.address}:{self.port})"

    @property
    def known_hosts_file(self) -> Path:
        return Path(os.path.expanduser(self.known_hosts or DEFAULT_KNOWN_HOSTS))

    @property
    def known_hosts_pattern(self) -> str:
        """The host as known_hosts names it: `addr`, or `[addr]:port` off port 22."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"
