"""The schema is the one source of the spec's defaults."""

from __future__ import annotations

import dataclasses

import pytest

from engine.spec import model
from engine.spec.defaults import schema_default, with_defaults

# typed object -> where its fields' defaults live in the schema
TYPES = {
    model.TraceParams: ("model", "trace"),
    model.Host: ("host",),
    model.Batching: ("server", "batching"),
    model.ServerModel: ("server", "models", "items"),
    model.Server: ("server",),
    model.Runtime: ("runtime",),
    model.Scenario: ("scenario",),
}


# Fields whose absence from a spec means something a default value could not say, so the
# schema has no default for them: `instances` left out lets a packing: auto server choose
# the copies (given, it pins them; a manual server holds 1); `pinned` is derived from that;
# `node_types` left out is every type of the catalog; `limits` left out are the model
# server's own defaults (engine/serving/limits.py; tested against the schema there).
ABSENCE_MEANS_SOMETHING = {
    (model.ServerModel, "instances"),
    (model.ServerModel, "pinned"),
    (model.Server, "node_types"),
    (model.Server, "limits"),
}


def field_default(field: dataclasses.Field) -> object:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    value = field.default
    return {} if dataclasses.is_dataclass(value) else value


@pytest.mark.parametrize("cls", list(TYPES), ids=lambda c: c.__name__)
def test_typed_objects_default_to_what_the_schema_says(cls: type) -> None:
    """The dataclasses keep defaults for code that builds them by hand (tests, tools);
    they must be the schema's, and every schema default must be theirs."""
    checked = 0
    for field in dataclasses.fields(cls):
        default = field_default(field)
        if default is dataclasses.MISSING or default is None:
            continue  # required, or "derived" (None): no value in the schema either
        if (cls, field.name) in ABSENCE_MEANS_SOMETHING:
            with pytest.raises(KeyError):  # and the schema must not give one either
                schema_default(*TYPES[cls], field.name)
            checked += 1
            continue
        assert schema_default(*TYPES[cls], field.name) == default, field.name
        checked += 1
    assert checked > 0


def test_a_document_is_filled_in_depth_first() -> None:
    document = {
        "apiVersion": "doinfer/v1",
        "name": "x",
        "models": [{"name": "m", "source": "path:m", "task": "feature-extraction"}],
        "servers": [{"name": "s", "processor": "cpu", "models": [{"model": "m"}], "batching": {}}],
        "scenarios": [{"name": "load", "kind": "benchmark", "duration_s": 3}],
    }
    filled = with_defaults(document)
    assert "environment" not in document  # the input is left as it was
    assert filled["environment"] == "default" and filled["hosts"] == []
    assert filled["models"][0]["trace"] == {
        "sequence_length": 128,
        "batch_size": 1,
        "pipeline_cores": 1,
        "precision": "fp32",
    }
    server = filled["servers"][0]
    assert server["replicas"] == 1 and "instances" not in server["models"][0]
    assert server["packing"] == "manual" and server["max_utilization"] == 0.75
    assert server["batching"]["max_padding"] == 1.25
    assert filled["runtime"]["kind"] == "local" and filled["runtime"]["port"] == 8080
    scenario = filled["scenarios"][0]
    assert scenario["duration_s"] == 3 and scenario["clients"] == 1
    assert scenario["protocol"] == "predictions"
