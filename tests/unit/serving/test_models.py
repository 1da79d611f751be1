"""ModelRunner: a batch, padded only as far as it must be, answers as each request alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.artifacts import TRACE_META_FILE, padded_lengths
from engine.serving.models import BundleError, InvalidInput, ModelRunner, Request, load_bundle

from .conftest import pack

CONTEXT = "doinfer keeps the state of every environment in a json file under doinfer"
REQUESTS = {
    "feature-extraction": [
        Request("the model"),
        Request("the model is packed densely on few machines to save money"),
        Request("one " * 100),  # past the traced length: truncated
    ],
    "text-classification": [
        Request("good"),
        Request("the servers came up quickly and every answer was correct"),
        Request("bad " * 100),
    ],
    "question-answering": [
        Request("where is the state", CONTEXT),
        Request("what does doinfer keep in a json file", CONTEXT),
        Request("where", "state " * 100),
    ],
}


@pytest.fixture(scope="module")
def runners(bundle: Path) -> dict[str, ModelRunner]:
    loaded = load_bundle(bundle)
    return {r.task: r for r in loaded.runners.values()}


def close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if "embedding" in a:
        return max(abs(x - y) for x, y in zip(a["embedding"], b["embedding"], strict=True)) < 1e-5
    key = "label" if "label" in a else "answer"
    return a[key] == b[key] and abs(a["score"] - b["score"]) < 1e-5


@pytest.mark.parametrize("task", sorted(REQUESTS))
def test_a_batch_answers_each_request_as_it_would_be_answered_alone(
    runners: dict[str, ModelRunner], task: str
) -> None:
    runner = runners[task]
    requests = REQUESTS[task]
    alone = [runner.infer([r])[0] for r in requests]
    together = runner.infer(requests)
    assert all(close(a, b) for a, b in zip(alone, together, strict=True)), (alone, together)


@pytest.mark.parametrize("task", sorted(REQUESTS))
def test_fixed_shape_padding_gives_the_same_answers(
    runners: dict[str, ModelRunner], task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The padding a Neuron module needs (compiled lengths, the traced batch size, larger
    batches in chunks), exercised on a CPU module, which accepts those shapes too: the
    padding rows and columns must not change any answer."""
    runner = runners[task]
    requests = REQUESTS[task]
    dynamic = runner.infer(requests)
    shapes: list[tuple[int, ...]] = []
    module = runner.modules[runner.max_length]

    def recording(*tensors: Any) -> Any:
        shapes.append(tuple(tensors[0].shape))
        return module(*tensors)

    lengths = padded_lengths(runner.max_length)
    monkeypatch.setattr(runner, "modules", dict.fromkeys(lengths, recording))
    monkeypatch.setattr(runner, "batch_rows", 2)
    monkeypatch.setattr(runner, "lengths", lengths)
    fixed = runner.infer(requests)
    assert all(close(a, b) for a, b in zip(dynamic, fixed, strict=True))
    assert {rows for rows, _ in shapes} == {2}
    assert all(length in padded_lengths(runner.max_length) for _, length in shapes)
    assert len(shapes) == 2  # three requests, in chunks of the traced batch size


