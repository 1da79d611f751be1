"""Every class of spec error, with the exact line and column it points at."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.devices import LOCAL_DEVICES
from engine.spec import load_spec

from .conftest import VALID, errors_of


def test_yaml_syntax_error_points_at_the_problem(write) -> None:
    path = write("s.yaml", "apiVersion: doinfer/v1\nname: [demo\nmodels: []\n")
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:3:")
    assert "invalid YAML" in error


def test_duplicate_key(write) -> None:
    path = write("s.yaml", VALID + "runtime: {kind: docker}\n")
    assert errors_of(path) == [f"{path}:14:1: error: duplicate key 'runtime' (first at line 11)"]


def test_unknown_key_with_did_you_mean_points_at_the_key(write) -> None:
    path = write("s.yaml", VALID.replace("    processor: cpu", "    procesor: cpu"))
    errors = errors_of(path)
    assert errors == [
        f"{path}:8:5: error: servers[0]: missing required key 'processor'",
        # a server has more than 12 keys now: the suggestion, without the whole list
        f"{path}:9:5: error: servers[0].procesor: unknown key 'procesor' (did you mean "
        f"'processor'?)",
    ]


def test_wrong_type_and_range(write) -> None:
    text = VALID.replace("instances: 2", "instances: two").replace(
        "runtime: {kind: local}", "runtime: {kind: local, port: 70000}"
    )
    path = write("s.yaml", text)
    assert errors_of(path) == [
        f"{path}:10:39: error: servers[0].models[0].instances: expected an integer, got 'two'",
        f"{path}:11:30: error: runtime.port: 70000 is greater than the maximum of 65535",
    ]


def test_enum_with_suggestion(write) -> None:
    path = write("s.yaml", VALID.replace("processor: cpu", "processor: gpus"))
    (error,) = errors_of(path)
    assert error == (
        f"{path}:9:16: error: servers[0].processor: 'gpus' is not one of cpu, gpu, "
        f"inf (did you mean 'gpu'?)"
    )


def test_bad_source_says_what_is_allowed(write) -> None:
    path = write("s.yaml", VALID.replace("path:tiny", "s3://bucket/tiny"))
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:5:13: error: models[0].source: 's3://bucket/tiny'")
    assert "hf:<model id>, path:<directory> or package:<python package>" in error


def test_all_errors_are_reported_at_once_in_file_order(write) -> None:
    text = (
        VALID.replace("apiVersion: doinfer/v1", "apiVersion: doinfer/v9")
        .replace("task: feature-extraction", "task: translation")
        .replace("kind: sequential", "kind: sequentail")
    )
    errors = errors_of(write("s.yaml", text))
    assert [e.split(":")[1] for e in errors] == ["1", "6", "13"]


def test_missing_required_top_level_keys(write) -> None:
    path = write("s.yaml", "models: []\n")
    assert errors_of(path) == [
        f"{path}:1:1: error: (top level): missing required key 'apiVersion'",
        f"{path}:1:1: error: (top level): missing required key 'name'",
    ]


def test_not_a_mapping_and_empty(write) -> None:
    listed = write("l.yaml", "- a\n- b\n")
    assert errors_of(listed) == [
        f"{listed}:1:1: error: the spec must be a mapping (apiVersion, "
        f"name, models, ...), not a list"
    ]
    empty = write("e.yaml", "# nothing\n")
    assert "the spec is empty" in errors_of(empty)[0]


def test_unsupported_yaml_values(write) -> None:
    path = write("s.yaml", VALID.replace("name: demo", "name: 2024-01-01"))
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:2:7: error: unsupported value '2024-01-01'")


def test_missing_file_and_not_utf8(tmp_path: Path) -> None:
    assert errors_of(tmp_path / "none.yaml") == [
        f"{tmp_path / 'none.yaml'}:1:1: error: no such file"
    ]
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"name: \xff\xfe")
    assert "not UTF-8 text" in errors_of(binary)[0]


def test_unknown_model_with_did_you_mean(write) -> None:
    path = write("s.yaml", VALID.replace("{model: tiny,", "{model: tiyn,"))
    assert errors_of(path) == [
        f"{path}:10:22: error: servers[0].models[0].model: unknown model 'tiyn' (did you mean "
        f"'tiny'?)"
    ]


def test_duplicate_names(write) -> None:
    text = VALID + "  - {name: smoke, kind: random}\n"
    path = write("s.yaml", text)
    assert errors_of(path) == [
        f"{path}:14:12: error: scenarios[1].name: duplicate name 'smoke' (first at line 13 of "
        f"{path})"
    ]


@pytest.fixture
def no_gpu_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Whatever this machine has: its gpu device node is one that does not exist."""
    device = str(tmp_path / "nvidia0")
    monkeypatch.setitem(LOCAL_DEVICES, "gpu", device)
    return device


