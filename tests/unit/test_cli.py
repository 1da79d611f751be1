"""The CLI as users meet it: exit codes, messages, never a traceback for their mistakes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.state import StateStore

REPO = Path(__file__).resolve().parents[2]
ERROR_LINE = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): error: .+", re.M)

VALID = """\
apiVersion: doinfer/v1
name: clidemo
models:
  - name: tiny
    source: path:tiny
    task: feature-extraction
servers:
  - name: tiny
    processor: cpu
    models: [{model: tiny, instances: 1}]
runtime: {kind: local}
scenarios:
  - {name: smoke, kind: sequential}
"""

MALFORMED = {
    "yaml syntax": "apiVersion: doinfer/v1\nname: [unclosed\n",
    "not a mapping": "- just\n- a list\n",
    "empty file": "",
    "misspelt key": VALID.replace(
        "models:\n  - name: tiny\n    source", "modles:\n  - name: tiny\n    source"
    ),
    "wrong type": VALID.replace("instances: 1", "instances: many"),
    "unknown model": VALID.replace("{model: tiny,", "{model: tinny,"),
    "bad source": VALID.replace("path:tiny", "s3://bucket/tiny"),
    "duplicate key": VALID.replace(
        "runtime: {kind: local}", "runtime: {kind: local}\nruntime: {kind: docker}"
    ),
    "missing extends": "extends: nowhere.yaml\n" + VALID,
    "gpu without host": VALID.replace("processor: cpu", "processor: gpu"),
    "binary junk": "\x00\x01\x02",
    "tabs": "apiVersion: doinfer/v1\n\tname: x\n",
    "python tag": "apiVersion: doinfer/v1\nname: !!python/name:os.system ''\n",
    "python object": VALID.replace(
        "runtime: {kind: local}", "runtime: !!python/object:os.system {}"
    ),
    "custom tag": VALID.replace("name: clidemo", "name: !env CLUSTER"),
    "float for an integer": VALID.replace("instances: 1", "instances: 1.0"),
    "not a number": VALID.replace("kind: sequential}", "kind: random, interval_ms: .nan}"),
    "null section": VALID.replace("runtime: {kind: local}", "runtime:"),
    "extends a directory": "extends: .\n" + VALID,
    "extends itself": "extends: bad.yaml\n" + VALID,
    "deep nesting": "apiVersion: doinfer/v1\nname: x\nruntime: " + "[" * 3000 + "]" * 3000,
    "date": VALID.replace("name: clidemo", "name: 2026-11-24"),
}


def run(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """doinfer in a clean environment (plus `env`), no terminal anywhere."""
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **(env or {})},
    )


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text("{}")
    (tmp_path / "spec.yaml").write_text(VALID)
    return tmp_path


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_specs_exit_1_with_positions_and_no_traceback(spec_dir: Path, name: str) -> None:
    (spec_dir / "bad.yaml").write_bytes(MALFORMED[name].encode())
    for command in ("validate", "plan", "apply"):
        result = run(
            command,
            str(spec_dir / "bad.yaml"),
            "--state-dir",
            str(spec_dir / "st"),
            *(["--yes"] if command == "apply" else []),
        )
        assert result.returncode == 1, (command, result.stderr)
        assert "Traceback" not in result.stderr
        match = ERROR_LINE.search(result.stderr)
        assert match, result.stderr
        assert match["file"].endswith(".yaml")
        assert int(match["line"]) >= 1
    assert not (spec_dir / "st").exists()  # a failed validate or plan touches nothing


def test_missing_spec_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run("plan", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "nope.yaml" in result.stderr and "Traceback" not in result.stderr


def test_validate_reports_a_valid_spec(spec_dir: Path) -> None:
    result = run("validate", str(spec_dir / "spec.yaml"))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_plan_formats_and_detailed_exit_code(spec_dir: Path) -> None:
    spec = str(spec_dir / "spec.yaml")
    state = ["--state-dir", str(spec_dir / "st")]
    text = run("plan", spec, *state, "--detailed-exitcode")
    assert text.returncode == 2
    assert "Plan: 4 to create" in text.stdout
    markdown = run("plan", spec, *state, "--format", "markdown")
    assert markdown.stdout.startswith("### doinfer plan: `clidemo`")
    data = json.loads(run("plan", spec, *state, "--format", "json").stdout)
    assert [c["step"] for c in data["changes"]] == [
        "trace/tiny@cpu",
        "pack/tiny",
        "deploy/tiny",
        "scenario/smoke",
    ]
    assert not (spec_dir / "st" / "state").exists()  # planning records nothing


def test_plan_without_refresh_trusts_the_recorded_state(spec_dir: Path) -> None:
    """Every step recorded as applied, but nothing of it exists: a refreshing plan sees
    the drift; --no-refresh plans from the record alone and sees none."""
    spec = str(spec_dir / "spec.yaml")
    state_dir = spec_dir / "st"
    run("plan", spec, "--state-dir", str(state_dir), "--out", str(spec_dir / "p.json"))
    steps = json.loads((spec_dir / "p.json").read_text())
    store = StateStore(state_dir, "clidemo", "default")
    state = store.load()
    gone = str(spec_dir / "gone")
    outputs = {
        "trace": {"artifact": gone},
        "pack": {"bundle": gone},
        "deploy": {"replicas": [{"index": 0, "url": "http://127.0.0.1:9", "pid": 999999}]},
        "scenario": {},
    }
    fingerprints = {s["id"]: s["fingerprint"] for s in steps["steps"]}
    for step in steps["steps"]:
        state.steps[step["id"]] = {
            "kind": step["kind"],
            "fingerprint": step["fingerprint"],
            "inputs": step["inputs"],
            "needs": step["needs"],
            "upstream": {n: fingerprints[n] for n in step["needs"]},
            "outputs": outputs[step["kind"]],
        }
    store.save(state)
    refreshed = run("plan", spec, "--state-dir", str(state_dir), "--detailed-exitcode")
    assert refreshed.returncode == 2, refreshed.stderr
    assert "drift:" in refreshed.stdout
    recorded = run("plan", spec, "--state-dir", str(state_dir), "--no-refresh")
    assert recorded.returncode == 0, recorded.stderr
    assert "No changes." in recorded.stdout


def test_apply_without_a_terminal_needs_yes(spec_dir: Path) -> None:
    result = run("apply", str(spec_dir / "spec.yaml"), "--state-dir", str(spec_dir / "st"))
    assert result.returncode == 1
    assert "pass --yes" in result.stderr


def test_saved_plan_is_refused_once_the_state_moved(spec_dir: Path) -> None:
    plan_file = spec_dir / "plan.json"
    state_dir = spec_dir / "st"
    run("plan", str(spec_dir / "spec.yaml"), "--state-dir", str(state_dir), "--out", str(plan_file))
    assert json.loads(plan_file.read_text())["format"] == "doinfer-plan/1"
    store = StateStore(state_dir, "clidemo", "default")
    store.record(
        store.load(), "trace/other@cpu", {"kind": "trace", "fingerprint": "x", "outputs": {}}
    )
    result = run("apply", str(plan_file), "--state-dir", str(state_dir))
    assert result.returncode == 1
    assert "changed since this plan was made" in result.stderr
    assert "Traceback" not in result.stderr


def test_not_a_plan_file(spec_dir: Path) -> None:
    bogus = spec_dir / "bogus.json"
    bogus.write_text('{"format": "doinfer-plan/0"}')
    result = run("apply", str(bogus), "--state-dir", str(spec_dir / "st"))
    assert result.returncode == 1
    assert "not a saved doinfer plan" in result.stderr


def test_logs_of_an_unknown_server(spec_dir: Path) -> None:
    result = run("logs", str(spec_dir / "spec.yaml"), "web", "--state-dir", str(spec_dir / "st"))
    assert result.returncode == 1
    assert "no server 'web'" in result.stderr and "servers: tiny" in result.stderr


def test_bench_before_apply_says_what_to_do(spec_dir: Path) -> None:
    result = run("bench", str(spec_dir / "spec.yaml"), "--state-dir", str(spec_dir / "st"))
    assert result.returncode == 1
    assert "not applied yet: run doinfer apply first" in result.stderr


def test_status_of_nothing(spec_dir: Path) -> None:
    result = run(
        "status",
        str(spec_dir / "spec.yaml"),
        "--state-dir",
        str(spec_dir / "st"),
        "--format",
        "json",
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["replicas"] == []


def test_bench_of_an_unknown_scenario(spec_dir: Path) -> None:
    result = run("bench", str(spec_dir / "spec.yaml"), "nope", "--state-dir", str(spec_dir / "st"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: no scenario nope in clidemo (scenarios: smoke)" in result.stderr


def test_bench_of_a_benchmark_without_a_load_shape(spec_dir: Path) -> None:
    (spec_dir / "spec.yaml").write_text(
        VALID.replace("{name: smoke, kind: sequential}", "{name: load, kind: benchmark}")
    )
    result = run("bench", str(spec_dir / "spec.yaml"), "--state-dir", str(spec_dir / "st"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.search(
        r"spec\.yaml:13:5: error: scenarios\[0\]: a benchmark needs exactly one of "
        r"concurrency \(closed loop\) or rate \(open loop\)",
        result.stderr,
    )


def test_bench_needs_a_spec_or_compare() -> None:
    result = run("bench")
    assert result.returncode == 1
    assert "error: bench needs a spec (or --compare A.json B.json)" in result.stderr


def test_bench_compare_of_bad_files(tmp_path: Path) -> None:
    (tmp_path / "junk.json").write_text("[1, 2")
    (tmp_path / "plan.json").write_text('{"format": "doinfer-plan/1"}')
    for args, message in [
        (["nope.json", "junk.json"], "nope.json: no such file"),
        (["junk.json", "junk.json"], "junk.json: not JSON"),
        (["plan.json", "junk.json"], "plan.json: not a result of doinfer bench"),
    ]:
        result = run("bench", "--compare", *(str(tmp_path / a) for a in args))
        assert result.returncode == 1, args
        assert "Traceback" not in result.stderr
        assert message in result.stderr
    result = run("bench", "spec.yaml", "--compare", "a.json", "b.json")
    assert result.returncode == 1
    assert "--compare takes two result files and no spec" in result.stderr


def test_bench_compare_of_two_runs(tmp_path: Path) -> None:
    from engine.bench.client import Sample
    from engine.bench.results import BenchRun, ScenarioResult

    def run_file(name: str, latency_ms: float) -> Path:
        samples = [Sample("web/0/m-0", i * 0.1, latency_ms, 200) for i in range(50)]
        result = ScenarioResult("load", "benchmark", samples, 0.0, 5.0, 1)
        path = tmp_path / name
        BenchRun("demo", "default", "local", 0.0, [result]).write(path)
        return path

    before, after = run_file("before.json", 20.0), run_file("after.json", 25.0)
    result = run("bench", "--compare", str(before), str(after))
    assert result.returncode == 0, result.stderr
    p50 = next(line for line in result.stdout.splitlines() if "p50 ms" in line)
    assert p50.split() == ["p50", "ms", "20.0", "25.0", "+25.0%"]


def test_parallel_below_one_is_refused(spec_dir: Path) -> None:
    for value in ("0", "-3", "many"):
        result = run("apply", str(spec_dir / "spec.yaml"), "--yes", "--parallel", value)
        assert result.returncode == 2, value
        assert "argument --parallel:" in result.stderr and "Traceback" not in result.stderr
    assert "must be 1 or more, not 0" in run("apply", "s.yaml", "--parallel", "0").stderr


def test_a_reader_that_goes_away_ends_the_output_quietly(spec_dir: Path) -> None:
    """`doinfer plan --format json | head -c 1`: a real pipe whose reader closes first."""
    for fmt in ("json", "text"):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine",
                "plan",
                str(spec_dir / "spec.yaml"),
                "--format",
                fmt,
                "--state-dir",
                str(spec_dir / "st"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # long before the plan is made: its first write finds no reader
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141, stderr
        assert stderr == "", stderr


def test_a_broken_state_is_a_message_and_doinfer_state_mends_it(spec_dir: Path) -> None:
    spec, state_dir = str(spec_dir / "spec.yaml"), spec_dir / "st"
    store = StateStore(state_dir, "clidemo", "default")
    for content in (b"[]", b'"x"', bytes(range(256))):
        store.dir.mkdir(parents=True, exist_ok=True)
        store.path.write_bytes(content)
        for args in (("plan", spec), ("apply", spec, "--yes"), ("status", spec)):
            result = run(*args, "--state-dir", str(state_dir))
            assert result.returncode == 1, (args, result.stderr)
            assert f"error: {store.path}: state file is unreadable" in result.stderr
            assert f"mv {store.path} {store.path}.broken" in result.stderr
            assert "Traceback" not in result.stderr
    store.path.unlink()
    state = store.load()
    store.record(state, "trace/tiny@cpu", {"kind": "trace", "fingerprint": "x", "outputs": {}})
    store.record(state, "pack/tiny", {"kind": "pack", "fingerprint": "y"})
    result = run("plan", spec, "--state-dir", str(state_dir))
    assert result.returncode == 1 and "  pack/tiny: no 'outputs'" in result.stderr
    listed = run("state", "list", spec, "--state-dir", str(state_dir))
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^pack/tiny +pack +- +no 'outputs'$", listed.stdout, re.M)
    shown = run("state", "show", spec, "pack/tiny", "--state-dir", str(state_dir))
    assert json.loads(shown.stdout)["pack/tiny"]["fingerprint"] == "y"
    wrong = run("state", "rm", spec, "pack/nope", "--state-dir", str(state_dir))
    assert wrong.returncode == 1
    assert "no record of pack/nope" in wrong.stderr and "pack/tiny" in wrong.stderr
    removed = run("state", "rm", spec, "pack/tiny", "--state-dir", str(state_dir))
    assert removed.returncode == 0, removed.stderr
    plan = run("plan", spec, "--state-dir", str(state_dir), "--format", "json")
    assert plan.returncode == 0, plan.stderr
    actions = {c["step"]: c["action"] for c in json.loads(plan.stdout)["changes"]}
    assert actions["pack/tiny"] == "create"


def test_a_state_dir_that_is_a_file_is_a_message(spec_dir: Path) -> None:
    not_a_dir = spec_dir / "file"
    not_a_dir.write_text("")
    for args in (("plan",), ("apply", "--yes"), ("status",), ("destroy", "--yes")):
        result = run(args[0], str(spec_dir / "spec.yaml"), *args[1:], "--state-dir", str(not_a_dir))
        assert result.returncode == 1, (args, result.stderr)
        assert f"error: state directory {not_a_dir}: {not_a_dir} is a file" in result.stderr
        assert "Traceback" not in result.stderr


def test_apply_sweeps_what_an_apply_killed_with_kill_9_left_in_the_cache(
    spec_dir: Path,
) -> None:
    """Leftovers of a dead apply go; a running apply's (this test's pid) stay. The apply
    itself fails here (tiny/ is no model), after the sweep."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    traces = spec_dir / "st" / "cache" / "traces"
    leftover = traces / f".0123abcd.tmp-{gone.pid}"
    (leftover / "tokenizer").mkdir(parents=True)
    (leftover / "model.pt").write_bytes(b"half a model")
    running = traces / f".4567cdef.tmp-{os.getpid()}"
    running.mkdir()
    result = run("apply", str(spec_dir / "spec.yaml"), "--yes", "--state-dir", str(spec_dir / "st"))
    assert "Traceback" not in result.stderr
    assert not leftover.exists()
    assert running.is_dir()


