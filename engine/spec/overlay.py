"""`extends`: a spec overlays one or more base specs.

Maps merge key by key; lists whose items are all named mappings merge by `name` (an
overlay item updates the base item of the same name, new names are appended); any other
value in the overlay replaces the base's. Paths in `extends` are relative to the file
that names them. A cycle or a missing base is an error at the `extends` line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Protocol

from engine.spec.errors import Diagnostic, SpecError
from engine.spec.model import Mark
from engine.spec.yaml_nodes import Node, parse


class Files(Protocol):
    """Where spec files are read from: the working tree, or a git revision."""

    def read(self, path: Path) -> bytes:
        """The file's bytes; FileNotFoundError, IsADirectoryError or OSError otherwise."""
        ...

    def kind(self, path: Path) -> Literal["file", "dir"] | None: ...


class WorkingTree:
    """Spec files as they are on disk."""

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def kind(self, path: Path) -> Literal["file", "dir"] | None:
        return "dir" if path.is_dir() else "file" if path.is_file() else None


def load_resolved(path: Path, shown: str, files: Files | None = None) -> Node:
    """The document at `path` with its `extends` chain applied (and `extends` removed)."""
    return _load(path.resolve(), shown, (), files or WorkingTree())


def _load(path: Path, shown: str, chain: tuple[Path, ...], files: Files) -> Node:
    try:
        text = files.read(path).decode("utf-8")
    except FileNotFoundError:
        raise SpecError([Diagnostic(Mark(shown, 1, 1), "no such file")]) from None
    except IsADirectoryError:
        raise SpecError(
            [Diagnostic(Mark(shown, 1, 1), "is a directory, not a spec file")]
        ) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            [Diagnostic(Mark(shown, 1, 1), f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    except OSError as exc:
        raise SpecError([Diagnostic(Mark(shown, 1, 1), f"cannot read: {exc.strerror}")]) from None
    node = parse(text, shown)
    if node is None:
        raise SpecError(
            [
                Diagnostic(
                    Mark(shown, 1, 1),
                    "the spec is empty: expected a mapping with apiVersion, name, models, ...",
                )
            ]
        )
    if not isinstance(node.value, dict):
        raise SpecError(
            [
                Diagnostic(
                    node.mark,
                    "the spec must be a mapping (apiVersion, name, "
                    "models, ...), not a "
                    f"{_kind(node)}",
                )
            ]
        )
    extends = node.value.pop("extends", None)
    if extends is None:
        return node
    bases = extends.value if isinstance(extends.value, list) else [extends]
    merged: Node | None = None
    errors: list[Diagnostic] = []
    for base in bases:
        if not isinstance(base.value, str) or not base.value:
            errors.append(
                Diagnostic(base.mark, "extends: expected a file path (or a list of them)")
            )
            continue
        base_path = (path.parent / os.path.expanduser(base.value)).resolve()
        base_shown = os.path.normpath(os.path.join(os.path.dirname(shown), base.value))
        if base_path in chain or base_path == path:
            cycle = " -> ".join(p.name for p in (*chain, path, base_path))
            errors.append(Diagnostic(base.mark, f"extends: cycle {cycle}"))
            continue
        base_kind = files.kind(base_path)
        if base_kind == "dir":
            errors.append(
                Diagnostic(base.mark, f"extends: {base.value} is a directory, not a spec file")
            )
            continue
        if base_kind is None:
            errors.append(
                Diagnostic(
                    base.mark, f"extends: base spec {base.value} not found (looked for {base_path})"
                )
            )
            continue
        try:
            loaded = _load(base_path, base_shown, (*chain, path), files)
        except SpecError as exc:
            errors.extend(exc.diagnostics)
            continue
        merged = loaded if merged is None else merge(merged, loaded)
    if errors:
        raise SpecError(errors)
    return node if merged is None else merge(merged, node)


def merge(base: Node, over: Node) -> Node:
    if isinstance(base.value, dict) and isinstance(over.value, dict):
        value = dict(base.value)
        for key, child in over.value.items():
            value[key] = merge(value[key], child) if key in value else child
        return Node(value, over.mark, over.key_mark)
    if _named_list(base) and _named_list(over):
        items = {item.value["name"].value: item for item in base.value}
        for item in over.value:
            name = item.value["name"].value
            items[name] = merge(items[name], item) if name in items else item
        return Node(list(items.values()), over.mark, over.key_mark)
    return over


def _named_list(node: Node) -> bool:
    """A non-empty list of mappings with distinct string names (else it is replaced whole)."""
    if not isinstance(node.value, list) or not node.value:
        return False
    names = [
        item.value["name"].value
        for item in node.value
        if isinstance(item.value, dict)
        and "name" in item.value
        and isinstance(item.value["name"].value, str)
    ]
    return len(names) == len(node.value) == len(set(names))


def _kind(node: Node) -> str:
    return "list" if isinstance(node.value, list) else type(node.value).__name__
