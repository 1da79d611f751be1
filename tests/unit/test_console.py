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
