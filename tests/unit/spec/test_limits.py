"""Hostile spec files: the loader refuses them quickly, with a clear message and no traceback.

The ones that hung or exhausted memory before (nested aliases, /dev/zero, a FIFO) run in a
real `doinfer validate` subprocess with a timeout, so a regression fails instead of hanging.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.spec import load_spec
from engine.spec.overlay import MAX_EXTENDS_DEPTH, MAX_SPEC_BYTES_ENV
from engine.spec.yaml_nodes import MAX_ALIASES, MAX_DEPTH, MAX_VALUES

from .conftest import VALID, errors_of

ROOT = Path(__file__).resolve().parents[3]


def validate(path: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`doinfer validate PATH` in a subprocess; a hang is a TimeoutExpired, so a failure."""
    return subprocess.run(
        [sys.executable, "-m", "engine", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def laughs(levels: int, fanout: int) -> str:
    """'Billion laughs': each level a list of `fanout` aliases of the level before."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * fanout)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fanout)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_billion_laughs_stops_at_the_value_limit(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs(9, 9))  # 81 alias uses, under the alias limit; 9**10 values
    started = time.monotonic()
    done = validate(path, timeout=15)
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    assert f"more than {MAX_VALUES:,} values once YAML aliases are expanded" in done.stderr
    assert "Traceback" not in done.stderr


def test_too_many_aliases(tmp_path: Path) -> None:
    items = ", ".join(["*a"] * (MAX_ALIASES + 1))
    path = tmp_path / "aliases.yaml"
    path.write_text(f"x: &a {{k: [1, 2]}}\ny: [{items}]\n")
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:1:4: error: more than {MAX_ALIASES} uses of YAML aliases")


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    text = VALID.replace("runtime: {kind: local}", "runtime: &rt {kind: local}")
    path.write_text(text + "x-unused: *rt\n")
    assert "x-unused: unknown key" in errors_of(path)[0]  # the alias resolved, no limit hit


def test_deep_nesting_is_an_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 900 + "]" * 900 + "\n")
    (error,) = errors_of(path)
    assert f"nested more than {MAX_DEPTH} levels deep" in error


def test_dev_zero_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    done = validate(link)
    assert done.returncode == 1
    assert f"{link}:1:1: error: is not a regular file" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    done = validate(fifo, timeout=20)
    assert done.returncode == 1
    assert f"{fifo}:1:1: error: is not a regular file" in done.stderr


def test_a_file_over_the_size_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(VALID + "# " + "x" * 2000 + "\n")
    monkeypatch.setenv(MAX_SPEC_BYTES_ENV, "1000")
    (error,) = errors_of(path)
    assert error == (
        f"{path}:1:1: error: larger than 1,000 bytes, the most a spec file may be "
        f"(set {MAX_SPEC_BYTES_ENV} to allow more)"
    )
    monkeypatch.setenv(MAX_SPEC_BYTES_ENV, "100000")
    (tmp_path / "tiny").mkdir()
    assert load_spec(path).name == "demo"
    monkeypatch.setenv(MAX_SPEC_BYTES_ENV, "lots")
    assert "expected a positive number of bytes, not 'lots'" in errors_of(path)[0]


def test_the_default_size_limit_refuses_a_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as f:
        f.write(VALID)
        f.truncate(9 * 1024 * 1024)  # sparse: 9 MiB of NULs after the spec
    assert "larger than 8,388,608 bytes" in errors_of(path)[0]


def test_extends_diamonds_load_each_file_once(tmp_path: Path) -> None:
    """Each level extends four files that all extend the next: 4**8 paths, 41 files."""
    levels = 8
    (tmp_path / "base0.yaml").write_text(VALID)
    (tmp_path / "tiny").mkdir()
    for i in range(1, levels + 1):
        for side in "abcd":
            (tmp_path / f"{side}{i}.yaml").write_text(f"extends: base{i - 1}.yaml\n")
        sides = ", ".join(f"{side}{i}.yaml" for side in "abcd")
        (tmp_path / f"base{i}.yaml").write_text(f"extends: [{sides}]\n")
    started = time.monotonic()
    spec = load_spec(tmp_path / f"base{levels}.yaml")
    assert spec.name == "demo"
    assert time.monotonic() - started < 5


def test_a_diamond_base_with_an_error_reports_it_once(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: [\n")
    (tmp_path / "a.yaml").write_text("extends: bad.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: bad.yaml\n")
    top = tmp_path / "top.yaml"
    top.write_text("extends: [a.yaml, b.yaml]\n" + VALID)
    (error,) = errors_of(top)
    assert error.startswith(f"{tmp_path / 'bad.yaml'}:2:1: error: invalid YAML")


def test_a_long_extends_chain_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "s0.yaml").write_text(VALID)
    for i in range(1, 1500):
        (tmp_path / f"s{i}.yaml").write_text(f"extends: s{i - 1}.yaml\n")
    top = tmp_path / "s1499.yaml"
    (error,) = errors_of(top)
    assert f"more than {MAX_EXTENDS_DEPTH} files in one chain of extends" in error
    assert "from s1499.yaml" in error


def test_a_chain_within_the_bound_loads(tmp_path: Path) -> None:
    (tmp_path / "s0.yaml").write_text(VALID)
    (tmp_path / "tiny").mkdir()
    for i in range(1, MAX_EXTENDS_DEPTH):
        (tmp_path / f"s{i}.yaml").write_text(f"extends: s{i - 1}.yaml\n")
    assert load_spec(tmp_path / f"s{MAX_EXTENDS_DEPTH - 1}.yaml").name == "demo"


def test_extending_a_file_that_is_not_a_spec_does_not_show_its_content(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text(
        "root:$6$s3cr3tsalt$hash:19000:0:99999:7:::\n"
        "daemon:*:19000:0:99999:7:::\n"
        "2024-01-01: duplicated\n2024-01-01: duplicated\n"
    )
    top = tmp_path / "s.yaml"
    top.write_text(f"extends: {secret}\n" + VALID)
    errors = errors_of(top)
    assert errors == [
        f"{top}:1:10: error: extends: {secret} is not a doinfer spec (none of its keys is a spec's)"
    ]
    assert "s3cr3t" not in "\n".join(errors) and "daemon" not in "\n".join(errors)
