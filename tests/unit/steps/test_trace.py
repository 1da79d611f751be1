"""The trace step's cache: content-addressed, shared by name, verified by sha256."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.errors import StepFailed
from engine.graph.step import Action, Step
from engine.sources import hash_directory
from engine.steps.base import ApplyRequest, Context
from engine.steps.trace import TraceStep, artifact_dir, cache_key, source_here

INPUTS = {
    "model": "minilm",
    "source": {"package": "p", "version": "p==1"},
    "job_source": "/somewhere",
    "task": "feature-extraction",
    "processor": "cpu",
    "trace": {"sequence_length": 128, "batch_size": 1, "pipeline_cores": 1, "precision": "fp32"},
    "calibration": [["a text", None]],
    "versions": {"torch": "2.13.0", "transformers": "5"},
}


def test_cache_key_ignores_the_models_name_but_not_its_shape() -> None:
    assert cache_key(INPUTS) == cache_key({**INPUTS, "model": "other-name"})
    longer = {**INPUTS, "trace": {**INPUTS["trace"], "sequence_length": 64}}
    assert cache_key(INPUTS) != cache_key(longer)
    assert cache_key(INPUTS) != cache_key({**INPUTS, "processor": "inf"})


def test_cache_key_changes_with_precision_floor_and_calibration_texts() -> None:
    """A bf16 module is another artifact; so is one measured against another floor or on
    other texts (its recorded agreement would not hold)."""
    keys = {
        cache_key({**INPUTS, "trace": {**INPUTS["trace"], "precision": p}})
        for p in ("fp32", "bf16", "fp16", "int8", "auto")
    }
    assert len(keys) == 5
    floor = {**INPUTS, "trace": {**INPUTS["trace"], "accuracy_floor": 0.99}}
    assert cache_key(floor) != cache_key(INPUTS)
    assert cache_key({**INPUTS, "calibration": [["another", None]]}) != cache_key(INPUTS)


def fill_cache(ctx: Context, content: bytes = b"module", sha: str | None = None) -> Path:
    directory = artifact_dir(ctx, INPUTS)
    directory.mkdir(parents=True)
    (directory / "model.pt").write_bytes(content)
    meta = {"sha256": sha or hashlib.sha256(content).hexdigest(), "device": "cpu"}
    (directory / "doinfer-trace.json").write_text(json.dumps(meta))
    return directory


def request() -> ApplyRequest:
    return ApplyRequest(
        Step("trace/minilm@cpu", "trace", INPUTS, (), "fp", "s"), Action.CREATE, None, {}
    )


def test_a_cached_artifact_is_reused_without_tracing(tmp_path: Path) -> None:
    ctx = Context(state_dir=tmp_path, runtime=None)  # type: ignore[arg-type]
    directory = fill_cache(ctx)
    lines: list[str] = []
    outputs = TraceStep().apply(request(), ctx, lines.append)
    assert outputs["artifact"] == str(directory)
    assert lines == [f"cached: {directory}"]
    assert TraceStep().observe(request().step, {"outputs": outputs}, ctx).ok


def test_missing_artifact_is_drift(tmp_path: Path) -> None:
    ctx = Context(state_dir=tmp_path, runtime=None)  # type: ignore[arg-type]
    observation = TraceStep().observe(
        request().step, {"outputs": {"artifact": str(tmp_path / "x")}}, ctx
    )
    assert observation.drift == (f"artifact {tmp_path / 'x'} is missing from the cache",)


def test_gpu_trace_without_a_host_fails_clearly(tmp_path: Path) -> None:
    ctx = Context(state_dir=tmp_path, runtime=None)  # type: ignore[arg-type]
    gpu = {**INPUTS, "processor": "gpu"}
    req = ApplyRequest(
        Step("trace/minilm@gpu", "trace", gpu, (), "fp", "s"), Action.CREATE, None, {}
    )
    with pytest.raises(StepFailed, match="cannot trace minilm for gpu here"):
        TraceStep().apply(req, ctx, lambda line: None)


def test_a_path_source_whose_content_is_not_the_planned_one_fails_clearly(tmp_path: Path) -> None:
    """A plan holds a path: source as written (relative to the spec) and its digest; apply
    resolves it against the spec's directory and refuses other content than the plan's."""
    model = tmp_path / "spec" / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    ctx = Context(state_dir=tmp_path / "state", runtime=None, spec_dir=tmp_path / "spec")  # type: ignore[arg-type]
    inputs = {
        **INPUTS,
        "source": {"path": "models/tiny", "sha256": "0" * 64},
        "job_source": "path:models/tiny",
    }
    assert source_here({**inputs, "source": {"path": "models/tiny"}}, ctx) == str(model)
    with pytest.raises(StepFailed, match=r"path:models/tiny resolves to .*tiny, whose content"):
        source_here(inputs, ctx)
    elsewhere = Context(state_dir=tmp_path / "state", runtime=None, spec_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(StepFailed, match=r"does not exist \(a path: source is relative to"):
        source_here(inputs, elsewhere)  # as a saved plan applied from another directory
    planned = hash_directory(model, ctx.cache_dir)
    assert source_here({**inputs, "source": {"path": "models/tiny", "sha256": planned}}, ctx) == (
        str(model)
    )


def test_steps_sharing_an_artifact_trace_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty models of one source are one artifact: of two steps applied at once, one
    traces it and the other waits for its lock and finds it cached (before the lock, each
    traced it again, into the same directory)."""
    ctx = Context(state_dir=tmp_path, runtime=None)  # type: ignore[arg-type]
    traced: list[str] = []

    def slow_trace(
        self: TraceStep, inputs: dict, source: str, out: Path, ctx: Context, log: object
    ) -> None:
        traced.append(inputs["model"])
        time.sleep(0.5)
        fill_cache(ctx)

    monkeypatch.setattr(TraceStep, "_run_local", slow_trace)
    other = ApplyRequest(
        Step("trace/other@cpu", "trace", {**INPUTS, "model": "other"}, (), "fp", "s"),
        Action.CREATE,
        None,
        {},
    )
    logs: dict[str, list[str]] = {"minilm": [], "other": []}
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(
                lambda r: TraceStep().apply(r, ctx, logs[r.step.inputs["model"]].append),
                [request(), other],
            )
        )
    assert len(traced) == 1
    assert results[0]["artifact"] == results[1]["artifact"] == str(artifact_dir(ctx, INPUTS))
    waiter = "other" if traced == ["minilm"] else "minilm"
    assert logs[waiter][-1] == f"cached: {artifact_dir(ctx, INPUTS)}"
