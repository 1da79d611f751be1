from __future__ import annotations

import io
import re
import time

import pytest

from engine.console import LoadProgress, Progress, make_console
from engine.graph.executor import Event
from engine.graph.step import Action

ESCAPE = re.compile(r"\x1b\[")  # any colour or cursor control sequence


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as a tty would."""

    def isatty(self) -> bool:
        return True


def apply_events(progress: Progress, wait_s: float = 0.0) -> None:
    progress(Event("start", "trace/a@cpu", Action.CREATE, "trace a"))
    progress(Event("log", "trace/a@cpu", Action.CREATE, "loading model"))
    time.sleep(wait_s)
    progress(Event("done", "trace/a@cpu", Action.CREATE, elapsed_s=1.25))
    progress(Event("failed", "pack/a", Action.CREATE, "boom", "line 1\nline 2", 0.5))


def test_plain_output_has_one_line_per_event() -> None:
    out = io.StringIO()
    with Progress(make_console(out, environ={})) as progress:
        apply_events(progress)
    assert out.getvalue().splitlines() == [
        "  trace/a@cpu: create ...",
        "    [trace/a@cpu] loading model",
        "✓ trace/a@cpu: create done (1.2s)",
        "✗ pack/a: create failed (0.5s): boom",
        "    line 1",
        "    line 2",
    ]


@pytest.mark.parametrize(
    ("stream", "environ", "no_color"),
    [
        (io.StringIO(), {}, False),  # a pipe or a file
        (io.StringIO(), {"NO_COLOR": "1", "FORCE_COLOR": "1"}, False),  # NO_COLOR wins
        (Terminal(), {"TERM": "dumb"}, False),  # a terminal that cannot move its cursor
        (io.StringIO(), {"FORCE_COLOR": "1"}, True),  # --no-color wins
    ],
)
def test_no_escape_codes_where_they_do_not_belong(
    stream: io.StringIO, environ: dict[str, str], no_color: bool
) -> None:
    with Progress(make_console(stream, no_color, environ)) as progress:
        apply_events(progress, wait_s=0.15)
    assert stream.getvalue().splitlines()[2] == "✓ trace/a@cpu: create done (1.2s)"
    assert not ESCAPE.search(stream.getvalue())


def test_no_color_on_a_terminal_still_redraws_but_never_colours() -> None:
    out = Terminal()
    with Progress(make_console(out, environ={"NO_COLOR": "1"})) as progress:
        apply_events(progress, wait_s=0.3)
    text = out.getvalue()
    assert "\x1b[2K" in text  # the status line is redrawn in place
    assert not re.search(r"\x1b\[[0-9;]*m", text)  # but nothing is coloured


def test_force_color_colours_a_pipe_without_moving_the_cursor() -> None:
    out = io.StringIO()
    with Progress(make_console(out, environ={"FORCE_COLOR": "1"})) as progress:
        apply_events(progress, wait_s=0.15)
    text = out.getvalue()
    assert "\x1b[32m✓\x1b[0m trace/a@cpu: create done (1.2s)" in text
    assert "\x1b[31m✗\x1b[0m pack/a" in text
    assert not re.search(r"\x1b\[(\d*[ABK]|\?25[lh])", text)  # no cursor movement


def test_live_output_animates_running_steps() -> None:
    out = Terminal()
    with Progress(make_console(out, environ={})) as progress:
        progress(Event("start", "deploy/web", Action.UPDATE, "deploy"))
        progress(Event("log", "deploy/web", Action.UPDATE, "replica 0 ready"))
        time.sleep(0.35)
        progress(Event("done", "deploy/web", Action.UPDATE, elapsed_s=0.3))
    text = out.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text)
    assert "deploy/web 0s replica 0 ready" in plain  # the spinner line
    assert "\x1b[2K" in text  # redrawn in place
    assert "\x1b[32m✓\x1b[0m deploy/web: update done (0.3s)" in text
    assert "[deploy/web] replica 0 ready" not in text  # logs stay on the status line


def test_load_progress_off_a_terminal_is_one_line_per_scenario() -> None:
    from engine.bench.scenarios import Tick

    out = io.StringIO()
    with LoadProgress(make_console(out, environ={})) as progress:
        progress(Tick("smoke", 0, 0, 0.0, None, 4))
        progress(Tick("smoke", 3, 1, 0.1, None, 4))
        progress(Tick("smoke", 4, 1, 0.12, None, 4, done=True))
    assert out.getvalue() == "✓ smoke: 4 answered, 1 error(s) in 0.1s\n"


def test_load_progress_on_a_terminal_draws_a_bar_that_moves_with_the_clock() -> None:
    from engine.bench.scenarios import Tick

    out = Terminal()
    with LoadProgress(make_console(out, environ={"NO_COLOR": "1"})) as progress:
        progress(Tick("load", 120, 0, 1.0, 4.0, None))
        assert progress.fraction() == (pytest.approx(0.25, abs=0.01), "1.0/4s")
        time.sleep(0.35)  # no answer meanwhile: the bar still advances
        fraction, where = progress.fraction()
        assert fraction >= 1.3 / 4 and where.endswith("/4s")
        progress(Tick("load", 400, 2, 4.0, 4.0, None, done=True))
    frames = re.findall(r"load .{24} +(\d+)% [\d.]+/4s  120 answered, 0 error\(s\)", out.getvalue())
    assert len(frames) >= 2  # redrawn while no tick came
    assert int(frames[-1]) > int(frames[0]) >= 25
    assert "✓ load: 400 answered, 2 error(s) in 4.0s\n" in out.getvalue()
