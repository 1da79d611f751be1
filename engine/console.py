"""Terminal output on rich: live progress on a terminal, plain lines elsewhere.

`make_console` is the one place that decides, for a stream, whether to colour and whether to
redraw in place; everything the CLI prints goes through a console it made. Only printing lives
here; the engine reports through Event objects (apply, destroy) and Tick objects (bench).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from engine.graph.executor import Event

if TYPE_CHECKING:  # the bench (numpy) is imported only to run it
    from engine.bench.scenarios import Tick

MARK = {"done": "✓", "failed": "✗", "skipped": "-", "cancelled": "!"}
STYLE = {"done": "green", "failed": "red", "skipped": "dim", "cancelled": "yellow"}
DUMB_TERMINALS = ("dumb", "unknown")


def make_console(
    stream: TextIO | None = None, no_color: bool = False, environ: Mapping[str, str] | None = None
) -> Console:
    """A console for `stream` (default stderr) that follows the conventions users set:

    - redraws in place (live progress, cursor movement) only on a terminal that is not
      TERM=dumb; elsewhere, plain lines;
    - colours where it redraws, or through a pipe when FORCE_COLOR is set; never with
      --no-color or NO_COLOR (https://no-color.org), which win over FORCE_COLOR.
    """
    env = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    live = _isatty(stream) and env.get("TERM", "") not in DUMB_TERMINALS
    colour = not no_color and not env.get("NO_COLOR") and (live or bool(env.get("FORCE_COLOR")))
    return Console(
        file=stream,
        color_system="standard" if colour else None,
        force_terminal=live or colour,
        force_interactive=live,
        no_color=not colour,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,  # a long line stays one line in a log or a pipe
        # decided above: rich must not decide again from NO_COLOR, FORCE_COLOR or TERM
        _environ={k: v for k, v in env.items() if k in ("COLUMNS", "LINES")},
    )


def colours(console: Console) -> bool:
    """Whether text written through `console`'s stream may carry colour codes."""
    return console.color_system is not None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream is no terminal
        return False


class LiveStatus:
    """Lines printed as they come and, on a terminal, a status redrawn below them ten times a
    second (a clock runs on between events). Subclasses say what the status shows."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = make_console() if console is None else console
        self.live = self.console.is_interactive
        self.lock = threading.RLock()  # a line printed under it may redraw the status
        self._display: Live | None = None

    def __enter__(self) -> LiveStatus:
        if self.live:
            self._display = Live(
                console=self.console,
                get_renderable=self._locked_status,
                refresh_per_second=10,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._display.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._display is not None:
            self._display.stop()

    def line(self, text: str | Text) -> None:
        self.console.print(text)

    def status(self) -> RenderableType:
        return Text()

    def _locked_status(self) -> RenderableType:
        with self.lock:
            return self.status()


class Progress(LiveStatus):
    """Prints step events. On a terminal, a spinner per running step shows it live."""

    def __init__(self, console: Console | None = None, verbose: bool = False) -> None:
        super().__init__(console)
        self.verbose = verbose
        self.running: dict[str, tuple[float, str]] = {}  # step id -> (start, last log line)

    def __call__(self, event: Event) -> None:
        with self.lock:
            if event.kind == "start":
                self.running[event.step_id] = (time.monotonic(), "")
                if not self.live:
                    self.line(f"  {event.step_id}: {event.action} ...")
            elif event.kind == "log":
                if event.step_id in self.running:
                    self.running[event.step_id] = (self.running[event.step_id][0], event.message)
                if self.verbose or not self.live:
                    self.line(f"    [{event.step_id}] {event.message}")
            else:
                self.running.pop(event.step_id, None)
                took = f" ({event.elapsed_s:.1f}s)" if event.kind in ("done", "failed") else ""
                self.line(
                    Text.assemble(
                        (MARK.get(event.kind, "?"), STYLE.get(event.kind, "")),
                        f" {event.step_id}: {event.action} {event.kind}{took}"
                        + (f": {event.message}" if event.message else ""),
                    )
                )
                if event.detail:
                    self.line("\n".join(f"    {line}" for line in event.detail.splitlines()))

    def status(self) -> RenderableType:
        grid = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for step_id, (start, last) in self.running.items():
            grid.add_row(
                Spinner("dots"),
                Text(f"{step_id} {now - start:.0f}s"),
                Text(last[:60], style="dim", no_wrap=True, overflow="ellipsis"),
            )
        return grid


class LoadProgress(LiveStatus):
    """Shows running scenarios. On a terminal a bar that moves with the clock (a benchmark's
    clock runs on between answers); elsewhere one line per finished scenario."""

    BAR_WIDTH = 24

    def __init__(self, console: Console | None = None) -> None:
        super().__init__(console)
        self.tick: Tick | None = None
        self.seen_at = 0.0  # monotonic time of the last tick

    def __call__(self, tick: Tick) -> None:
        with self.lock:
            self.tick, self.seen_at = tick, time.monotonic()
            if tick.done:
                self.line(
                    Text.assemble(
                        (MARK["done"], STYLE["done"]),
                        f" {tick.scenario}: {tick.answered} answered, "
                        f"{tick.errors} error(s) in {tick.elapsed_s:.1f}s",
                    )
                )
                self.tick = None

    def fraction(self) -> tuple[float, str]:
        """How far the running scenario is, and the same as text (seconds or requests)."""
        tick = self.tick
        assert tick is not None
        if tick.expected_s:
            elapsed = min(tick.expected_s, tick.elapsed_s + time.monotonic() - self.seen_at)
            return elapsed / tick.expected_s, f"{elapsed:.1f}/{tick.expected_s:.0f}s"
        fraction = tick.answered / tick.expected_requests if tick.expected_requests else 0.0
        return fraction, f"{tick.answered}/{tick.expected_requests}"

    def status(self) -> RenderableType:
        tick = self.tick
        if tick is None:
            return Text()
        fraction, where = self.fraction()
        grid = Table.grid(padding=(0, 1))
        grid.add_row(
            Text(tick.scenario),
            ProgressBar(total=1.0, completed=min(fraction, 1.0), width=self.BAR_WIDTH),
            Text.assemble(
                f"{min(fraction, 1.0):4.0%} {where}  {tick.answered} answered, ",
                (f"{tick.errors} error(s)", "red" if tick.errors else ""),
            ),
        )
        return grid