def test_gpu_model_without_a_host(write, no_gpu_here: str) -> None:
    """Served elsewhere (docker), a gpu model still needs somewhere to be traced."""
    gpu = VALID.replace("processor: cpu", "processor: gpu").replace("kind: local", "kind: docker")
    path = write("s.yaml", gpu)
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:9:16: error: servers[0].processor: gpu models must be traced")
    assert "add a host with processor: gpu" in error
    with_host = gpu + "hosts:\n  - {name: g, address: 10.0.0.1, processor: gpu}\n"
    from engine.spec import load_spec

    assert load_spec(write("h.yaml", with_host)).hosts[0].address == "10.0.0.1"


def test_int8_is_for_cpu_servers_only(write) -> None:
    spec = VALID.replace(
        "task: feature-extraction", "task: feature-extraction\n    trace: {precision: int8}"
    )
    assert load_spec(write("cpu.yaml", spec)).models[0].trace.precision == "int8"
    gpu = spec.replace("processor: cpu", "processor: gpu").replace("kind: local", "kind: docker")
    gpu += "hosts:\n  - {name: g, address: 10.0.0.1, processor: gpu}\n"
    path = write("gpu.yaml", gpu)
    assert errors_of(path) == [
        f"{path}:11:22: error: servers[0].models[0].model: 'tiny' is traced at precision int8 "
        f"(dynamic quantization), which only cpu servers run; use bf16 or fp16 on gpu"
    ]


def test_gpu_server_on_the_local_runtime_needs_a_gpu_here(write, no_gpu_here: str) -> None:
    """A host can trace for gpu, but the local runtime would serve on this GPU-less machine."""
    text = VALID.replace("processor: cpu", "processor: gpu") + (
        "hosts:\n  - {name: g, address: 10.0.0.1, processor: gpu}\n"
    )
    path = write("s.yaml", text)
    assert errors_of(path) == [
        f"{path}:9:16: error: servers[0].processor: the local runtime serves on this machine, "
        f"which has no gpu device ({no_gpu_here}); use processor: cpu, or a runtime on "
        f"gpu nodes (runtime.kind: docker or kubernetes)"
    ]


def test_port_clash(write) -> None:
    text = VALID.replace(
        "    models: [{model: tiny, instances: 2}]\n",
        "    models: [{model: tiny, instances: 2}]\n    port: 8000\n"
        "    replicas: 3\n"
        "  - name: api\n    processor: cpu\n    port: 8002\n"
        "    models: [{model: tiny}]\n",
    )
    path = write("s.yaml", text)
    assert errors_of(path) == [
        f"{path}:15:11: error: servers[1].port: ports 8002-8002 clash with server 'web' (8000-8002)"
    ]


def test_benchmark_needs_one_load_shape(write) -> None:
    text = VALID.replace(
        "{name: smoke, kind: sequential}", "{name: load, kind: benchmark, concurrency: 2, rate: 5}"
    )
    path = write("s.yaml", text)
    assert errors_of(path) == [
        f"{path}:13:5: error: scenarios[0]: a benchmark needs exactly one of concurrency "
        f"(closed loop) or rate (open loop)"
    ]


