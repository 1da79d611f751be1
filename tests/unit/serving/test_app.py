"""The model server's routes, in-process (litestar's test client) on tiny traced models."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from litestar.testing import AsyncTestClient, TestClient

from engine.serving.app import create_app
from engine.serving.limits import ServerLimits
from engine.serving.models import BundleError, Request, load_bundle

from .conftest import pack, trace

QUESTION = "where does doinfer keep state"
CONTEXT = "doinfer keeps the state of every environment in a json file under doinfer"


@pytest.fixture(scope="module")
def client(bundle: Path):
    with TestClient(create_app(load_bundle(bundle))) as client:
        yield client


def test_health_and_index(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    index = client.get("/").json()
    assert index["status"] == "ok"
    assert index["models"] == ["cls-0", "cls-1", "fe-0", "fe-1", "qa-0", "qa-1"]


def test_instances_share_one_module(bundle: Path) -> None:
    loaded = load_bundle(bundle)
    assert loaded.runners["fe-0"] is loaded.runners["fe-1"]


def test_instances_may_each_have_their_own_module(tiny_artifacts, tmp_path: Path) -> None:
    bundle = pack(
        tmp_path,
        {"feature-extraction": tiny_artifacts["feature-extraction"][1]},
        share_weights=False,
    )
    loaded = load_bundle(bundle)
    assert loaded.runners["fe-0"].modules[32] is not loaded.runners["fe-1"].modules[32]


def test_on_inf_every_instance_has_its_own_module(tiny_artifacts, tmp_path: Path) -> None:
    """A NeuronCore runs one loaded module; sharing is for cpu and gpu. (A CPU module
    stands in for a Neuron one: loading it is the same call.)"""
    bundle = pack(
        tmp_path, {"feature-extraction": tiny_artifacts["feature-extraction"][1]}, processor="inf"
    )
    loaded = load_bundle(bundle)
    assert loaded.runners["fe-0"].modules[32] is not loaded.runners["fe-1"].modules[32]
    assert [r.name for r, _ in loaded.distinct_runners()] == ["fe-0", "fe-1"]


def untraced_answer(source: Path, question: str, context: str) -> str:
    """What the untraced model answers, decoded the same way (best span in the context)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForQuestionAnswering.from_pretrained(source).eval()
    encoded = tokenizer(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoded.pop("offset_mapping")[0]
    with torch.no_grad():
        out = model(**encoded)
    context_tokens = [i for i, s in enumerate(encoded.sequence_ids(0)) if s == 1]
    best, span = -1.0, (0, 0)
    start_p = torch.softmax(out.start_logits[0, context_tokens], 0)
    end_p = torch.softmax(out.end_logits[0, context_tokens], 0)
    for a in range(len(context_tokens)):
        for b in range(a, min(a + 30, len(context_tokens))):
            if float(start_p[a] * end_p[b]) > best:
                best, span = float(start_p[a] * end_p[b]), (a, b)
    begin = int(offsets[context_tokens[span[0]]][0])
    end = int(offsets[context_tokens[span[1]]][1])
    return context[begin:end]


def test_question_answering_matches_the_untraced_model(client: TestClient, tiny_artifacts) -> None:
    response = client.get("/predictions/qa-1", params={"seq_0": QUESTION, "seq_1": CONTEXT})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "qa-1"
    assert body["answer"] == untraced_answer(
        tiny_artifacts["question-answering"][0], QUESTION, CONTEXT
    )
    assert body["answer"] in CONTEXT and 0 < body["score"] <= 1


def test_classification_answers_a_label(client: TestClient) -> None:
    body = client.get("/predictions/cls-0", params={"seq_0": "the model was good"}).json()
    assert body["label"] in {"negative", "neutral", "positive"}
    assert 0 < body["score"] <= 1


def test_embedding_does_not_depend_on_batch_padding(client: TestClient) -> None:
    alone = client.get("/predictions/fe-0", params={"seq_0": "the model"}).json()["embedding"]
    batch = client.post(
        "/v2/models/fe-0/infer",
        json={
            "id": "req-1",
            "inputs": [
                {
                    "name": "seq_0",
                    "shape": [2],
                    "datatype": "BYTES",
                    "data": ["the model", "the model is packed densely on few machines"],
                }
            ],
        },
    )
    assert batch.status_code == 200
    body = batch.json()
    assert body["id"] == "req-1" and body["model_name"] == "fe-0"
    (output,) = body["outputs"]
    assert output["name"] == "embedding" and output["datatype"] == "FP32"
    n, width = output["shape"]
    assert (n, width) == (2, len(alone))
    first = output["data"][:width]
    assert max(abs(a - b) for a, b in zip(first, alone, strict=True)) < 1e-5


def test_v2_question_answering_and_metadata(client: TestClient) -> None:
    body = client.post(
        "/v2/models/qa-0/infer",
        json={
            "inputs": [
                {"name": "seq_0", "shape": [1], "datatype": "BYTES", "data": [QUESTION]},
                {"name": "seq_1", "shape": [1], "datatype": "BYTES", "data": [CONTEXT]},
            ]
        },
    ).json()
    assert [o["name"] for o in body["outputs"]] == ["answer", "score"]
    meta = client.get("/v2/models/qa-0").json()
    assert meta["platform"] == "pytorch_torchscript"
    assert [i["name"] for i in meta["inputs"]] == ["seq_0", "seq_1"]
    assert client.get("/v2/models/qa-0/ready").json() == {"name": "qa-0", "ready": True}


@pytest.mark.parametrize(
    ("method", "url", "payload", "status", "message"),
    [
        ("get", "/predictions/nope", {"seq_0": "x"}, 404, "no model 'nope'"),
        ("get", "/v2/models/nope", None, 404, "no model 'nope'"),
        ("get", "/v2/models/nope/ready", None, 404, "no model 'nope'"),
        ("get", "/predictions/fe-0", {}, 400, "seq_0 is required"),
        ("get", "/predictions/qa-0", {"seq_0": "where"}, 400, "needs seq_1"),
        ("post", "/v2/models/fe-0/infer", "{not json", 400, "not JSON"),
        ("post", "/v2/models/fe-0/infer", [], 400, "'inputs' list"),
        (
            "post",
            "/v2/models/fe-0/infer",
            {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]},
            400,
            "must be 'seq_0' or 'seq_1'",
        ),
        (
            "post",
            "/v2/models/fe-0/infer",
            {"inputs": [{"name": "seq_0", "shape": [1], "datatype": "FP32", "data": ["a"]}]},
            400,
            "datatype must be BYTES",
        ),
        (
            "post",
            "/v2/models/fe-0/infer",
            {"inputs": [{"name": "seq_0", "shape": [3], "datatype": "BYTES", "data": ["a"]}]},
            400,
            "does not match",
        ),
        (
            "post",
            "/v2/models/fe-0/infer",
            {"inputs": [{"name": "seq_0", "shape": [1], "datatype": "BYTES", "data": [1]}]},
            400,
            "list of strings",
        ),
        (
            "post",
            "/v2/models/qa-0/infer",
            {"inputs": [{"name": "seq_0", "shape": [1], "datatype": "BYTES", "data": ["a"]}]},
            400,
            "needs input seq_1",
        ),
        ("post", "/v2/models/fe-0/infer", {"inputs": []}, 400, "seq_0 is required"),
    ],
)
def test_bad_requests_get_a_message_never_a_500(
    client: TestClient, method: str, url: str, payload, status: int, message: str
) -> None:
    if method == "get":
        response = client.get(url, params=payload)
    elif isinstance(payload, str):
        response = client.post(url, content=payload)
    else:
        response = client.post(url, json=payload)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    if status == 404:
        assert "fe-0" in response.json()["models"]


