"""`extends`: a spec overlays one or more base specs.

Maps merge key by key; lists whose items are all named mappings merge by `name` (an
overlay item updates the base item of the same name, new names are appended); any other
value in the overlay replaces the base's. Paths in `extends` are relative to the file
that names them. A cycle or a missing base is an error at the `extends` line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Literal, Protocol

from engine.spec.errors import Diagnostic, SpecError
from engine.spec.model import Mark
from engine.spec.validate import validator
from engine.spec.yaml_nodes import Node, NotASpec, parse

MAX_SPEC_BYTES = 8 * 1024 * 1024  # a spec file larger than this is refused
MAX_SPEC_BYTES_ENV = "DOINFER_SPEC_MAX_BYTES"  # ... unless this environment variable says
MAX_EXTENDS_DEPTH = 32  # files in one chain of extends


class NotAFile(OSError):
    """A device, pipe or socket: reading it could block (a FIFO) or never end (/dev/zero)."""


class Files(Protocol):
    """Where spec files are read from: the working tree, or a git revision."""

    def read(self, path: Path) -> bytes:
        """The file's bytes; FileNotFoundError, IsADirectoryError or OSError otherwise."""
        ...

    def kind(self, path: Path) -> Literal["file", "dir"] | None: ...


class WorkingTree:
    """Spec files as they are on disk: regular files only, read up to the size limit."""

    def read(self, path: Path) -> bytes:
        limit = max_spec_bytes()
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(path)
            if not stat.S_ISREG(mode):
                raise NotAFile(path)
            data = b""
            while len(data) <= limit:
                chunk = os.read(fd, limit + 1 - len(data))
                if not chunk:
                    break
                data += chunk
            return data
        finally:
            os.close(fd)

    def kind(self, path: Path) -> Literal["file", "dir"] | None:
        return "dir" if path.is_dir() else "file" if path.is_file() else None


def load_resolved(path: Path, shown: str, files: Files | None = None) -> Node:
    """The document at `path` with its `extends` chain applied (and `extends` removed)."""
    return _Resolver(files or WorkingTree()).load(path.resolve(), shown, ())


def max_spec_bytes() -> int:
    value = os.environ.get(MAX_SPEC_BYTES_ENV, "")
    if not value:
        return MAX_SPEC_BYTES
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise SpecError(
            [
                Diagnostic(
                    Mark(f"${MAX_SPEC_BYTES_ENV}", 1, 1),
                    f"expected a positive number of bytes, not {value!r}",
                )
            ]
        )
    return limit


class _Resolver:
    """Loads each file once, however many times a diamond of `extends` names it."""

    def __init__(self, files: Files) -> None:
        self.files = files
        self.done: dict[Path, Node | None] = {}  # None: the file had errors (reported once)

    def read(self, path: Path, shown: str) -> str:
        where = Mark(shown, 1, 1)
        limit = max_spec_bytes()
        try:
            data = self.files.read(path)
        except FileNotFoundError:
            raise SpecError([Diagnostic(where, "no such file")]) from None
        except IsADirectoryError:
            raise SpecError([Diagnostic(where, "is a directory, not a spec file")]) from None
        except NotAFile:
            raise SpecError(
                [Diagnostic(where, "is not a regular file (a device, pipe or socket): not a spec")]
            ) from None
        except OSError as exc:
            raise SpecError([Diagnostic(where, f"cannot read: {exc.strerror}")]) from None
        if len(data) > limit:
            raise SpecError(
                [
                    Diagnostic(
                        where,
                        f"larger than {limit:,} bytes, the most a spec file may be "
                        f"(set {MAX_SPEC_BYTES_ENV} to allow more)",
                    )
                ]
            )
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(
                [Diagnostic(where, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
            ) from None

    def load(
        self, path: Path, shown: str, chain: tuple[Path, ...], named_at: Mark | None = None
    ) -> Node:
        """Load a file; `named_at`, for a base, is where `extends` names it."""
        text = self.read(path, shown)
        try:
            node = parse(text, shown, validator().schema["properties"] if named_at else ())
        except NotASpec:
            # Say no more: its keys may be secrets (extends: /etc/shadow).
            raise SpecError(
                [
                    Diagnostic(
                        named_at or Mark(shown, 1, 1),
                        f"extends: {shown} is not a doinfer spec (none of its keys is a spec's)",
                    )
                ]
            ) from None
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
            problem = self._check_base(base_path, base.value, (*chain, path))
            if problem:
                errors.append(Diagnostic(base.mark, f"extends: {problem}"))
                continue
            loaded = self._base(base_path, base_shown, base.mark, (*chain, path), errors)
            if loaded is not None:
                merged = loaded if merged is None else merge(merged, loaded)
        if errors:
            raise SpecError(errors)
        return node if merged is None else merge(merged, node)

    def _check_base(self, base_path: Path, named: str, chain: tuple[Path, ...]) -> str:
        """Why `extends` cannot name this file ("" when it can)."""
        if base_path in chain:
            return f"cycle {' -> '.join(p.name for p in (*chain, base_path))}"
        if len(chain) >= MAX_EXTENDS_DEPTH:
            return (
                f"more than {MAX_EXTENDS_DEPTH} files in one chain of extends "
                f"(from {chain[0].name}): flatten the chain"
            )
        if base_path in self.done:
            return ""
        kind = self.files.kind(base_path)
        if kind == "dir":
            return f"{named} is a directory, not a spec file"
        if kind is None:
            return f"base spec {named} not found (looked for {base_path})"
        return ""

    def _base(
        self,
        base_path: Path,
        base_shown: str,
        named_at: Mark,
        chain: tuple[Path, ...],
        errors: list[Diagnostic],
    ) -> Node | None:
        """A base file resolved, once; its errors go to `errors` the first time only."""
        if base_path in self.done:
            return self.done[base_path]
        self.done[base_path] = None
        try:
            loaded = self.load(base_path, base_shown, chain, named_at)
        except SpecError as exc:
            errors.extend(exc.diagnostics)
            return None
        self.done[base_path] = loaded
        return loaded


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
