"""Terminal output: live progress on a terminal, plain lines elsewhere.

Only printing lives here; the engine reports through Event objects (apply, destroy) and
Tick objects (bench).
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from engine.graph.executor import Event

if TYPE_CHECKING:  # the bench (numpy) is imported only to run it
    from engine.bench.scenarios import Tick

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
MARK = {"done": "✓", "failed": "✗", "skipped": "-", "cancelled": "!"}
COLOUR = {"done": "\033[32m", "failed": "\033[31m", "skipped": "\033[2m", "cancelled": "\033[33m"}
RESET = "\033[0m"
CLEAR_LINE = "\r\033[K"


class Progress:
    """Prints step events. On a terminal, a spinner line shows the running steps live."""

    def __init__(
        self, out: TextIO | None = None, live: bool | None = None, verbose: bool = False
    ) -> None:
        out = out or sys.stderr  # looked up now, not when the module was imported
        self.out = out
        self.live = out.isatty() if live is None else live
        self.verbose = verbose
        self.running: dict[str, tuple[float, str]] = {}  # step id -> (start, last log line)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.live:
            self.thread = threading.Thread(target=self._animate, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join()
        with self.lock:
            if self.live:
                self.out.write(CLEAR_LINE)
                self.out.flush()

    def __call__(self, event: Event) -> None:
        with self.lock:
            if event.kind == "start":
                self.running[event.step_id] = (time.monotonic(), "")
                if not self.live:
                    self._line(f"  {event.step_id}: {event.action} ...")
            elif event.kind == "log":
                if event.step_id in self.running:
                    self.running[event.step_id] = (self.running[event.step_id][0], event.message)
                if self.verbose or not self.live:
                    self._line(f"    [{event.step_id}] {event.message}")
            else:
                self.running.pop(event.step_id, None)
                mark = MARK.get(event.kind, "?")
                if self.live:
                    mark = f"{COLOUR.get(event.kind, '')}{mark}{RESET}"
                took = f" ({event.elapsed_s:.1f}s)" if event.kind in ("done", "failed") else ""
                self._line(
                    f"{mark} {event.step_id}: {event.action} {event.kind}{took}"
                    + (f": {event.message}" if event.message else "")
                )
                if event.detail:
                    self._line("\n".join(f"    {line}" for line in event.detail.splitlines()))

    def _line(self, text: str) -> None:
        if self.live:
            self.out.write(CLEAR_LINE)
        self.out.write(text + "\n")
        self.out.flush()

    def _animate(self) -> None:
        frame = 0
        while not self.stop.wait(0.1):
            with self.lock:
                if not self.running:
                    continue
                now = time.monotonic()
                parts = []
                for step_id, (start, last) in self.running.items():
                    parts.append(
                        f"{step_id} {now - start:.0f}s" + (f" ({last[:40]})" if last else "")
                    )
                width = shutil.get_terminal_size((120, 20)).columns - 1
                text = f"{SPINNER[frame % len(SPINNER)]} " + " | ".join(parts)
                self.out.write(CLEAR_LINE + text[:width])
                self.out.flush()
                frame += 1


class LoadProgress:
    """Shows running scenarios. On a terminal a bar, redrawn ten times a second (a
    benchmark's clock runs on between answers); elsewhere one line per finished scenario."""

    BAR_WIDTH = 24

    def __init__(self, out: TextIO | None = None, live: bool | None = None) -> None:
        out = out or sys.stderr  # looked up now, not when the module was imported
        self.out = out
        self.live = out.isatty() if live is None else live
        self.tick: Tick | None = None
        self.seen_at = 0.0  # monotonic time of the last tick
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> LoadProgress:
        if self.live:
            self.thread = threading.Thread(target=self._animate, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join()
        if self.live:
            with self.lock:
                self.out.write(CLEAR_LINE)
                self.out.flush()

    def __call__(self, tick: Tick) -> None:
        with self.lock:
            self.tick, self.seen_at = tick, time.monotonic()
            if tick.done:
                self._line(
                    f"{MARK['done']} {tick.scenario}: {tick.answered} answered, "
                    f"{tick.errors} error(s) in {tick.elapsed_s:.1f}s"
                )
                self.tick = None
            elif self.live:
                self._draw()

    def _line(self, text: str) -> None:
        if self.live:
            self.out.write(CLEAR_LINE)
        self.out.write(text + "\n")
        self.out.flush()

    def _draw(self) -> None:
        tick = self.tick
        if tick is None:
            return
        if tick.expected_s:
            elapsed = min(tick.expected_s, tick.elapsed_s + time.monotonic() - self.seen_at)
            fraction = elapsed / tick.expected_s
            where = f"{elapsed:.1f}/{tick.expected_s:.0f}s"
        else:
            fraction = tick.answered / tick.expected_requests if tick.expected_requests else 0
            where = f"{tick.answered}/{tick.expected_requests}"
        filled = round(self.BAR_WIDTH * min(fraction, 1.0))
        bar = "#" * filled + "-" * (self.BAR_WIDTH - filled)
        text = (
            f"{tick.scenario} [{bar}] {fraction:4.0%} {where}  "
            f"{tick.answered} answered, {tick.errors} error(s)"
        )
        width = shutil.get_terminal_size((120, 20)).columns - 1
        self.out.write(CLEAR_LINE + text[:width])
        self.out.flush()

    def _animate(self) -> None:
        while not self.stop.wait(0.1):
            with self.lock:
                self._draw()