def test_unknown_route_is_a_404(client: TestClient) -> None:
    assert client.get("/nowhere").status_code == 404


def test_a_tampered_module_is_refused(tiny_artifacts, tmp_path: Path) -> None:
    bundle = pack(tmp_path, {"feature-extraction": tiny_artifacts["feature-extraction"][1]})
    module = bundle / "models" / "fe" / "model.pt"
    data = module.read_bytes()
    module.unlink()  # a hard link into the cache: replace it, do not write through it
    module.write_bytes(data + b"tampered")
    with pytest.raises(BundleError, match="does not match the trace metadata"):
        load_bundle(bundle)
    meta = json.loads((bundle / "models" / "fe" / "doinfer-trace.json").read_text())
    assert meta["task"] == "feature-extraction"


def test_a_question_longer_than_the_model_takes_is_a_400(client: TestClient) -> None:
    """The traced sequence length (32 here) cannot hold the question and any context."""
    question = " ".join(["where"] * 60)
    response = client.get("/predictions/qa-0", params={"seq_0": question, "seq_1": CONTEXT})
    assert response.status_code == 400
    assert "too long" in response.json()["error"]


def test_very_long_texts_are_truncated_not_refused(client: TestClient) -> None:
    text = " ".join(["model"] * 2000)
    assert client.get("/predictions/fe-0", params={"seq_0": text}).status_code == 200
    long_context = " ".join(["state"] * 2000)
    answer = client.get("/predictions/qa-0", params={"seq_0": "where", "seq_1": long_context})
    assert answer.status_code == 200


