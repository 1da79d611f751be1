"""What this machine can run, and which versions it runs: for `doinfer doctor` and
`doinfer --version`. Nothing here changes anything; versions are read from the installed
packages' metadata, so no torch is imported to name its version."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass

import engine
from engine import system
from engine.devices import LOCAL_DEVICES
from engine.versions import library_versions


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def versions() -> dict[str, str]:
    """doinfer's version and those of the libraries a trace depends on."""
    return {"doinfer": engine.__version__, **library_versions()}


def machine_checks() -> list[Check]:
    """The SSH agent (remote traces), local accelerators and the CPU's bf16 support."""
    return [ssh_agent_check(), gpu_check(), neuron_check(), cpu_check()]


def ssh_agent_check() -> Check:
    where = os.environ.get("SSH_AUTH_SOCK")
    if not where:
        return Check("ssh agent", False, "SSH_AUTH_SOCK is not set (hosts' identity files work)")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(where)
    except OSError as exc:
        return Check("ssh agent", False, f"SSH_AUTH_SOCK={where} does not answer ({exc})")
    return Check("ssh agent", True, f"agent at {where}")


def gpu_check() -> Check:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        present = os.path.exists(LOCAL_DEVICES["gpu"])
        detail = f"{LOCAL_DEVICES['gpu']} present, no nvidia-smi" if present else "none found"
        return Check("gpu", present, detail)
    try:
        result = subprocess.run(
            [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("gpu", False, f"nvidia-smi failed: {exc}")
    names = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not names:
        return Check("gpu", False, f"nvidia-smi: {result.stderr.strip() or 'no GPU listed'}")
    return Check("gpu", True, "; ".join(names))


def neuron_check() -> Check:
    devices = sorted(glob.glob("/dev/neuron*"))
    if not devices:
        return Check("inferentia", False, "no /dev/neuron* device")
    return Check("inferentia", True, f"{len(devices)} Neuron device(s): {', '.join(devices)}")


def cpu_check() -> Check:
    """Whether the CPU computes bf16 natively (AVX512-BF16, AMX on x86; BF16 on Arm)."""
    flags = system.cpu_flags()
    cores = f"{system.usable_cpus()} usable core(s)"
    if flags is None:
        return Check("cpu", True, f"{cores}; bf16 support unknown on this system")
    native = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "bf16"})
    if native:
        return Check("cpu", True, f"{cores}; native bf16: {', '.join(native)}")
    return Check("cpu", True, f"{cores}; no native bf16 (bf16 runs emulated, slower)")
