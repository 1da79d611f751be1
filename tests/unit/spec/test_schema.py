"""The schema itself, the example specs, and the typed view with defaults."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from engine.runtimes import RUNTIMES, unknown_runtime
from engine.serving.limits import ServerLimits
from engine.spec import SpecError, load_spec
from engine.spec.defaults import schema_default
from engine.spec.model import Batching, TraceParams
from engine.spec.overlay import load_resolved

from .conftest import VALID

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "schemas" / "doinfer.schema.json").read_text())


def test_schema_is_valid_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(SCHEMA["properties"]) == {
        "apiVersion",
        "name",
        "environment",
        "extends",
        "models",
        "hosts",
        "servers",
        "catalog",
        "profiling",
        "runtime",
        "scenarios",
    }


def test_every_property_has_a_description() -> None:
    missing = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if not (isinstance(sub, dict) and sub.get("description")):
                    missing.append(f"{path}.{name}")
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(SCHEMA, "#")
    assert missing == []


def test_the_package_ships_the_same_schema() -> None:
    shipped = REPO / "engine" / "spec" / "doinfer.schema.json"
    assert json.loads(shipped.read_text()) == SCHEMA


@pytest.mark.parametrize(
    "path", sorted((REPO / "specs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO))
)
def test_every_example_spec_validates(path: Path) -> None:
    if path.name == "qa-local.yaml":  # its model directory is the user's to provide
        spec = load_spec(path)
        assert spec.models[0].source == "path:models/qa"
        return
    kind = load_resolved(path, str(path)).plain().get("runtime", {}).get("kind", "local")
    if kind not in RUNTIMES:  # the schema knows it, this version cannot run it: only that
        with pytest.raises(SpecError) as error:
            load_spec(path)
        assert [d.message for d in error.value.diagnostics] == [unknown_runtime(kind)]
        return
    spec = load_spec(path)
    assert spec.servers and spec.models


def test_defaults_are_applied(write) -> None:
    spec = load_spec(write("s.yaml", VALID))
    assert spec.environment == "default"
    assert spec.models[0].trace == TraceParams(128, 1, 1)
    web = spec.servers[0]
    assert (web.replicas, web.batching, web.port, web.threads, web.share_weights) == (
        1,
        Batching(),
        None,
        None,
        True,
    )
    assert spec.runtime.kind == "local" and spec.runtime.bind_address == "127.0.0.1"
    assert spec.scenarios[0].requests == 10
    assert spec.path == (Path(write("s.yaml", VALID))).resolve()


def test_a_spec_of_3000_instances_loads(write) -> None:
    doc = yaml.safe_load(VALID)
    doc["models"] = [
        {"name": f"m{i}", "source": "path:tiny", "task": "feature-extraction"} for i in range(100)
    ]
    doc["servers"] = [
        {"name": f"s{i}", "processor": "cpu", "models": [{"model": f"m{i % 100}", "instances": 10}]}
        for i in range(300)
    ]
    path = write("big.yaml", yaml.safe_dump(doc))
    start = time.perf_counter()
    spec = load_spec(path)
    elapsed = time.perf_counter() - start
    assert sum(m.instances for s in spec.servers for m in s.models) == 3000
    assert elapsed < 30  # a sanity bound only; speed is measured in benchmarks/plan_speed.py


def test_scenario_weights_reach_the_typed_spec(tmp_path: Path) -> None:
    from engine.spec import load_spec

    (tmp_path / "tiny").mkdir()
    path = tmp_path / "s.yaml"
    path.write_text(
        "apiVersion: doinfer/v1\nname: w\nmodels:\n"
        "  - {name: tiny, source: 'path:tiny', task: feature-extraction}\n"
        "servers:\n  - {name: web, processor: cpu, models: [{model: tiny, instances: 2}]}\n"
        "scenarios:\n"
        "  - {name: mix, kind: random, weights: {'*/*/tiny-0': 3, web/0/tiny-1: 1}}\n"
    )
    (scenario,) = load_spec(path).scenarios
    assert scenario.weights == {"*/*/tiny-0": 3, "web/0/tiny-1": 1}


def test_server_limits_in_the_schema_are_the_servers_flags_with_its_defaults() -> None:
    """The spec's `limits` keys are the server's flags, and the defaults the schema shows
    are the ones a server takes when the spec leaves a key out."""
    schema = SCHEMA["$defs"]["server"]["properties"]["limits"]["properties"]
    defaults = ServerLimits()
    assert {name: p["default"] for name, p in schema.items()} == {
        f.name: getattr(defaults, f.name) for f in fields(ServerLimits)
    }


def test_server_limits_reach_the_typed_spec_and_bad_ones_say_where(write) -> None:
    doc = yaml.safe_load(VALID)
    doc["servers"][0]["limits"] = {"max_body_bytes": 65536, "drain_timeout_s": 5}
    spec = load_spec(write("s.yaml", yaml.safe_dump(doc)))
    # a limits object the spec gives is completed from the schema's defaults
    limits = spec.servers[0].limits
    assert limits["max_body_bytes"] == 65536 and limits["drain_timeout_s"] == 5
    assert limits["max_header_bytes"] == schema_default("server", "limits", "max_header_bytes")
    assert load_spec(write("s.yaml", VALID)).servers[0].limits == {}
    doc["servers"][0]["limits"] = {"max_body_byte": 65536}
    with pytest.raises(SpecError, match=r"s\.yaml:\d+:\d+: .*max_body_byte"):
        load_spec(write("s.yaml", yaml.safe_dump(doc)))
