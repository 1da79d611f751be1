"""Spec files as a git revision holds them: read with `git cat-file`, never checked out.

`plan --base-ref REF` loads the spec (and every file it extends) at REF through the same
loader as the working tree, so positions in errors name the revision's files.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Literal

from engine.errors import DoinferError


class GitRevision:
    """Files of one revision of the git repository that holds `where`."""

    def __init__(self, revision: str, where: Path) -> None:
        self.revision = revision
        directory = where if where.is_dir() else where.parent
        top = _git(["rev-parse", "--show-toplevel"], directory)
        if top.returncode != 0:
            raise DoinferError(
                f"--base-ref needs a git repository: {directory} is not in one "
                f"({top.stderr.strip()})"
            )
        self.root = Path(top.stdout.strip()).resolve()
        commit = _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], self.root)
        if commit.returncode != 0:
            raise DoinferError(
                f"--base-ref {revision}: no such revision in {self.root} "
                f"(in CI, fetch it first: git fetch origin main)"
            )
        self.commit = commit.stdout.strip()

    def relative(self, path: Path) -> str:
        """A path as the repository names it (`specs/qa/base.yaml`)."""
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            raise DoinferError(f"{path} is outside the git repository {self.root}") from None

    def kind(self, path: Path) -> Literal["file", "dir"] | None:
        found = _git(["cat-file", "-t", f"{self.commit}:{self.relative(path)}"], self.root)
        if found.returncode != 0:
            return None
        return {"blob": "file", "tree": "dir"}.get(found.stdout.strip())  # type: ignore[return-value]

    def read(self, path: Path) -> bytes:
        kind = self.kind(path)
        if kind is None:
            raise FileNotFoundError(path)
        if kind == "dir":
            raise IsADirectoryError(path)
        blob = subprocess.run(
            ["git", "cat-file", "blob", f"{self.commit}:{self.relative(path)}"],
            cwd=self.root,
            capture_output=True,
            check=False,
        )
        if blob.returncode != 0:
            raise OSError(blob.stderr.decode(errors="replace").strip())
        return blob.stdout

    def list_dir(self, path: Path) -> list[str]:
        """The names in a directory at this revision ([] when it has no such directory)."""
        if self.kind(path) != "dir":
            return []
        listing = _git(
            ["ls-tree", "--name-only", self.commit, f"{self.relative(path)}/"], self.root
        )
        return [Path(line).name for line in listing.stdout.splitlines()]


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise DoinferError("--base-ref needs the git command, and it is not installed") from None
