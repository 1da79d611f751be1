"""The remote command line, run by a real bash as sshd would: every word arrives verbatim."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

from engine.remote.process import PID_MARKER, command_line


def test_shell_syntax_in_any_word_reaches_the_program_as_is(tmp_path: Path) -> None:
    token = secrets.token_hex(6)
    words = [
        f"a b;touch {tmp_path}/{token}-1",
        f"$(touch {tmp_path}/{token}-2)",
        f"`touch {tmp_path}/{token}-3`",
        f"x' && touch {tmp_path}/{token}-4 && echo '",
        '"$HOME" | > < * ? ~ \\ \n newline',
        "",
        "-- --stop",
    ]
    workdir = tmp_path / f"work dir;touch {token}-5"
    workdir.mkdir()
    show = "import json, sys; print(json.dumps(sys.argv[1:]))"
    line = command_line([sys.executable, "-c", show, *words], str(workdir))
    result = subprocess.run(  # in tmp_path: a stray `touch` would land where we look
        ["bash", "-c", line], capture_output=True, text=True, timeout=30, check=True, cwd=tmp_path
    )
    marker, printed = result.stdout.splitlines()
    assert marker.startswith(PID_MARKER) and marker[len(PID_MARKER) :].isdigit()
    assert json.loads(printed) == words
    assert list(tmp_path.rglob(f"{token}*")) == []