def _samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_metrics_count_requests_by_model_and_status_in_prometheus_text(
    client: TestClient,
) -> None:
    before = _samples(client.get("/metrics").text)
    client.get("/predictions/cls-1", params={"seq_0": "counted"})
    client.get("/predictions/cls-1", params={})  # a 400
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)

    def grew(sample: str) -> float:
        return after[sample] - before.get(sample, 0.0)

    assert grew('doinfer_requests_total{code="200",model="cls-1"}') == 1
    assert grew('doinfer_requests_total{code="400",model="cls-1"}') == 1
    assert grew('doinfer_request_duration_seconds_count{model="cls-1"}') == 2
    assert grew('doinfer_batch_size_count{queue="cls"}') == 1  # the 400 never queued
    assert after['doinfer_queue_depth{queue="cls"}'] == 0
    lines = response.text.splitlines()
    assert "# TYPE doinfer_batch_duration_seconds histogram" in lines
    assert "# TYPE doinfer_dropped_requests_total counter" in lines


def cosine(a: list[float], b: list[float]) -> float:
    return float(torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b), dim=0))


def test_a_bf16_artifact_is_served_on_the_same_routes_in_fp32_json(
    tiny_artifacts, tmp_path: Path
) -> None:
    """The module computes in bf16; the answers leave as fp32 JSON, as an fp32 module's do."""
    if not {"avx512_bf16", "amx_bf16"} & set(Path("/proc/cpuinfo").read_text().split()):
        pytest.skip("this CPU has neither AVX-512 BF16 nor AMX: bf16 is refused here")
    artifacts = {
        task: trace(tiny_artifacts[task][0], task, tmp_path / f"bf16-{task}", precision="bf16")
        for task in ("feature-extraction", "question-answering")
    }
    bundle = pack(tmp_path / "state", artifacts)
    loaded = load_bundle(bundle)
    assert {r.meta["precision"] for r in loaded.runners.values()} == {"bf16"}
    fp32_artifact = tiny_artifacts["feature-extraction"][1]
    fp32 = load_bundle(pack(tmp_path / "fp32", {"feature-extraction": fp32_artifact}))
    text = "the model is packed densely on few machines"
    reference = fp32.runners["fe-0"].infer([Request(text)])[0]["embedding"]
    with TestClient(create_app(loaded)) as client:
        alone = client.get("/predictions/fe-1", params={"seq_0": text}).json()["embedding"]
        batch = client.post(
            "/v2/models/fe-0/infer",
            json={
                "inputs": [
                    {"name": "seq_0", "shape": [2], "datatype": "BYTES", "data": ["the", text]}
                ]
            },
        ).json()
        answer = client.get(
            "/predictions/qa-0", params={"seq_0": QUESTION, "seq_1": CONTEXT}
        ).json()
    assert len(alone) == len(reference) and cosine(alone, reference) > 0.999
    (output,) = batch["outputs"]
    assert output["datatype"] == "FP32" and output["shape"] == [2, len(alone)]
    assert cosine(output["data"][len(alone) :], alone) > 0.9999  # batched as alone
    assert answer["answer"] in CONTEXT and 0 < answer["score"] <= 1


