"""The spec: load YAML with positions, resolve `extends`, validate, build typed objects.

load_spec(path) -> Spec      raises SpecError listing every problem found
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.gc_pause import gc_paused
from engine.spec.build import build_spec
from engine.spec.corpus import load_corpora
from engine.spec.defaults import with_defaults
from engine.spec.errors import Diagnostic, SpecError
from engine.spec.model import Mark, Spec
from engine.spec.overlay import Files, load_resolved
from engine.spec.semantic import semantic_errors, semantic_warnings
from engine.spec.validate import schema_errors
from engine.spec.yaml_nodes import LazyMarks, Node

__all__ = ["Diagnostic", "Spec", "SpecError", "load_spec"]


@gc_paused
def load_spec(path: str | Path, environment: str | None = None, files: Files | None = None) -> Spec:
    """The spec at `path`, validated; `environment` (`--env`) names its environment when
    the spec does not, and must match the one it names. `files` reads it from elsewhere
    than the working tree (a git revision)."""
    shown = str(path)
    node = load_resolved(Path(path), shown, files)
    if environment is not None:
        _name_environment(node, environment, shown)
    document = node.plain()
    marks = LazyMarks(node)  # built only when there is an error to point at
    errors = schema_errors(document, marks)
    if errors:  # semantic checks assume a well-formed document
        raise SpecError(errors)
    document = with_defaults(document)  # the schema's defaults, now that it is well-formed
    errors = semantic_errors(document, marks) + load_corpora(document, marks)
    if errors:
        raise SpecError(errors)
    spec = build_spec(document, Path(path).resolve())
    return dataclasses.replace(spec, warnings=tuple(semantic_warnings(document, marks)))


def _name_environment(node: Node, environment: str, shown: str) -> None:
    """Set `environment` from --env, or check that the spec names the same one."""
    assert isinstance(node.value, dict)  # load_resolved returns a mapping
    named = node.value.get("environment")
    if named is None:
        node.value["environment"] = Node(environment, Mark(shown, 1, 1))
    elif named.value != environment:
        raise SpecError(
            [
                Diagnostic(
                    named.mark,
                    f"environment: the spec names {named.value!r} but --env asks for "
                    f"{environment!r}",
                )
            ]
        )
