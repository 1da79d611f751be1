"""Python loads this at start when its directory is on PYTHONPATH: it takes away the
Linux-only APIs that macOS lacks, so a test can run doinfer as it would run there.

- `os.sched_getaffinity` and `selectors.EpollSelector` are deleted (macOS has neither);
- `import fcntl` fails for doinfer's own modules (macOS has fcntl, but doinfer must not
  need it: other systems do without; libraries keep theirs, as they would on macOS);
- `engine.system.LINUX` is False, so no prctl or /proc is used;
- reading anything under /proc from doinfer's modules raises, as it would on macOS.

Every child process (model servers, load clients) inherits PYTHONPATH, so they too.
"""

from __future__ import annotations

import builtins
import io
import os
import pathlib
import selectors
import sys

for module, name in ((os, "sched_getaffinity"), (selectors, "EpollSelector")):
    if hasattr(module, name):
        delattr(module, name)


def _called_from_engine(depth: int = 2) -> bool:
    frame = sys._getframe(depth)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module == "engine" or module.startswith("engine."):
            return True
        if not module.startswith(("importlib", "_frozen_importlib", "pathlib", "io", __name__)):
            return False
        frame = frame.f_back
    return False


_import = builtins.__import__


def _import_without_fcntl(name, globals=None, *args, **kwargs):  # type: ignore[no-untyped-def]
    importer = (globals or {}).get("__name__", "")
    if name == "fcntl" and (importer == "engine" or importer.startswith("engine.")):
        raise ModuleNotFoundError("No module named 'fcntl' (taken away by the test)")
    return _import(name, globals, *args, **kwargs)


builtins.__import__ = _import_without_fcntl
_open, _path_open = builtins.open, pathlib.Path.open


def _no_proc(file: object) -> None:
    if str(file).startswith("/proc") and _called_from_engine(3):
        raise FileNotFoundError(f"{file}: no /proc on this system (taken away by the test)")


def _guarded_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
    _no_proc(file)
    return _open(file, *args, **kwargs)


def _guarded_path_open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    _no_proc(self)
    return _path_open(self, *args, **kwargs)


builtins.open = _guarded_open
io.open = _guarded_open
pathlib.Path.open = _guarded_path_open

import engine.system  # noqa: E402 (after the APIs are gone)

engine.system.LINUX = False
os.environ["DOINFER_TEST_WITHOUT_LINUX_APIS"] = "1"  # children say they ran with the shim