def v2_body(*texts: str, shape: list[int] | None = None, **extra: Any) -> str:
    """A v2 infer body as JSON text (escaped: a lone surrogate survives as `\\ud800`)."""
    tensor = {"name": "seq_0", "datatype": "BYTES", "shape": shape or [len(texts)]}
    return json.dumps({"inputs": [{**tensor, "data": list(texts)}], **extra})


def test_a_text_the_model_cannot_read_fails_alone_and_logs_no_traceback(
    bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lone surrogate cannot be encoded: the tokenizer failed the whole batch on it, so
    every request batched with it answered 500 (and each logged a traceback)."""

    async def scenario() -> list[int]:
        async with AsyncTestClient(create_app(load_bundle(bundle))) as client:
            bodies = [v2_body(f"text number {i}") for i in range(8)]
            bodies.insert(3, v2_body("fine", "bad \ud800 text"))
            responses = await asyncio.gather(
                *(client.post("/v2/models/fe-0/infer", content=b) for b in bodies)
            )
            assert "lone surrogate, U+D800" in responses[3].json()["error"]
            return [r.status_code for r in responses]

    with caplog.at_level(logging.INFO):
        codes = asyncio.run(scenario())
    assert codes == [200, 200, 200, 400, 200, 200, 200, 200, 200]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (v2_body(""), "element 0: seq_0 is empty"),
        (v2_body("a", "\udfff"), "element 1: seq_0 is not valid Unicode"),
        (v2_body("a", shape=[2, 1]), "shape [2, 1] does not match 1 data element"),
        (v2_body("a", outputs=[{"name": "label"}]), "no output 'label' (it has embedding)"),
        (v2_body("a", outputs=["embedding"]), "outputs must be a list of objects"),
    ],
)
def test_v2_bodies_the_model_cannot_take_are_a_400(
    client: TestClient, body: str, message: str
) -> None:
    response = client.post("/v2/models/fe-0/infer", content=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_the_question_answering_context_is_checked_too(client: TestClient) -> None:
    body = json.loads(v2_body(QUESTION))
    body["inputs"].append({"name": "seq_1", "datatype": "BYTES", "shape": [1], "data": [""]})
    response = client.post("/v2/models/qa-0/infer", json=body)
    assert response.status_code == 400
    assert "seq_1 is empty" in response.json()["error"]


@pytest.mark.parametrize(
    "query", ["seq_0=", "seq_0=%FF%FEtext", "seq_0=question&seq_1=%C3%28"], ids=str
)
def test_the_old_route_takes_the_same_texts(client: TestClient, query: str) -> None:
    """An empty text and bytes that are not UTF-8 (which litestar's parser turns into
    U+FFFD, text the client never sent) are a 400 on the old route as on v2."""
    response = client.get(f"/predictions/qa-0?{query}")
    assert response.status_code == 400, response.text
    assert ("not UTF-8" in response.text) == ("%" in query)


def test_non_ascii_text_is_read_whole(client: TestClient) -> None:
    assert client.get("/predictions/cls-0?seq_0=caf%C3%A9+%F0%9F%98%80").status_code == 200
    assert client.post("/v2/models/cls-0/infer", content=v2_body("café 😀")).status_code == 200


@pytest.mark.parametrize("shape", [[1, 2], [2, 1], [1, 1, 2]])
def test_v2_takes_any_shape_that_holds_its_texts(client: TestClient, shape: list[int]) -> None:
    response = client.post("/v2/models/cls-0/infer", content=v2_body("a", "b", shape=shape))
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"] == [2]


def test_v2_answers_the_outputs_asked_for_in_their_order(client: TestClient) -> None:
    ask = [{"name": "score"}, {"name": "label"}]
    body = client.post("/v2/models/cls-0/infer", content=v2_body("a", outputs=ask)).json()
    assert [o["name"] for o in body["outputs"]] == ["score", "label"]
    ask = [{"name": "score"}]
    body = client.post("/v2/models/cls-0/infer", content=v2_body("a", outputs=ask)).json()
    assert [o["name"] for o in body["outputs"]] == ["score"]


def test_v2_server_metadata(client: TestClient) -> None:
    response = client.get("/v2")
    assert response.status_code == 200
    assert response.json() == {
        "name": "doinfer",
        "version": importlib.metadata.version("doinfer"),
        "extensions": [],
    }


def test_requests_larger_than_the_server_takes_are_a_413(bundle: Path) -> None:
    limits = ServerLimits(max_body_bytes=4096, max_inputs=100)
    with TestClient(create_app(load_bundle(bundle), limits)) as client:
        big = client.post("/v2/models/fe-0/infer", content=v2_body("x" * 5000))
        assert big.status_code == 413
        many = client.post("/v2/models/fe-0/infer", content=v2_body(*["x"] * 101))
        assert many.status_code == 413
        assert "101 texts, where this server takes at most 100" in many.json()["error"]
        # the bundle's max_queue is 64: 65 texts can never be queued, retrying cannot help
        unqueueable = client.post("/v2/models/fe-0/infer", content=v2_body(*["x"] * 65))
        assert unqueueable.status_code == 413 and "Retry-After" not in unqueueable.headers
        assert "queues at most 64" in unqueueable.json()["error"]
        assert client.post("/v2/models/fe-0/infer", content=v2_body(*["x"] * 64)).is_success
        counted = _samples(client.get("/metrics").text)
        assert counted['doinfer_requests_total{code="413",model="fe-0"}'] == 2


def test_a_draining_server_is_not_ready(bundle: Path) -> None:
    app = create_app(load_bundle(bundle))
    with TestClient(app) as client:
        assert client.get("/v2/health/ready").status_code == 200
        app.state.draining = True
        response = client.get("/v2/health/ready")
        assert (response.status_code, response.json()) == (503, {"ready": False})
        assert client.get("/v2/health/live").status_code == 200


def test_metrics_include_the_process_metrics(client: TestClient) -> None:
    samples = _samples(client.get("/metrics").text)
    assert samples["process_resident_memory_bytes"] > 50e6  # torch alone is more
    assert samples["process_open_fds"] > 0
    assert samples["process_cpu_seconds_total"] > 0
    assert samples["process_start_time_seconds"] > 1.7e9


@pytest.mark.parametrize(
    "request_",
    [
        ("get", "/predictions/no%1B%5B31mpe", None),
        ("get", "/v2/models/x%1B%5D0;title%07", None),
        ("post", "/v2/models/fe-0/infer", '{"inputs": [{"name": "\\u001b[2J"}]}'),
        ("post", "/v2/models/fe-0/infer", v2_body("a", shape=["\u001b[2J"])),
        ("post", "/v2/models/fe-0/infer", v2_body("a", outputs=[{"name": "\u202eevil\r\n"}])),
    ],
)
def test_errors_never_carry_raw_control_characters(
    client: TestClient, request_: tuple[str, str, str | None]
) -> None:
    method, url, body = request_
    response = client.request(method, url, content=body)
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert error.isprintable() and ("\\x1b" in error or "\\u202e" in error), error
