"""The spec: load YAML with positions, resolve `extends`, validate, build typed objects.

load_spec(path) -> Spec      raises SpecError listing every problem found
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.spec.build import build_spec
from engine.spec.errors import Diagnostic, SpecError
from engine.spec.model import Spec
from engine.spec.overlay import load_resolved
from engine.spec.semantic import semantic_errors, semantic_warnings
from engine.spec.validate import schema_errors

__all__ = ["Diagnostic", "Spec", "SpecError", "load_spec"]


def load_spec(path: str | Path) -> Spec:
    shown = str(path)
    node = load_resolved(Path(path), shown)
    document = node.plain()
    marks = node.marks()
    errors = schema_errors(document, marks)
    if errors:  # semantic checks assume a well-formed document
        raise SpecError(errors)
    errors = semantic_errors(document, marks)
    if errors:
        raise SpecError(errors)
    spec = build_spec(document, Path(path).resolve())
    return dataclasses.replace(spec, warnings=tuple(semantic_warnings(document, marks)))
