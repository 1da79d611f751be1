from __future__ import annotations

import io
import time

from engine.console import Progress
from engine.graph.executor import Event
from engine.graph.step import Action


def test_plain_output_has_one_line_per_event() -> None:
    out = io.StringIO()
    with Progress(out, live=False) as progress:
        progress(Event("start", "trace/a@cpu", Action.CREATE, "trace a"))
        progress(Event("log", "trace/a@cpu", Action.CREATE, "loading model"))
        progress(Event("done", "trace/a@cpu", Action.CREATE, elapsed_s=1.25))
        progress(Event("failed", "pack/a", Action.CREATE, "boom", "line 1\nline 2", 0.5))
    assert out.getvalue().splitlines() == [
        "  trace/a@cpu: create ...",
        "    [trace/a@cpu] loading model",
        "✓ trace/a@cpu: create done (1.2s)",
        "✗ pack/a: create failed (0.5s): boom",
        "    line 1",
        "    line 2",
    ]


def test_live_output_animates_running_steps() -> None:
    out = io.StringIO()
    with Progress(out, live=True) as progress:
        progress(Event("start", "deploy/web", Action.UPDATE, "deploy"))
        progress(Event("log", "deploy/web", Action.UPDATE, "replica 0 ready"))
        time.sleep(0.35)
        progress(Event("done", "deploy/web", Action.UPDATE, elapsed_s=0.3))
    text = out.getvalue()
    assert "deploy/web 0s (replica 0 ready)" in text  # the spinner line
    assert "\r\033[K" in text
    assert "deploy/web: update done (0.3s)" in text
    assert "[deploy/web] replica 0 ready" not in text  # logs stay on the status line


def test_load_progress_off_a_terminal_is_one_line_per_scenario() -> None:
    from engine.bench.scenarios import Tick
    from engine.console import LoadProgress

    out = io.StringIO()
    with LoadProgress(out, live=False) as progress:
        progress(Tick("smoke", 0, 0, 0.0, None, 4))
        progress(Tick("smoke", 3, 1, 0.1, None, 4))
        progress(Tick("smoke", 4, 1, 0.12, None, 4, done=True))
    assert out.getvalue() == "✓ smoke: 4 answered, 1 error(s) in 0.1s\n"


def test_load_progress_on_a_terminal_draws_a_bar_that_moves_with_the_clock() -> None:
    from engine.bench.scenarios import Tick
    from engine.console import LoadProgress

    out = io.StringIO()
    with LoadProgress(out, live=True) as progress:
        progress(Tick("load", 120, 0, 1.0, 4.0, None))
        time.sleep(0.35)  # no answer meanwhile: the bar still advances
        progress(Tick("load", 400, 2, 4.0, 4.0, None, done=True))
    frames = [f for f in out.getvalue().split("\r\033[K") if f.startswith("load [")]
    assert frames[0] == "load [" + "#" * 6 + "-" * 18 + "]  25% 1.0/4s  120 answered, 0 error(s)"
    assert any(f.startswith("load [########") for f in frames)  # 1.3 s of 4 s or more
    assert out.getvalue().endswith("✓ load: 400 answered, 2 error(s) in 4.0s\n\r\033[K")
