"""Terminal output for apply/destroy: live progress on a terminal, plain lines elsewhere.

Only printing lives here; the engine reports through Event objects.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

from engine.graph.executor import Event

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
MARK = {"done": "✓", "failed": "✗", "skipped": "-", "cancelled": "!"}
COLOUR = {"done": "\033[32m", "failed": "\033[31m", "skipped": "\033[2m", "cancelled": "\033[33m"}
RESET = "\033[0m"
CLEAR_LINE = "\r\033[K"


class Progress:
    """Prints step events. On a terminal, a spinner line shows the running steps live."""

    def __init__(
        self, out: TextIO = sys.stderr, live: bool | None = None, verbose: bool = False
    ) -> None:
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
