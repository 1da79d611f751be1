from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.runtimes.contracts import PackRequest
from engine.runtimes.local import LocalRuntime
from engine.steps.trace import TRACE_JOB
from tests.tiny_models import build_tiny_model

TASKS = ("question-answering", "text-classification", "feature-extraction")


def trace(
    source: Path, task: str, out: Path, sequence_length: int = 32, precision: str = "fp32"
) -> Path:
    job = out.with_suffix(".json")
    job.write_text(
        json.dumps(
            {
                "model": task,
                "source": str(source),
                "task": task,
                "processor": "cpu",
                "trace": {
                    "sequence_length": sequence_length,
                    "batch_size": 1,
                    "pipeline_cores": 1,
                    "precision": precision,
                },
                "out_dir": str(out),
            }
        )
    )
    subprocess.run(
        [sys.executable, str(TRACE_JOB), str(job)], check=True, capture_output=True, timeout=300
    )
    return out


def pack(
    state_dir: Path,
    artifacts: dict[str, Path],
    instances: int = 2,
    share_weights: bool = True,
    batching: dict[str, float] | None = None,
    processor: str = "cpu",
) -> Path:
    names = {"question-answering": "qa", "text-classification": "cls", "feature-extraction": "fe"}
    inputs = {
        "spec": "t",
        "environment": "e",
        "server": "s",
        "processor": processor,
        "share_weights": share_weights,
        "models": [
            {
                "name": names[task],
                "task": task,
                "instances": instances,
                "max_batch_size": 8,
                "max_delay_ms": 2.0,
                "max_padding": 1.25,
                "max_queue": 64,
                **(batching or {}),
            }
            for task in artifacts
        ],
    }
    paths = {names[t]: str(p) for t, p in artifacts.items()}
    outputs = LocalRuntime(state_dir).pack(PackRequest(inputs, paths, "0" * 64), lambda line: None)
    return Path(str(outputs.bundle))


def tiny_classifier_bundle(root: Path, instances: int) -> Path:
    """A bundle of a tiny traced text classifier, served as cls-0 ... cls-{instances - 1}."""
    source = build_tiny_model(root / "src", "text-classification")
    artifact = trace(source, "text-classification", root / "art")
    return pack(root / "state", {"text-classification": artifact}, instances=instances)


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(model directory, traced artifact) per task, built once per test session."""
    root = tmp_path_factory.mktemp("tiny-serving")
    return {
        task: (
            build_tiny_model(root / f"src-{task}", task),
            trace(root / f"src-{task}", task, root / f"art-{task}"),
        )
        for task in TASKS
    }


@pytest.fixture(scope="session")
def bundle(tiny_artifacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack(
        tmp_path_factory.mktemp("bundle-state"),
        {task: art for task, (_, art) in tiny_artifacts.items()},
    )
