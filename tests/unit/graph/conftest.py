"""Specs built directly from the typed model, so graph tests need no YAML."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engine.spec.model import (
    Model,
    Runtime,
    Scenario,
    Server,
    ServerModel,
    Spec,
    TraceParams,
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "models" / "tiny"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return directory


@pytest.fixture
def make_spec(tmp_path: Path, model_dir: Path):
    def make(
        sequence_length: int = 128, replicas: int = 2, instances: int = 2, scenarios: bool = True
    ) -> Spec:
        return Spec(
            api_version="doinfer/v1",
            name="demo",
            environment="default",
            models=(
                Model(
                    "tiny",
                    f"path:{model_dir}",
                    "feature-extraction",
                    TraceParams(sequence_length=sequence_length),
                ),
            ),
            hosts=(),
            servers=(
                Server(
                    "tiny", "cpu", (ServerModel("tiny", instances),), replicas=replicas, threads=1
                ),
            ),
            runtime=Runtime(),
            scenarios=(Scenario("smoke", "sequential"),) if scenarios else (),
            path=tmp_path / "spec.yaml",
            document={},
        )

    return make


def replace_spec(spec: Spec, **changes: object) -> Spec:
    return dataclasses.replace(spec, **changes)
