"""Long commands streamed into a step's log, and stopped when the apply is cancelled."""

from __future__ import annotations

import sys
import time

import pytest

from engine.errors import Cancelled
from engine.runtimes.streams import run_streaming


def test_output_is_streamed_and_its_tail_kept() -> None:
    lines: list[str] = []
    script = "import sys\nfor i in range(40): print(i)\nprint('bad', file=sys.stderr)\nsys.exit(3)"
    code, tail = run_streaming([sys.executable, "-c", script], lines.append, lambda: False)
    assert code == 3
    assert lines[0] == "0" and lines[-1] == "bad"
    assert len(tail) == 25 and tail[-1] == "bad"


def test_a_cancelled_apply_stops_the_command() -> None:
    lines: list[str] = []
    start = time.monotonic()
    script = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    with pytest.raises(Cancelled):
        run_streaming([sys.executable, "-c", script], lines.append, lambda: bool(lines))
    assert lines == ["started"] and time.monotonic() - start < 10