def test_validate_warns_of_servers_reachable_from_the_network(spec_dir: Path) -> None:
    (spec_dir / "spec.yaml").write_text(
        VALID.replace("{kind: local}", "{kind: local, bind_address: 0.0.0.0}")
    )
    for command in ("validate",):
        result = run(command, str(spec_dir / "spec.yaml"), "--state-dir", str(spec_dir / "st"))
        assert result.returncode == 0, result.stderr
        assert re.search(
            r"spec\.yaml:11:38: warning: runtime\.bind_address: 0\.0\.0\.0 makes the servers "
            r"reachable from every network interface of this machine",
            result.stderr,
        ), result.stderr


def test_apply_refuses_a_plan_hash_once_the_state_moved(spec_dir: Path) -> None:
    spec = str(spec_dir / "spec.yaml")
    state_dir = spec_dir / "st"
    planned = json.loads(
        run("plan", spec, "--state-dir", str(state_dir), "--format", "json").stdout
    )
    store = StateStore(state_dir, "clidemo", "default")
    store.record(
        store.load(), "trace/other@cpu", {"kind": "trace", "fingerprint": "x", "outputs": {}}
    )
    result = run("apply", spec, "--state-dir", str(state_dir), "--plan-hash", planned["hash"], "-y")
    assert result.returncode == 1
    assert f"not {planned['hash']}" in result.stderr and "is not the one reviewed" in result.stderr
    assert "Traceback" not in result.stderr
    assert set(store.load().steps) == {"trace/other@cpu"}  # nothing was applied


