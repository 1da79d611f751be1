"""Files on a connected host, over SFTP: no shell is involved, so no path is ever parsed.

A work directory is made fresh for each job (a random name, created exclusively, mode
0700), and removed afterwards whatever happened.
"""

from __future__ import annotations

import fnmatch
import posixpath
import secrets
from pathlib import Path

import asyncssh

WORK_ROOT = "/tmp"


async def make_workdir(sftp: asyncssh.SFTPClient, prefix: str = "doinfer-") -> str:
    """A new, private directory under /tmp; mkdir fails rather than reuse one."""
    for _ in range(5):
        path = posixpath.join(WORK_ROOT, f"{prefix}{secrets.token_hex(8)}")
        try:
            await sftp.mkdir(path, asyncssh.SFTPAttrs(permissions=0o700))
            return path
        except asyncssh.SFTPFailure:  # taken (vanishingly unlikely): draw another name
            continue
    raise asyncssh.SFTPFailure(f"cannot make a work directory under {WORK_ROOT}")


async def upload(sftp: asyncssh.SFTPClient, local: Path, remote: str) -> None:
    """A file, or a directory with everything under it, to `remote` (which must not exist)."""
    await sftp.put(str(local), remote, recurse=local.is_dir())


async def download(sftp: asyncssh.SFTPClient, remote: str, local: Path) -> None:
    """A directory with everything under it to `local` (which must not exist)."""
    await sftp.get(remote, str(local), recurse=True)


async def download_matching(
    sftp: asyncssh.SFTPClient, remote: str, local: Path, patterns: tuple[str, ...], limit: int
) -> list[Path]:
    """Files under `remote` whose name matches a pattern and whose size is at most
    `limit`, to the same relative places under `local` (e.g. a compiler's logs)."""
    fetched: list[Path] = []
    pending = [remote]
    while pending:
        directory = pending.pop()
        try:
            entries = [e async for e in sftp.scandir(directory)]
        except asyncssh.SFTPError:
            continue
        for entry in entries:
            name = str(entry.filename)
            if name in (".", ".."):
                continue
            path = posixpath.join(directory, name)
            if entry.attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                pending.append(path)
            elif (entry.attrs.size or 0) <= limit and any(
                fnmatch.fnmatch(name, p) for p in patterns
            ):
                target = local / posixpath.relpath(path, remote)
                target.parent.mkdir(parents=True, exist_ok=True)
                await sftp.get(path, str(target))
                fetched.append(target)
    return fetched


async def remove(sftp: asyncssh.SFTPClient, remote: str) -> None:
    await sftp.rmtree(remote, ignore_errors=True)
