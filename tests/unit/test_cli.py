"""The CLI as users meet it: exit codes, messages, never a traceback for their mistakes."""

from __future__ import annotations

import json
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


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
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
    store.record(store.load(), "trace/other@cpu", {"kind": "trace", "fingerprint": "x"})
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


def test_apply_refuses_a_plan_hash_once_the_state_moved(spec_dir: Path) -> None:
    spec = str(spec_dir / "spec.yaml")
    state_dir = spec_dir / "st"
    planned = json.loads(
        run("plan", spec, "--state-dir", str(state_dir), "--format", "json").stdout
    )
    store = StateStore(state_dir, "clidemo", "default")
    store.record(store.load(), "trace/other@cpu", {"kind": "trace", "fingerprint": "x"})
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
