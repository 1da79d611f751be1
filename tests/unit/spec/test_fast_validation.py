"""A large spec is first checked by the schema compiled to Python; it must refuse what
jsonschema refuses (doinfer's strict integers included), and errors still point at lines."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.spec import validate
from engine.spec.validate import fast_valid, schema_errors
from engine.spec.yaml_nodes import LazyMarks, parse


def big_document(count: int = 400) -> dict[str, Any]:
    return {
        "apiVersion": "doinfer/v1",
        "name": "fleet",
        "models": [
            {
                "name": f"m{i}",
                "source": f"hf:acme/m{i}",
                "task": "feature-extraction",
                "profiles": {"cpu": {"memory_mib": 500, "rate_per_core": 10}},
                "trace": {"batch_size": 1},
            }
            for i in range(count)
        ],
        "servers": [
            {
                "name": "fleet",
                "packing": "auto",
                "models": [{"model": f"m{i}", "rate": 1.5} for i in range(count)],
            }
        ],
    }


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    validate._compiled.cache_clear()


def test_a_valid_large_spec_passes_the_fast_check_and_caches_its_code(tmp_path: Path) -> None:
    assert fast_valid(big_document())
    (cached,) = (tmp_path / "cache" / "doinfer").glob("schema-*.py")
    validate._compiled.cache_clear()
    assert fast_valid(big_document())  # from the cached code
    assert cached.exists()


def mutations() -> list[tuple[str, Any]]:
    def at(path: tuple[Any, ...], value: Any) -> Any:
        def apply(doc: dict[str, Any]) -> None:
            target = doc
            for key in path[:-1]:
                target = target[key]
            if value is KeyError:
                del target[path[-1]]
            else:
                target[path[-1]] = value

        return apply

    return [
        ("float as integer", at(("models", 7, "trace", "batch_size"), 2.0)),
        ("unknown key", at(("models", 3, "sorce"), "x")),
        ("bad enum", at(("models", 9, "task"), "translation")),
        ("bad name", at(("models", 9, "name"), "Bad_Name")),
        (
            "unknown processor",
            at(("models", 1, "profiles", "tpu"), {"memory_mib": 1, "rate_per_core": 1}),
        ),
        ("negative rate", at(("servers", 0, "models", 5, "rate"), -1)),
        ("manual without processor", at(("servers", 0, "packing"), "manual")),
        ("no rate_per_core", at(("models", 2, "profiles", "cpu", "rate_per_core"), KeyError)),
        ("utilization above 1", at(("servers", 0, "max_utilization"), 1.5)),
    ]


@pytest.mark.parametrize(("what", "mutate"), mutations(), ids=[m[0] for m in mutations()])
def test_the_fast_check_refuses_what_jsonschema_refuses(what: str, mutate: Any) -> None:
    document = copy.deepcopy(big_document())
    mutate(document)
    assert not fast_valid(document), what
    node = parse(yaml.safe_dump(document), "big.yaml")
    assert node is not None
    errors = schema_errors(node.plain(), LazyMarks(node))
    assert errors and all(e.mark.file == "big.yaml" and e.mark.line > 1 for e in errors)
