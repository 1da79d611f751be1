"""The versions of the libraries a trace depends on, read from package metadata (torch is
not imported). A trace's cache key holds them; `doinfer --version` names them."""

from __future__ import annotations

import importlib.metadata

TRACE_LIBRARIES = ("torch", "transformers")


def library_versions() -> dict[str, str]:
    """torch/transformers versions: a new tracer means a new trace."""
    versions = {}
    for dist in TRACE_LIBRARIES:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "missing"
    return versions
