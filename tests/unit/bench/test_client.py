"""A target's request in each protocol, as the model server reads it."""

from __future__ import annotations

import json
import types

from engine.bench.client import prepare
from engine.bench.targets import Target
from engine.serving.protocol import from_v2

QA = Target("http://127.0.0.1:4000", "qa", 0, "bert-1", "bert", "question-answering")


def head_and_body(data: bytes) -> tuple[list[str], bytes]:
    head, body = data.split(b"\r\n\r\n", 1)
    return head.decode().split("\r\n"), body


def test_predictions_is_a_get_with_a_query() -> None:
    head, body = head_and_body(prepare(QA, "who", "a context", "predictions").data)
    assert head[0] == "GET /predictions/bert-1?seq_0=who&seq_1=a+context HTTP/1.1"
    assert body == b""


def test_v2_is_a_post_of_bytes_tensors_the_server_accepts() -> None:
    request = prepare(QA, "wer? ünïcode", None, "v2")
    assert (request.host, request.port) == ("127.0.0.1", 4000)
    head, body = head_and_body(request.data)
    assert head[0] == "POST /v2/models/bert-1/infer HTTP/1.1"
    assert f"Content-Length: {len(body)}" in head
    inputs = json.loads(body)["inputs"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in inputs] == [
        ("seq_0", "BYTES", [1]),
        ("seq_1", "BYTES", [1]),  # question answering: the default context
    ]
    runner = types.SimpleNamespace(needs_context=True, task="question-answering")
    (parsed,) = from_v2(runner, body, max_inputs=1).requests  # type: ignore[arg-type]
    assert parsed.seq_0 == "wer? ünïcode" and parsed.seq_1 == inputs[1]["data"][0]
