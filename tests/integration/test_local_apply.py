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

from tests.minilm import reference_embedding

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "local.yaml"
TEXT = "Inference servers packed densely onto few machines cost less."

pytestmark = pytest.mark.integration


def doinfer(
    state_dir: Path,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout_s: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`doinfer ARGS --state-dir STATE_DIR` through pipes; by default it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "engine", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
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
    """The untraced model's sentence embedding of TEXT."""
    return reference_embedding(TEXT)


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


def start_on_a_terminal(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start doinfer with a pseudo-terminal as its stdin, stdout and stderr: the process,
    and the terminal's other end to read what it shows and type answers into."""
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
    return proc, primary


def run_on_a_terminal(*args: str, timeout_s: float = 120) -> tuple[int, str]:
    """Run doinfer on a pseudo-terminal until it exits: (exit, output)."""
    proc, primary = start_on_a_terminal(*args)
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
    uncoloured = re.sub(r"\x1b\[[0-9;]*m", "", output)
    redrawn = re.split(r"\x1b\[[0-9;?]*[A-Za-z]", uncoloured)  # at each cursor move
    frames = [f for f in redrawn if re.match(r"load [━╸╺ ]{24} +\d+% ", f)]
    assert len(frames) >= 10, output  # redrawn while the benchmark runs
    assert "answered, 0 error(s)" in frames[-1]
    assert "\x1b[32m✓\x1b[0m load: " in output  # coloured on a terminal
    lines = [line.strip() for line in re.split(r"[\r\n]+", "\n".join(redrawn))]
    lines = [line for line in lines if line]
    header = next((i for i, line in enumerate(lines) if line.startswith("scenario  kind")), None)
    assert header is not None, lines
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


ESCAPE = re.compile(r"\x1b\[")  # any colour or cursor control sequence
PLAIN = {"NO_COLOR": "", "FORCE_COLOR": "", "TERM": "xterm-256color"}


def test_pipes_and_no_color_carry_no_escape_codes(state_dir: Path) -> None:
    """Through a pipe (and with NO_COLOR even where FORCE_COLOR is set) plan, bench and apply
    print plain lines: results on stdout, progress on stderr. FORCE_COLOR alone colours a
    pipe, without cursor movement."""
    for env in (PLAIN, {**PLAIN, "NO_COLOR": "1", "FORCE_COLOR": "1"}):
        for args in (("plan", str(SPEC), "--all"), ("bench", str(SPEC), "smoke")):
            result = doinfer(state_dir, *args, env=env)
            assert not ESCAPE.search(result.stdout + result.stderr), (args, env)
        assert "smoke: 4 answered" in result.stderr and "smoke: 4 answered" not in result.stdout

    forced = doinfer(state_dir, "plan", str(SPEC), "--all", env={**PLAIN, "FORCE_COLOR": "1"})
    assert "\x1b[1mminilm-local (environment default" in forced.stdout
    bench = doinfer(state_dir, "bench", str(SPEC), "smoke", env={**PLAIN, "FORCE_COLOR": "1"})
    assert "\x1b[32m✓\x1b[0m smoke: 4 answered" in bench.stderr
    assert not re.search(r"\x1b\[(\d*[ABK]|\?25[lh])", bench.stderr)  # no cursor movement

    os.kill(int(status(state_dir)[0]["detail"].split()[1]), signal.SIGKILL)  # drift to apply
    applied = doinfer(state_dir, "apply", str(SPEC), "--yes", env={**PLAIN, "NO_COLOR": "1"})
    assert not ESCAPE.search(applied.stdout + applied.stderr)
    assert "✓ deploy/minilm: update done" in applied.stderr  # progress: stderr
    assert "deploy/minilm: update done" not in applied.stdout
    assert "Apply complete" in applied.stdout and "smoke" in applied.stdout  # results: stdout
    assert [r["state"] for r in status(state_dir)] == ["running", "running"]


def test_bench_sends_v2_posts_with_texts_from_a_corpus_file(
    state_dir: Path, tmp_path: Path
) -> None:
    """A scenario with `protocol: v2` and `corpus: FILE` (JSONL, next to the overlay that
    names it) against the real replicas: every answer a 200 from the v2 infer route."""
    from engine.bench.results import BenchRun

    texts = [f"text number {i} " + "word " * (i % 7) for i in range(40)]
    (tmp_path / "inputs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    overlay = tmp_path / "v2.yaml"
    overlay.write_text(
        f"extends: {SPEC}\nscenarios:\n  - {{name: v2, kind: benchmark, protocol: v2, "
        f"corpus: inputs.jsonl, clients: 1, concurrency: 2, duration_s: 2}}\n"
    )
    result = doinfer(state_dir, "bench", str(overlay), "v2", "--json", str(tmp_path / "v2.json"))
    assert "v2" in result.stdout
    (run,) = BenchRun.load(tmp_path / "v2.json").results
    summary = run.summary()
    assert summary.requests > 20 and summary.errors == 0
    assert run.settings["protocol"] == "v2"
    assert run.settings["texts"].startswith("40 texts, sha256 ")


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
    proc, stderr = ctrl_c_once_loading(state_dir, "bench", str(long), "load")
    assert proc.returncode == 130 and stderr.strip() == "interrupted", stderr
    assert load_clients(proc.pid) == []


def ctrl_c_once_loading(state_dir: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Run `doinfer ARGS` as a terminal's foreground job, and Ctrl-C it once its two load
    clients run (a known point: a benchmark scenario is under way). Its stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", *args, "--state-dir", str(state_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 120
        while len(load_clients(proc.pid)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, stderr


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
    # --target left the scenarios out: the next plan still proves the new servers
    plan = json.loads(doinfer(state_dir, "plan", str(SPEC), "--format", "json").stdout)
    todo = {c["step"]: c["reasons"] for c in plan["changes"] if c["action"] != "no-op"}
    assert set(todo) == {"scenario/smoke", "scenario/random", "scenario/load"}
    assert all("deploy/minilm was applied again since this last ran" in r for r in todo.values())


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
    pid = int(status(state_dir)[0]["detail"].split()[1])
    os.kill(pid, signal.SIGKILL)
    proc, primary = start_on_a_terminal("apply", str(SPEC), "--state-dir", str(state_dir))
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


def test_ctrl_c_during_the_scenarios_leaves_them_to_do(state_dir: Path, tmp_path: Path) -> None:
    """A dead replica makes apply restart it, then re-run the scenarios. Ctrl-C at a known
    point (deploy recorded, the benchmark's load clients running): the next plan must show
    the scenarios still to run, not "No changes"."""
    pid = int(status(state_dir)[1]["detail"].split()[1])
    os.kill(pid, signal.SIGKILL)
    long = tmp_path / "long.yaml"
    long.write_text(f"extends: {SPEC}\nscenarios:\n  - {{name: load, duration_s: 600}}\n")
    proc, stderr = ctrl_c_once_loading(state_dir, "apply", str(long), "--yes")
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr

    plan = json.loads(doinfer(state_dir, "plan", str(SPEC), "--format", "json").stdout)
    todo = {c["step"]: c for c in plan["changes"] if c["action"] != "no-op"}
    assert set(todo) - {"scenario/smoke", "scenario/random"} == {"scenario/load"}, todo
    assert todo["scenario/load"]["action"] == "replace"
    assert todo["scenario/load"]["reasons"] == [
        "deploy/minilm was applied again since this last ran"
    ]
    doinfer(state_dir, "apply", str(SPEC), "--yes")
    assert doinfer(state_dir, "plan", str(SPEC), "--detailed-exitcode").returncode == 0


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
