"""Files doinfer writes: whole or not at all, with the mode they need whatever the umask,
and the temporary files an apply killed with `kill -9` left behind removed on the next run.

A temporary file or directory is a hidden sibling of what it becomes, named after the
process that writes it (`.NAME.tmp-PID-RANDOM`): a leftover is one whose process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path

PRIVATE_FILE = 0o600  # state and anything holding secrets
SHARED_FILE = 0o644  # caches: readable by whoever runs the servers
SHARED_DIR = 0o755

# `.NAME.tmp-PID[-HEX]` and `.NAME.download-PID-HEX` (now), `.tmp-NAME-PID` (older doinfers)
TEMP_NAME = re.compile(
    r"^\.(?:.+\.(?:tmp|download)-(?P<pid>\d+)(?:-[0-9a-f]+)?|tmp-.+-(?P<old_pid>\d+))$"
)


def temp_path(final: Path) -> Path:
    """Where to build `final` before renaming it into place."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data`, its mode exactly `mode` (the umask does not apply)."""
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def share_tree(root: Path) -> None:
    """Give a cached tree the modes a cache needs, whatever the umask it was written under."""
    os.chmod(root, SHARED_DIR)
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(directory, name), SHARED_DIR)
        for name in files:
            os.chmod(os.path.join(directory, name), SHARED_FILE)


def sweep_temps(root: Path, depth: int = 2) -> list[Path]:
    """Remove the leftover temporary files under `root` (its entries, their entries, ...
    down to `depth`) whose writing process no longer runs. What was removed."""
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_NAME.match(entry.name)
        if match:
            if not _running(int(match["pid"] or match["old_pid"])):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
                removed.append(entry)
        elif depth > 1 and entry.is_dir() and not entry.is_symlink():
            removed += sweep_temps(entry, depth - 1)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
