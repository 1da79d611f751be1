"""Errors that are the user's or the world's, not ours: one clear message, no traceback."""

from __future__ import annotations


class DoinferError(Exception):
    """A failure with a message fit for the user (what went wrong, what to do)."""


class StepFailed(DoinferError):
    """A step could not be applied; `detail` carries e.g. the tail of a log."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class Cancelled(DoinferError):
    """The apply was interrupted (Ctrl-C, SIGTERM); what completed is recorded."""
