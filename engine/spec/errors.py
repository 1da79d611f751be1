"""Spec diagnostics: `FILE:LINE:COL: error: MESSAGE`, collected and reported all at once."""

from __future__ import annotations

from dataclasses import dataclass

from engine.spec.model import Mark


@dataclass(frozen=True)
class Diagnostic:
    mark: Mark
    message: str
    severity: str = "error"  # or "warning": the spec is valid, but the user should know

    def __str__(self) -> str:
        return f"{self.mark}: {self.severity}: {self.message}"


class SpecError(Exception):
    """The spec is not valid; `diagnostics` holds every problem found, in file order."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(
            diagnostics, key=lambda d: (d.mark.file, d.mark.line, d.mark.column)
        )
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def format_path(path: tuple[str | int, ...]) -> str:
    """('servers', 0, 'replicas') -> 'servers[0].replicas'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"
