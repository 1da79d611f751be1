"""Parsing requests of both contracts into model Requests, and shaping their answers.

The old contract is `GET /predictions/{model}?seq_0=...&seq_1=...`; the Open Inference
Protocol v2 is `POST /v2/models/{name}/infer` with BYTES tensors named seq_0 and seq_1.
Every malformed request becomes a BadRequest with a message, never a server error, and
every text is checked here, before it joins a batch: one client's bad text must not fail
the requests batched with it. Both routes take the same texts: a model reads only
non-empty, valid Unicode text (an empty one is a 400 on either route).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from engine.serving.models import ModelRunner, Request

MAX_TEXT_CHARS = 100_000

# the outputs each task answers, in the order an answer lists them
OUTPUTS: dict[str, list[dict[str, Any]]] = {
    "feature-extraction": [{"name": "embedding", "datatype": "FP32", "shape": [-1, -1]}],
    "question-answering": [
        {"name": "answer", "datatype": "BYTES", "shape": [-1]},
        {"name": "score", "datatype": "FP32", "shape": [-1]},
    ],
    "text-classification": [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "score", "datatype": "FP32", "shape": [-1]},
    ],
}


class BadRequest(Exception):
    """The client's request is malformed; the message says how."""


class TooLarge(Exception):
    """The request is larger than this server ever takes (a 413: retrying cannot help)."""


@dataclass(frozen=True)
class Parsed:
    """An inference request as parsed: its model Requests and, on v2, its id and outputs."""

    requests: list[Request]
    id: Any = None  # echoed in a v2 answer
    outputs: list[str] | None = None  # the v2 output names asked for, in order; None: all


def from_query(runner: ModelRunner, query: bytes) -> Parsed:
    """The request of a raw query string (not litestar's parse, which turns bytes that are
    not UTF-8 into U+FFFD and so into text the client never sent)."""
    params = _query_bytes(query)
    seq_0 = _decoded(params, b"seq_0")
    if not seq_0:
        raise BadRequest("query parameter seq_0 is required")
    seq_1 = _decoded(params, b"seq_1")
    if runner.needs_context and not seq_1:
        raise BadRequest(f"{runner.task} needs seq_1 (the context) as well as seq_0 (the question)")
    return Parsed([_checked(Request(seq_0, seq_1), "the query")])


def _query_bytes(query: bytes) -> dict[bytes, bytes]:
    """A query string's parameters, percent-decoded to bytes (the first of a repeated name)."""
    params: dict[bytes, bytes] = {}
    for field in query.split(b"&"):
        name, _, value = field.partition(b"=")
        name = unquote_to_bytes(name.replace(b"+", b" "))
        params.setdefault(name, unquote_to_bytes(value.replace(b"+", b" ")))
    return params


def _decoded(params: dict[bytes, bytes], name: bytes) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"query parameter {name.decode()} is not UTF-8 (byte {exc.start} is "
            f"0x{value[exc.start]:02x})"
        ) from None


def from_v2(runner: ModelRunner, body: bytes, max_inputs: int) -> Parsed:
    """The requests of a v2 infer body, its `id` and the outputs it asks for."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is not JSON this server takes: nested too deeply") from None
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
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BadRequest(f"inputs[{i}] ({name}): data must be a list of strings")
        if len(values) > max_inputs:
            raise TooLarge(
                f"inputs[{i}] ({name}): {len(values)} texts, where this server takes at most "
                f"{max_inputs} per request"
            )
        shape = tensor.get("shape")
        if not _is_shape_of(shape, len(values)):
            raise BadRequest(
                f"inputs[{i}] ({name}): shape {shape} does not match {len(values)} data "
                f"element(s) (its dimensions must multiply to the number of elements)"
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
    requests = [
        _checked(Request(a, seconds[i] if seconds else None), f"element {i}")
        for i, a in enumerate(firsts)
    ]
    return Parsed(requests, data.get("id"), _wanted_outputs(runner.task, data.get("outputs")))


def _is_shape_of(shape: Any, count: int) -> bool:
    """Whether `shape` is a list of dimensions that hold `count` elements: [n], [n, 1] and
    [1, n] all hold n texts (clients send either)."""
    return (
        isinstance(shape, list)
        and bool(shape)
        and all(type(d) is int and d >= 0 for d in shape)
        and math.prod(shape) == count
    )


def _wanted_outputs(task: str, outputs: Any) -> list[str] | None:
    if outputs is None:
        return None
    known = [o["name"] for o in OUTPUTS[task]]
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise BadRequest("outputs must be a list of objects with a 'name'")
    names = [o["name"] for o in outputs]
    for i, name in enumerate(names):
        if name not in known:
            raise BadRequest(
                f"outputs[{i}]: this model has no output {name!r} (it has {', '.join(known)})"
            )
    return names


def _checked(request: Request, where: str) -> Request:
    """The request, if the model can read its texts: non-empty, valid Unicode (a lone
    surrogate cannot be encoded, and the tokenizer would fail the whole batch on it), and
    not absurdly long."""
    if len(request.seq_0) + len(request.seq_1 or "") > MAX_TEXT_CHARS:
        raise BadRequest(f"{where}: text longer than {MAX_TEXT_CHARS} characters")
    for label, text in (("seq_0", request.seq_0), ("seq_1", request.seq_1)):
        if text is None:
            continue
        if not text:
            raise BadRequest(f"{where}: {label} is empty (there is no text to read)")
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError as exc:
                raise BadRequest(
                    f"{where}: {label} is not valid Unicode text (a lone surrogate, "
                    f"U+{ord(text[exc.start]):04X}, at character {exc.start})"
                ) from None
    return request


def v2_outputs(
    task: str, results: list[dict[str, Any]], wanted: list[str] | None = None
) -> list[dict[str, Any]]:
    """The answer's output tensors: every one the task has, or those `wanted`, in order."""
    n = len(results)
    if task == "feature-extraction":
        width = len(results[0]["embedding"]) if results else 0
        outputs = {
            "embedding": {
                "name": "embedding",
                "datatype": "FP32",
                "shape": [n, width],
                "data": [x for r in results for x in r["embedding"]],
            }
        }
    else:
        text = "answer" if task == "question-answering" else "label"
        outputs = {
            text: {
                "name": text,
                "datatype": "BYTES",
                "shape": [n],
                "data": [r[text] for r in results],
            },
            "score": {
                "name": "score",
                "datatype": "FP32",
                "shape": [n],
                "data": [r["score"] for r in results],
            },
        }
    return [outputs[name] for name in (wanted or list(outputs))]


def v2_metadata(name: str, runner: ModelRunner) -> dict[str, Any]:
    inputs = [{"name": "seq_0", "datatype": "BYTES", "shape": [-1]}]
    if runner.needs_context:
        inputs.append({"name": "seq_1", "datatype": "BYTES", "shape": [-1]})
    return {
        "name": name,
        "versions": ["1"],
        "platform": "pytorch_torchscript",
        "inputs": inputs,
        "outputs": OUTPUTS[runner.task],
        "parameters": {"task": runner.task, "sequence_length": runner.max_length},
    }
