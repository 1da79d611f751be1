"""Files doinfer writes: exact modes whatever the umask; leftovers of dead writers swept."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.files import (
    PRIVATE_FILE,
    SHARED_FILE,
    share_tree,
    sweep_temps,
    temp_path,
    write_atomically,
)
from engine.sources import hash_directory


@pytest.fixture
def strict_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_write_atomically_sets_the_mode_it_is_given(tmp_path: Path, strict_umask) -> None:
    shared, private = tmp_path / "cache.json", tmp_path / "secret.json"
    write_atomically(shared, b"{}", SHARED_FILE)
    assert (shared.read_bytes(), mode(shared)) == (b"{}", 0o644)
    os.umask(0)
    write_atomically(private, b"{}", PRIVATE_FILE)
    assert mode(private) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json", "secret.json"]


def test_the_directory_hash_cache_is_readable_by_all(tmp_path: Path, strict_umask) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    hash_directory(tmp_path / "model", tmp_path / "cache")
    assert mode(tmp_path / "cache" / "dirhash.json") == 0o644


def test_a_read_only_cache_directory_only_costs_the_cache(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "file").write_text("")
    first = hash_directory(tmp_path / "model", tmp_path / "file" / "cache")
    assert first == hash_directory(tmp_path / "model", tmp_path / "cache")


def test_share_tree_opens_a_cached_tree_to_readers(tmp_path: Path, strict_umask) -> None:
    root = tmp_path / "artifact"
    (root / "tokenizer").mkdir(parents=True)
    (root / "model.pt").write_bytes(b"x")
    (root / "tokenizer" / "vocab.txt").write_text("a")
    assert mode(root / "model.pt") == 0o600
    share_tree(root)
    assert [mode(p) for p in (root, root / "tokenizer")] == [0o755, 0o755]
    assert [mode(p) for p in (root / "model.pt", root / "tokenizer" / "vocab.txt")] == [
        0o644,
        0o644,
    ]


def test_sweep_removes_the_leftovers_of_dead_writers_only(tmp_path: Path) -> None:
    dead = dead_pid()
    traces = tmp_path / "traces"
    traces.mkdir()
    leftovers = [
        traces / f".abc123.tmp-{dead}",  # a local trace job's (engine/steps/trace_job.py)
        traces / f".abc123.download-{dead}-0a1b2c3d",  # a remote trace's download
        tmp_path / f".dirhash.json.tmp-{dead}-0a1b2c3d",  # write_atomically's
        tmp_path / f".tmp-wheels-{dead}",  # older doinfers' naming
    ]
    for path in leftovers[:2] + leftovers[3:]:
        (path / "sub").mkdir(parents=True)
    leftovers[2].write_text("{")
    live = temp_path(traces / "def456")  # this process's own: still being written
    live.mkdir()
    kept = [traces / "abc123", tmp_path / "dirhash.json", traces / ".hidden"]
    for path in kept:
        path.mkdir()
    assert sorted(sweep_temps(tmp_path)) == sorted(leftovers)
    assert sorted(p for p in tmp_path.rglob("*") if p.parent in (tmp_path, traces)) == sorted(
        [traces, live, *kept]
    )