def test_benchmark_with_neither_concurrency_nor_rate(write) -> None:
    text = VALID.replace("{name: smoke, kind: sequential}", "{name: load, kind: benchmark}")
    path = write("s.yaml", text)
    assert errors_of(path) == [
        f"{path}:13:5: error: scenarios[0]: a benchmark needs exactly one of concurrency "
        f"(closed loop) or rate (open loop)"
    ]


def test_weights_must_select_deployed_targets(write) -> None:
    text = VALID.replace(
        "{name: smoke, kind: sequential}",
        "{name: load, kind: benchmark, rate: 5, weights: {web/0/tiny-1: 3, nope: 1}}",
    )
    path = write("s.yaml", text)
    assert errors_of(path) == [
        f"{path}:13:{weights_column(text)}: error: scenarios[0].weights: weight key 'nope' "
        f"selects no target "
        f"(targets: web/0/tiny-0, web/0/tiny-1)"
    ]


def test_weights_may_not_select_a_target_twice(write) -> None:
    text = VALID.replace(
        "{name: smoke, kind: sequential}",
        "{name: mix, kind: random, weights: {'web': 1, '*/*/tiny-0': 2}}",
    )
    path = write("s.yaml", text)
    assert errors_of(path) == [
        f"{path}:13:{weights_column(text)}: error: scenarios[0].weights: weight keys 'web' "
        f"and '*/*/tiny-0' "
        f"both select web/0/tiny-0"
    ]


def test_weights_do_not_apply_to_a_sequential_scenario(write) -> None:
    text = VALID.replace(
        "{name: smoke, kind: sequential}", "{name: smoke, kind: sequential, weights: {web: 1}}"
    )
    path = write("s.yaml", text)
    (error,) = errors_of(path)
    column = weights_column(text)
    assert error.startswith(f"{path}:13:{column}: error: scenarios[0].weights: a sequential")


def test_weights_keys_have_at_most_three_parts(write) -> None:
    text = VALID.replace(
        "{name: smoke, kind: sequential}",
        "{name: mix, kind: random, weights: {web/0/tiny-0/x: 1}}",
    )
    path = write("s.yaml", text)
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:13:") and "web/0/tiny-0/x" in error


def weights_column(text: str) -> int:
    """1-based column of the weight map on line 13 (the scenario's line)."""
    line = text.splitlines()[12]
    return line.index("weights: ") + len("weights: ") + 1


CORPUS_SCENARIO = """\
  - name: mix
    kind: benchmark
    concurrency: 4
    texts:
      - a short question
      - {seq_0: where is the state kept, seq_1: in a json file under .doinfer}
"""


def test_a_corpus_of_texts_becomes_the_scenarios_texts_and_shows_as_a_digest(write) -> None:
    text = VALID.replace("  - {name: smoke, kind: sequential}\n", CORPUS_SCENARIO)
    (scenario,) = load_spec(write("s.yaml", text)).scenarios
    assert scenario.texts == (
        ("a short question", None),
        ("where is the state kept", "in a json file under .doinfer"),
    )
    shown = scenario.settings()["texts"]
    assert shown.startswith("2 texts, sha256 ")
    other = load_spec(write("t.yaml", text.replace("short", "brief"))).scenarios[0]
    assert other.settings()["texts"] != shown  # a changed corpus is a changed scenario


def test_texts_and_seq_0_together_are_an_error(write) -> None:
    text = VALID.replace(
        "  - {name: smoke, kind: sequential}\n", CORPUS_SCENARIO + "    seq_0: hello\n"
    )
    path = write("s.yaml", text)
    assert errors_of(path) == [
        f"{path}:16:5: error: scenarios[0].texts: give either texts or seq_0/seq_1, not both"
    ]


def test_a_text_must_be_a_string_or_seq_0_and_seq_1(write) -> None:
    text = VALID.replace(
        "  - {name: smoke, kind: sequential}\n",
        CORPUS_SCENARIO.replace("      - a short question", "      - {question: what}"),
    )
    path = write("s.yaml", text)
    assert errors_of(path) == [
        f"{path}:17:9: error: scenarios[0].texts[0]: a mapping is not valid here: a text is a "
        f"string, or a mapping with seq_0 and an optional seq_1"
    ]
