"""ModelRunner: a batch, padded only as far as it must be, answers as each request alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.artifacts import padded_lengths
from engine.serving.models import InvalidInput, ModelRunner, Request, load_bundle

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
    module = runner.module

    def recording(*tensors: Any) -> Any:
        shapes.append(tuple(tensors[0].shape))
        return module(*tensors)

    monkeypatch.setattr(runner, "module", recording)
    monkeypatch.setattr(runner, "batch_rows", 2)
    monkeypatch.setattr(runner, "lengths", padded_lengths(runner.max_length))
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
    module = runner.module
    monkeypatch.setattr(runner, "module", lambda *t: widths.append(t[0].shape[1]) or module(*t))
    runner.infer([Request("a"), Request("a b c")])
    assert widths == [8]  # [CLS] a b c [SEP] = 5 tokens, padded to a multiple of 8
    assert runner.max_length == 32


def test_an_invalid_request_does_not_spoil_its_batch(runners: dict[str, ModelRunner]) -> None:
    runner = runners["question-answering"]
    answers = runner.infer(
        [Request("where " * 60, CONTEXT), Request("where is the state", CONTEXT)]
    )
    assert isinstance(answers[0], InvalidInput) and "too long" in str(answers[0])
    assert answers[1]["answer"] in CONTEXT
