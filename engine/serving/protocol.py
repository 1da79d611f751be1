"""Parsing requests of both contracts into model Requests, and shaping their answers.

The old contract is `GET /predictions/{model}?seq_0=...&seq_1=...`; the Open Inference
Protocol v2 is `POST /v2/models/{name}/infer` with BYTES tensors named seq_0 and seq_1.
Every malformed request becomes a BadRequest with a message, never a server error.
"""

from __future__ import annotations

import json
from typing import Any

from engine.serving.models import ModelRunner, Request

MAX_TEXT_CHARS = 100_000


class BadRequest(Exception):
    """The client's request is malformed; the message says how."""


def from_query(runner: ModelRunner, params: dict[str, str]) -> Request:
    seq_0 = params.get("seq_0")
    if not seq_0:
        raise BadRequest("query parameter seq_0 is required")
    seq_1 = params.get("seq_1")
    if runner.needs_context and not seq_1:
        raise BadRequest(f"{runner.task} needs seq_1 (the context) as well as seq_0 (the question)")
    return _checked(Request(seq_0, seq_1))


def from_v2(runner: ModelRunner, body: bytes) -> tuple[list[Request], Any]:
    """The requests of a v2 infer body, and its `id` (echoed in the answer)."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), list):
        raise BadRequest("request body must be an object with an 'inputs' list")
    tensors: dict[str, list[str]] = {}
    for i, tensor in enumerate(data["inputs"]):
        if not isinstance(tensor, dict):
            raise BadRequest(f"inputs[{i}] must be an object")
        name = tensor.get("name")
        if name not in ("seq_0", "seq_1"):
            raise BadRequest(f"inputs[{i}].name must be 'seq_0' or 'seq_1', not {name!r}")
        if tensor.get("datatype") != "BYTES":
            raise BadRequest(f"inputs[{i}] ({name}): datatype must be BYTES")
        values = tensor.get("data")
        shape = tensor.get("shape")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BadRequest(f"inputs[{i}] ({name}): data must be a list of strings")
        if shape != [len(values)]:
            raise BadRequest(
                f"inputs[{i}] ({name}): shape {shape} does not match {len(values)} data element(s)"
            )
        tensors[name] = values
    if "seq_0" not in tensors or not tensors["seq_0"]:
        raise BadRequest("input seq_0 is required")
    firsts = tensors["seq_0"]
    seconds = tensors.get("seq_1")
    if runner.needs_context and seconds is None:
        raise BadRequest(f"{runner.task} needs input seq_1 (the contexts)")
    if seconds is not None and len(seconds) != len(firsts):
        raise BadRequest("seq_0 and seq_1 must have the same number of elements")
    requests = [_checked(Request(a, seconds[i] if seconds else None)) for i, a in enumerate(firsts)]
    return requests, data.get("id")


def _checked(request: Request) -> Request:
    if len(request.seq_0) + len(request.seq_1 or "") > MAX_TEXT_CHARS:
        raise BadRequest(f"request text longer than {MAX_TEXT_CHARS} characters")
    return request


def v2_outputs(task: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    n = len(results)
    if task == "feature-extraction":
        width = len(results[0]["embedding"]) if results else 0
        return [
            {
                "name": "embedding",
                "datatype": "FP32",
                "shape": [n, width],
                "data": [x for r in results for x in r["embedding"]],
            }
        ]
    if task == "question-answering":
        return [
            {
                "name": "answer",
                "datatype": "BYTES",
                "shape": [n],
                "data": [r["answer"] for r in results],
            },
            {
                "name": "score",
                "datatype": "FP32",
                "shape": [n],
                "data": [r["score"] for r in results],
            },
        ]
    return [
        {"name": "label", "datatype": "BYTES", "shape": [n], "data": [r["label"] for r in results]},
        {"name": "score", "datatype": "FP32", "shape": [n], "data": [r["score"] for r in results]},
    ]


def v2_metadata(name: str, runner: ModelRunner) -> dict[str, Any]:
    inputs = [{"name": "seq_0", "datatype": "BYTES", "shape": [-1]}]
    if runner.needs_context:
        inputs.append({"name": "seq_1", "datatype": "BYTES", "shape": [-1]})
    outputs = {
        "feature-extraction": [{"name": "embedding", "datatype": "FP32", "shape": [-1, -1]}],
        "question-answering": [
            {"name": "answer", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
        ],
        "text-classification": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
        ],
    }[runner.task]
    return {
        "name": name,
        "versions": ["1"],
        "platform": "pytorch_torchscript",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"task": runner.task, "sequence_length": runner.max_length},
    }
