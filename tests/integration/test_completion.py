"""Shell completion as a user's shell runs it: the script `doinfer completion bash` prints is
loaded into a real bash, whose completion function calls the real doinfer with the words
typed so far. zsh and fish are not installed here: their scripts are generated and checked
for the hook that calls doinfer (and syntax-checked when the shell is on PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "local.yaml"

pytestmark = pytest.mark.integration


def completion_script(shell: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "engine", "completion", shell],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return result.stdout


@pytest.fixture(scope="module")
def doinfer_on_path(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose PATH has a `doinfer` that runs this checkout's engine."""
    bin_dir = tmp_path_factory.mktemp("bin")
    launcher = bin_dir / "doinfer"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m engine "$@"\n')
    launcher.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def bash_complete(line: str, env: dict[str, str], tmp_path: Path) -> list[str]:
    """What bash offers at the end of `line`, through the generated script."""
    script = tmp_path / "doinfer.bash"
    script.write_text(completion_script("bash"))
    words = line.split(" ")
    program = f"""
source {script}
complete -p doinfer >&2
COMP_LINE={line!r}
COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=({" ".join(repr(w) for w in words)})
COMP_CWORD={len(words) - 1}
COMP_TYPE=9
_python_argcomplete doinfer "{words[-1]}" "{words[-2]}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=True,
    )
    assert "-F _python_argcomplete doinfer" in result.stderr  # the script registered it
    return [word.strip() for word in result.stdout.splitlines() if word.strip()]


def test_bash_completes_commands_specs_scenarios_and_servers(
    doinfer_on_path: dict[str, str], tmp_path: Path
) -> None:
    assert {"plan", "apply", "bench", "doctor", "completion"} <= set(
        bash_complete("doinfer ", doinfer_on_path, tmp_path)
    )
    assert "specs/local.yaml" in bash_complete("doinfer plan specs/lo", doinfer_on_path, tmp_path)
    scenarios = bash_complete("doinfer bench specs/local.yaml ", doinfer_on_path, tmp_path)
    assert {"smoke", "random", "load"} <= set(scenarios)
    assert bash_complete("doinfer bench specs/local.yaml lo", doinfer_on_path, tmp_path) == ["load"]
    servers = bash_complete("doinfer logs specs/local.yaml ", doinfer_on_path, tmp_path)
    assert servers == ["minilm"]


def test_a_broken_spec_completes_to_nothing_quietly(
    doinfer_on_path: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert bash_complete(f"doinfer bench {broken} ", doinfer_on_path, tmp_path) == []


@pytest.mark.parametrize(("shell", "check"), [("zsh", ["zsh", "-n"]), ("fish", ["fish", "-n"])])
def test_zsh_and_fish_scripts_hook_doinfer(shell: str, check: list[str], tmp_path: Path) -> None:
    script = completion_script(shell)
    assert "_ARGCOMPLETE" in script and "doinfer" in script
    if shell == "zsh":
        assert script.startswith("#compdef doinfer")
    else:
        assert "complete --command doinfer" in script
    if shutil.which(check[0]):
        path = tmp_path / f"doinfer.{shell}"
        path.write_text(script)
        subprocess.run([*check, str(path)], check=True, timeout=60)
