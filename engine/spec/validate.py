"""Schema validation against schemas/doinfer.schema.json, with positions and suggestions."""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from engine.spec.errors import Diagnostic, format_path
from engine.spec.model import Mark

SCHEMA_FILE = Path(__file__).with_name("doinfer.schema.json")
Marks = Mapping[tuple[str | int, ...], tuple[Mark, Mark | None]]


@functools.cache
def validator() -> Draft202012Validator:
    """The compiled validator, where an integer is an int: JSON Schema's own rule lets 2.0
    pass as an integer, which would reach range() and port arithmetic as a float."""
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    strict = validators.extend(Draft202012Validator, type_checker=checker)
    return strict(json.loads(SCHEMA_FILE.read_text()))


FAST_MIN_ITEMS = 300  # a spec this big is first checked by the compiled validator


def schema_errors(document: dict[str, Any], marks: Marks) -> list[Diagnostic]:
    if _items(document) >= FAST_MIN_ITEMS and fast_valid(document):
        return []
    diagnostics: list[Diagnostic] = []
    for error in validator().iter_errors(document):
        diagnostics.extend(_diagnose(error, marks))
    return diagnostics


def mark_of(marks: Marks, path: tuple[str | int, ...], key: bool = False) -> Mark:
    """The mark of a path (its key's, if asked and known), else of its nearest ancestor."""
    while path not in marks:
        path = path[:-1]
    value_mark, key_mark = marks[path]
    return key_mark if key and key_mark else value_mark


def _diagnose(error: ValidationError, marks: Marks) -> list[Diagnostic]:
    path = tuple(error.absolute_path)
    where = format_path(path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        return [
            Diagnostic(
                mark_of(marks, (*path, k), key=True),
                f"{format_path((*path, k))}: unknown key '{k}'{_suggest(k, allowed)}"
                f"{_allowed(allowed)}",
            )
            for k in unknown
        ]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [
            Diagnostic(mark_of(marks, path, key=True), f"{where}: missing required key '{missing}'")
        ]
    if error.validator == "enum":
        options = [str(o) for o in error.validator_value]
        suggestion = _suggest(str(error.instance), options)
        return [
            Diagnostic(
                mark_of(marks, path),
                f"{where}: {error.instance!r} is not one of {', '.join(options)}{suggestion}",
            )
        ]
    if error.validator == "pattern" and "x-hint" in schema:
        return [
            Diagnostic(
                mark_of(marks, path),
                f"{where}: {error.instance!r} is not valid: {schema['x-hint']}",
            )
        ]
    if error.validator == "const":
        return [
            Diagnostic(
                mark_of(marks, path),
                f"{where}: must be {error.validator_value!r}, not {error.instance!r}",
            )
        ]
    if error.validator == "type":
        return [
            Diagnostic(
                mark_of(marks, path),
                f"{where}: expected {_type_name(error)}, got {_describe(error.instance)}",
            )
        ]
    if error.validator == "anyOf":
        return [
            Diagnostic(
                mark_of(marks, path),
                f"{where}: {_describe(error.instance)} is not "
                f"valid here: {schema.get('description', '')}",
            )
        ]
    return [Diagnostic(mark_of(marks, path), f"{where}: {error.message}")]


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _allowed(options: list[str]) -> str:
    return f"; allowed: {', '.join(options)}" if len(options) <= 12 else ""


def _type_name(error: ValidationError) -> str:
    expected = error.validator_value
    names = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "null": "nothing",
    }
    if isinstance(expected, list):
        return " or ".join(names.get(e, e) for e in expected)
    return names.get(expected, str(expected))


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    return repr(value)


def _items(document: dict[str, Any]) -> int:
    """Items of the spec's lists and of their items' lists (models, servers' models...)."""
    count = 0
    for value in document.values():
        if isinstance(value, list):
            count += len(value)
            for item in value:
                if isinstance(item, dict):
                    count += sum(len(v) for v in item.values() if isinstance(v, list))
    return count


def fast_valid(document: dict[str, Any]) -> bool:
    """Whether the document is valid, by the schema compiled to Python (fastjsonschema):
    a fleet of thousands of models validates in a fraction of jsonschema's time. Only a
    yes is trusted; on a no, jsonschema finds the errors and says where they are."""
    check = _compiled()
    if check is None:
        return False
    import fastjsonschema

    try:
        check(document)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


# fastjsonschema lets 2.0 pass as an integer, as JSON Schema says; doinfer does not
_LAX_INTEGER = re.compile(r" and not \(isinstance\((\w+), float\) and \1\.is_integer\(\)\)")


@functools.cache
def _compiled() -> Callable[[Any], Any] | None:
    """The schema compiled to a validate() function, its code cached on disk by the
    schema's digest (compiling takes longer than validating a large spec). None when
    fastjsonschema is missing or its code no longer looks as expected."""
    try:
        import fastjsonschema
    except ImportError:
        return None
    text = SCHEMA_FILE.read_bytes()
    key = f"{fastjsonschema.VERSION}-{hashlib.sha256(text).hexdigest()[:16]}"
    cache = _cache_dir() / f"schema-{key}.py"
    try:
        code = cache.read_text()
    except OSError:
        code, strict = _LAX_INTEGER.subn("", fastjsonschema.compile_to_code(json.loads(text)))
        if not strict or "is_integer" in code:
            return None
        _write_quietly(cache, code)
    entry = re.search(r"^def (\w+)\(", code, re.MULTILINE)  # the root schema's, first
    if entry is None:
        return None
    namespace: dict[str, Any] = {}
    exec(compile(code, str(cache), "exec"), namespace)
    return namespace[entry.group(1)]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "doinfer"


def _write_quietly(path: Path, text: str) -> None:
    """Write atomically; a cache that cannot be written is only slower next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as f:
            f.write(text)
        os.replace(f.name, path)
    except OSError:
        pass