def test_plan_target_and_replace_on_the_command_line(spec_dir: Path) -> None:
    spec = str(spec_dir / "spec.yaml")
    state = ["--state-dir", str(spec_dir / "st")]
    data = json.loads(run("plan", spec, *state, "--format", "json", "--target", "pack/tiny").stdout)
    assert [c["step"] for c in data["changes"]] == ["trace/tiny@cpu", "pack/tiny"]
    unknown = run("plan", spec, *state, "--replace", "deploy/nope")
    assert unknown.returncode == 1 and "no step deploy/nope in clidemo/default" in unknown.stderr


def test_refresh_only_and_lock_timeout_on_the_command_line(spec_dir: Path) -> None:
    spec = str(spec_dir / "spec.yaml")
    state = ["--state-dir", str(spec_dir / "st")]
    refresh = run("plan", spec, *state, "--refresh-only")
    assert refresh.returncode == 0, refresh.stderr
    assert "Refresh: 0 of 0 recorded step(s) drifted." in refresh.stdout
    bad = run("apply", spec, *state, "--lock-timeout", "soon")
    assert bad.returncode == 2 and "not a duration: 'soon'" in bad.stderr
    applied = run("apply", spec, *state, "--refresh-only", "--lock-timeout", "2s", "-y")
    assert applied.returncode == 0, applied.stderr
    assert "nothing that runs changed" in applied.stdout


