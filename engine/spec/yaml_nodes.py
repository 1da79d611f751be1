"""YAML to a tree of Nodes that remember where each value (and its key) was written.

pyyaml composes the document into nodes with marks (libyaml's C parser when available,
for speed); we turn them into Nodes holding plain Python values, rejecting what JSON
cannot hold and duplicate keys, which YAML itself silently lets the last one win.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from engine.spec.errors import Diagnostic, SpecError
from engine.spec.model import Mark

CORE = "tag:yaml.org,2002:"


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, with its tag resolution cut short where the answer is certain.

    pyyaml resolves every scalar's tag in Python, matching regular expressions, even under
    libyaml's C parser; a spec of thousands of models spent most of its parsing there. A
    plain scalar whose first character starts none of the implicit types (bool, int,
    float, null, ...) is a string, and a mapping or a list has its default tag (the safe
    loader has no path resolvers): those answers skip the expressions. Others resolve as
    before.
    """

    _claimed = frozenset(k for k in yaml.SafeLoader.yaml_implicit_resolvers if k)

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            if implicit[0] and value and value[0] not in self._claimed:
                return self.DEFAULT_SCALAR_TAG
        elif not self.yaml_path_resolvers:
            if kind is yaml.MappingNode:
                return self.DEFAULT_MAPPING_TAG
            if kind is yaml.SequenceNode:
                return self.DEFAULT_SEQUENCE_TAG
        return super().resolve(kind, value, implicit)


PLAIN_TAGS = {
    CORE + t for t in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp", "binary")
}  # the last two are refused by value
Path_ = tuple[str | int, ...]


class Node:
    """A value of the spec and where it (and its key, in a mapping) was written.

    Positions are kept as the parser's own marks and become Marks when asked for: a valid
    spec of thousands of models never asks.
    """

    __slots__ = ("_key_mark", "_mark", "file", "raw", "raw_key", "value")

    def __init__(
        self,
        value: Any,  # dict[str, Node] | list[Node] | str | int | float | bool | None
        mark: Mark | None = None,  # where the value starts
        key_mark: Mark | None = None,  # where its key starts, for a mapping's value
        *,
        file: str = "",
        raw: Any = None,  # the parser's mark of the value, when `mark` is not given
    ) -> None:
        self.value = value
        self._mark = mark
        self._key_mark = key_mark
        self.file = file
        self.raw = raw
        self.raw_key: Any = None

    @property
    def mark(self) -> Mark:
        if self._mark is None:
            self._mark = _mark(self.file, self.raw)
        return self._mark

    @property
    def key_mark(self) -> Mark | None:
        if self._key_mark is None and self.raw_key is not None:
            self._key_mark = _mark(self.file, self.raw_key)
        return self._key_mark

    def plain(self) -> Any:
        """The JSON-compatible value, without marks."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def marks(self) -> dict[Path_, tuple[Mark, Mark | None]]:
        """Every path in the tree -> (value mark, key mark)."""
        found: dict[Path_, tuple[Mark, Mark | None]] = {}
        stack: list[tuple[Path_, Node]] = [((), self)]
        while stack:
            path, node = stack.pop()
            found[path] = (node.mark, node.key_mark)
            if isinstance(node.value, dict):
                stack.extend(((*path, k), v) for k, v in node.value.items())
            elif isinstance(node.value, list):
                stack.extend(((*path, i), v) for i, v in enumerate(node.value))
        return found


class LazyMarks(Mapping[Path_, tuple[Mark, "Mark | None"]]):
    """A tree's marks by path, collected on first use: a valid spec never asks."""

    def __init__(self, root: Node) -> None:
        self._root = root

    @functools.cached_property
    def _marks(self) -> dict[Path_, tuple[Mark, Mark | None]]:
        return self._root.marks()

    def __getitem__(self, path: Path_) -> tuple[Mark, Mark | None]:
        return self._marks[path]

    def __iter__(self) -> Iterator[Path_]:
        return iter(self._marks)

    def __len__(self) -> int:
        return len(self._marks)


def parse(text: str, filename: str) -> Node | None:
    """Parse one YAML document; None when the file holds no document at all."""
    loader = Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _mark(filename, mark) if mark else Mark(filename, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError([Diagnostic(where, f"invalid YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Diagnostic(Mark(filename, 1, 1), f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if root is None:
        return None
    errors: list[Diagnostic] = []
    node = _convert(root, filename, loader, errors)
    if errors:
        raise SpecError(errors)
    return node


def _scalar(node: yaml.Node, loader: Any) -> Any:
    """A scalar's value: plain decimal numbers directly (the common case), the rest as
    pyyaml constructs them (hex, octal, 1_000, sexagesimal, .inf, timestamps, ...)."""
    text = node.value
    if node.tag == CORE + "str":
        return text
    if node.tag == CORE + "int" and text.isdigit() and (text == "0" or text[0] != "0"):
        return int(text)
    if node.tag == CORE + "float" and text.replace(".", "", 1).isdigit():
        return float(text)
    return loader.construct_object(node, deep=True)


def _mark(filename: str, mark: Any) -> Mark:
    return Mark(filename, mark.line + 1, mark.column + 1)


def _convert(node: yaml.Node, filename: str, loader: Any, errors: list[Diagnostic]) -> Node:
    if node.tag not in PLAIN_TAGS:
        errors.append(
            Diagnostic(
                _mark(filename, node.start_mark),
                f"unsupported YAML tag {node.tag.removeprefix(CORE)!r}: "
                f"a spec holds only mappings, lists, strings, numbers, "
                f"booleans and null",
            )
        )
        return Node(None, file=filename, raw=node.start_mark)
    if isinstance(node, yaml.MappingNode):
        mapping: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                errors.append(
                    Diagnostic(_mark(filename, key_node.start_mark), "a key must be a plain string")
                )
                continue
            key = key_node.value
            if key == "<<":
                errors.append(
                    Diagnostic(
                        _mark(filename, key_node.start_mark),
                        "YAML merge keys (<<) are not supported; use extends",
                    )
                )
                continue
            if key in mapping:
                first = mapping[key].key_mark
                errors.append(
                    Diagnostic(
                        _mark(filename, key_node.start_mark),
                        f"duplicate key '{key}' (first at line {first.line if first else '?'})",
                    )
                )
                continue
            value = _convert(value_node, filename, loader, errors)
            value.raw_key = key_node.start_mark
            mapping[key] = value
        return Node(mapping, file=filename, raw=node.start_mark)
    if isinstance(node, yaml.SequenceNode):
        items = [_convert(item, filename, loader, errors) for item in node.value]
        return Node(items, file=filename, raw=node.start_mark)
    value = _scalar(node, loader)
    if isinstance(value, float) and math.isnan(value):
        errors.append(
            Diagnostic(_mark(filename, node.start_mark), "not-a-number (.nan) is not a valid value")
        )
    if not isinstance(value, str | int | float | bool | type(None)):
        errors.append(
            Diagnostic(
                _mark(filename, node.start_mark),
                f"unsupported value {node.value!r} (a {type(value).__name__}"
                f"); quote it to make it a string",
            )
        )
        value = str(node.value)
    return Node(value, file=filename, raw=node.start_mark)
