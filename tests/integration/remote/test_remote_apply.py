"""Done means: `doinfer apply` of a spec whose gpu model is traced on an SSH host.

The host is sshd on 127.0.0.1 (tests/sshd.py: it traces "gpu" models on the cpu, the one
declared difference from a GPU host). The CLI runs through FAKE_GPU_CLI so the local
runtime may serve the gpu server on this GPU-less machine (see conftest.py); the model
server loads onto the cpu either way.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import sshd
from tests.integration.test_local_apply import server_pids

from .conftest import doinfer_with_fake_gpu, spec_with_host

pytestmark = pytest.mark.integration
TEXT = "where does the engine keep state after every step"


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "state"
    yield directory
    spec = tmp_path / "spec.yaml"
    if spec.exists():
        doinfer_with_fake_gpu(directory, "destroy", str(spec), "--yes")
    for pid in server_pids(directory):  # never leave a server behind, even on failure
        os.kill(pid, signal.SIGKILL)


def reference_embedding(model_dir: Path) -> list[float]:
    """The untraced model's mean-pooled embedding (the tiny model has no pooling config)."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    encoded = tokenizer([TEXT], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1))[0].tolist()


def test_apply_traces_on_the_host_serves_the_answer_and_reapplies_nothing(
    server: sshd.SshServer, tiny: Path, tmp_path: Path, state_dir: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_with_host(tiny, server.host_settings("gpu-builder", "gpu")))

    plan = doinfer_with_fake_gpu(state_dir, "plan", str(spec))
    assert plan.returncode == 0, plan.stderr
    trace_line = next(line for line in plan.stdout.splitlines() if "trace/tiny@gpu" in line)
    assert trace_line.endswith(f", on host gpu-builder (root@127.0.0.1:{server.port})")

    applied = doinfer_with_fake_gpu(state_dir, "apply", str(spec), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply complete" in applied.stdout
    # the remote job's output, streamed into the apply's progress
    assert "[trace/tiny@gpu] gpu-builder: tracing on gpu at fp32 (1x32" in applied.stderr
    assert "[trace/tiny@gpu] downloaded and verified" in applied.stderr

    status = doinfer_with_fake_gpu(state_dir, "status", str(spec), "--format", "json")
    (replica,) = json.loads(status.stdout)["replicas"]
    query = urllib.parse.urlencode({"seq_0": TEXT})
    with urllib.request.urlopen(f"{replica['url']}/predictions/tiny-0?{query}", timeout=30) as r:
        served = json.loads(r.read())["embedding"]
    expected = reference_embedding(tiny)
    assert max(abs(a - b) for a, b in zip(served, expected, strict=True)) < 1e-4

    logins = server.logins()
    again = doinfer_with_fake_gpu(state_dir, "apply", str(spec), "--yes")
    assert again.returncode == 0, again.stderr
    assert "No changes." in again.stdout
    assert server.logins() == logins  # nothing ran remotely