def test_refresh_only_refuses_options_about_changes_by_name(spec_dir: Path) -> None:
    """--refresh-only changes nothing: a --target (or --plan-hash, --out...) given with it
    is a mistake to name, not an option to ignore silently."""
    spec = str(spec_dir / "spec.yaml")
    state = ["--state-dir", str(spec_dir / "st")]
    planned = run("plan", spec, *state, "--refresh-only", "--target", "deploy/web")
    assert planned.returncode == 1
    assert "--refresh-only records what runs: it takes no --target" in planned.stderr
    applied = run("apply", spec, *state, "--refresh-only", "--plan-hash", "abc", "-y")
    assert applied.returncode == 1
    assert "it takes no --plan-hash" in applied.stderr
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=spec_dir, check=True)
    subprocess.run([*git, "add", "spec.yaml", "tiny"], cwd=spec_dir, check=True)
    subprocess.run([*git, "commit", "-qm", "spec"], cwd=spec_dir, check=True)
    saved = run("plan", spec, *state, "--base-ref", "HEAD", "--out", str(spec_dir / "p.json"))
    assert saved.returncode == 1 and "no --base-ref" in saved.stderr
    assert saved.stdout == ""  # refused before planning, not after printing a plan


FLEET_TO_PROFILE = VALID.replace(
    "    processor: cpu\n    models: [{model: tiny, instances: 1}]",
    "    packing: auto\n    node_types: [c7i.large]\n    models: [{model: tiny, rate: 2}]",
)


def test_a_saved_plan_that_waits_for_profiles_is_refused(spec_dir: Path) -> None:
    (spec_dir / "fleet.yaml").write_text(FLEET_TO_PROFILE)
    plan_file, state = spec_dir / "plan.json", ("--state-dir", str(spec_dir / "st"))
    planned = run("plan", str(spec_dir / "fleet.yaml"), *state, "--out", str(plan_file))
    assert planned.returncode == 0, planned.stderr
    assert "+ profile/tiny@cpu" in planned.stdout and "known after profiling" in planned.stdout
    result = run("apply", str(plan_file), *state, "--yes")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "was planned before the profiles of tiny were measured" in result.stderr
    assert "run doinfer profile (or apply) on the spec, then plan it again" in result.stderr


def test_profile_with_nothing_to_measure(spec_dir: Path) -> None:
    result = run("profile", str(spec_dir / "spec.yaml"), "--state-dir", str(spec_dir / "st"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clidemo: every profile its fleets need is declared"