def test_a_batch_is_padded_to_its_longest_input_not_the_traced_length(
    runners: dict[str, ModelRunner], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = runners["feature-extraction"]
    widths: list[int] = []
    module = runner.modules[runner.max_length]
    recording = {runner.max_length: lambda *t: widths.append(t[0].shape[1]) or module(*t)}
    monkeypatch.setattr(runner, "modules", recording)
    runner.infer([Request("a"), Request("a b c")])
    assert widths == [8]  # [CLS] a b c [SEP] = 5 tokens, padded to a multiple of 8
    assert runner.max_length == 32


def test_the_batcher_sizes_a_request_by_the_width_it_would_be_padded_to_alone(
    runners: dict[str, ModelRunner], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Estimated from characters (about 4 a token, plus 3 special tokens): on cpu rounded up
    to a multiple of 8, never past the traced length; on a fixed-shape processor the
    compiled length it would run at, so two requests that share one are not kept apart."""
    runner = runners["feature-extraction"]
    assert runner.max_length == 32
    assert runner.estimated_width(Request("hi")) == 8
    assert runner.estimated_width(Request("x" * 40)) == 16  # 10 + 3 tokens
    assert runner.estimated_width(Request("x" * 60, "y" * 40)) == 32  # 25 + 3
    assert runner.estimated_width(Request("x" * 1000)) == 32  # truncated at the traced length
    monkeypatch.setattr(runner, "lengths", padded_lengths(runner.max_length))  # [16, 32]
    assert runner.estimated_width(Request("hi")) == 16
    assert runner.estimated_width(Request("x" * 60)) == 32


def test_an_invalid_request_does_not_spoil_its_batch(runners: dict[str, ModelRunner]) -> None:
    runner = runners["question-answering"]
    answers = runner.infer(
        [Request("where " * 60, CONTEXT), Request("where is the state", CONTEXT)]
    )
    assert isinstance(answers[0], InvalidInput) and "too long" in str(answers[0])
    assert answers[1]["answer"] in CONTEXT


def inf_artifact(artifact: Path, root: Path) -> Path:
    """A copy of a CPU artifact laid out as an inf one: a module file per padded length
    (CPU modules stand in for Neuron ones: they take those shapes too)."""
    copy = root / "inf-artifact"
    shutil.copytree(artifact, copy)
    meta = json.loads((copy / TRACE_META_FILE).read_text())
    meta["processor"], meta["modules"] = "inf", {}
    for length in padded_lengths(meta["trace"]["sequence_length"])[:-1]:
        file = f"model-{length}.pt"
        shutil.copy(copy / "model.pt", copy / file)
        meta["modules"][str(length)] = {"file": file, "sha256": meta["sha256"]}
    (copy / TRACE_META_FILE).write_text(json.dumps(meta))
    return copy


def test_an_inf_artifact_runs_the_module_compiled_for_each_padded_length(
    tiny_artifacts, tmp_path: Path
) -> None:
    artifact = inf_artifact(tiny_artifacts["feature-extraction"][1], tmp_path)
    bundle = pack(tmp_path / "state", {"feature-extraction": artifact}, processor="inf")
    runner = load_bundle(bundle).runners["fe-0"]
    assert sorted(runner.modules) == [16, 32]
    assert len({id(m) for m in runner.modules.values()}) == 2
    assert runner.module_for(16) is runner.modules[16]
    assert runner.infer([Request("a short one")])[0]["embedding"]


def test_a_tampered_per_length_module_is_refused(tiny_artifacts, tmp_path: Path) -> None:
    artifact = inf_artifact(tiny_artifacts["feature-extraction"][1], tmp_path)
    bundle = pack(tmp_path / "state", {"feature-extraction": artifact}, processor="inf")
    module = bundle / "models" / "fe" / "model-16.pt"
    data = module.read_bytes()
    module.unlink()
    module.write_bytes(data + b"tampered")
    with pytest.raises(BundleError, match=r"model-16\.pt: sha256"):
        load_bundle(bundle)


@pytest.mark.parametrize(
    ("processor", "threads"), [("cpu", 1), ("gpu", 4)], ids=["cpu-one-thread", "gpu-one-each"]
)
def test_on_cpu_every_model_computes_on_one_thread_elsewhere_each_on_its_own(
    tiny_artifacts, tmp_path: Path, processor: str, threads: int
) -> None:
    """On cpu a second compute thread would start a second OpenMP team (see
    tests/integration/serving/test_compute_thread.py); a device runs models at once. The
    gpu bundle here holds CPU-traced tiny models, the stand-in for a GPU this machine lacks:
    what is checked is which thread each loaded model computes on."""
    artifacts = {
        task: tiny_artifacts[task][1] for task in ("feature-extraction", "text-classification")
    }
    bundle = pack(tmp_path / "state", artifacts, share_weights=False, processor=processor)
    runners = load_bundle(bundle).runners
    assert len(runners) == 4 and len({id(r) for r in runners.values()}) == 4
    assert len({id(r.executor) for r in runners.values()}) == threads
