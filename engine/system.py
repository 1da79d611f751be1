"""What the operating system offers, in one place, with a fallback for each Linux-only API.

doinfer validates, plans, renders and runs local replicas on Linux and macOS. Linux-only
calls (`os.sched_getaffinity`, `prctl`, `/proc`, `fcntl` locks) live here and nowhere else;
processes and CPU counts go through psutil, which knows each system. Each function checks
what is there when it is called, so a test can take an API away and see the fallback run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import resource
import signal
import subprocess
import sys

import psutil

# Linux-only kernel calls (prctl) are made only when this holds; a test may turn it off.
LINUX = sys.platform.startswith("linux")


def usable_cpus() -> int:
    """The cores this process may run on: its affinity where the system has one (Linux),
    else the logical CPUs of the machine (macOS has no affinity)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    with contextlib.suppress(AttributeError, psutil.Error, OSError):
        return max(1, len(psutil.Process().cpu_affinity()))  # type: ignore[attr-defined]
    return max(1, psutil.cpu_count(logical=True) or os.cpu_count() or 1)


def usable_cores() -> list[int]:
    """The cores this process may run on, by number (all of them where there is no
    affinity)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(usable_cpus()))


def pin_to_core(pid: int, core: int) -> bool:
    """Keep a process (and the threads it starts from now on) on one core; False where
    the system has no affinity (macOS)."""
    try:
        psutil.Process(pid).cpu_affinity([core])  # type: ignore[attr-defined]
    except (AttributeError, psutil.Error, OSError, ValueError):
        return False
    return True


def resident_mib(pid: int) -> float:
    """A process's resident memory, in MiB."""
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def cpu_model() -> str:
    """The CPU's name, as the system gives it ("unknown cpu" where it does not)."""
    if LINUX:
        with contextlib.suppress(OSError):
            for line in open("/proc/cpuinfo").read().splitlines():  # noqa: SIM115
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    return platform.processor() or "unknown cpu"


def die_with_parent() -> None:
    """Linux: have the kernel stop this (child) process when its parent dies, so no work is
    orphaned. Elsewhere nothing: the parent's cancellation stops its children instead."""
    if not LINUX:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def process_running(pid: int, *needles: bytes) -> bool:
    """The pid runs, is not a zombie, and (when `needles` are given) its command line holds
    every one of them: a pid reused by another program does not count."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if not needles:
            return True
        cmdline = "\0".join(proc.cmdline()).encode()
    except psutil.AccessDenied:
        return not needles  # it exists, but whose it is cannot be told
    except psutil.Error:
        return False
    return all(needle in cmdline for needle in needles)


def peak_rss_mb() -> float:
    """This process's peak resident memory: Linux counts ru_maxrss in KiB, macOS in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def try_lock(fd: int, path: str) -> bool:
    """Take an exclusive lock on the open file `fd` without waiting; False if another process
    holds it. flock where fcntl exists (Linux, macOS); else an exclusive `<path>.held` file
    naming the holder's pid, taken over when that pid is gone."""
    try:
        import fcntl
    except ImportError:
        return _try_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock(fd: int, path: str) -> None:
    try:
        import fcntl
    except ImportError:
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}.held")
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


def _try_lock_file(path: str) -> bool:
    held = f"{path}.held"
    for _ in range(2):
        try:
            fd = os.open(held, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                with open(held) as file:
                    holder = int(file.read().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and psutil.pid_exists(holder):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.remove(held)  # its holder is gone: take it over
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True
    return False


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (lower case, as Linux names them), or None where they cannot
    be read. Linux: /proc/cpuinfo; macOS: sysctl's Arm feature list."""
    if LINUX:
        try:
            text = open("/proc/cpuinfo").read()  # noqa: SIM115 (read at once)
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return set(value.split())
        return None
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
        except OSError:
            return None
        return {"bf16"} if out == "1" else set()
    return None
