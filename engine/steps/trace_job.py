"""Trace one model into a TorchScript artifact. Self-contained on purpose.

This script imports only the standard library, torch and transformers (and, on Inferentia
hosts, torch_neuron or torch_neuronx), never the doinfer package: the engine runs it in a
child process here, and uploads it to GPU and Inferentia hosts to run there.

    python trace_job.py JOB.json [--stop-when-stdin-closes]

JOB.json: {"model": name, "source": "<dir>" | "hf:<id>", "task": ..., "processor":
"cpu"|"gpu"|"inf", "trace": {"sequence_length", "batch_size", "pipeline_cores"},
"out_dir": path, and optionally "sequence_lengths": [...] (a fixed-shape processor's
padded lengths: one module is compiled per length) and "compiler_workdir": path (where
the Neuron compiler keeps its work and log)}. The artifact (model.pt, model-<len>.pt,
tokenizer/, config.json, doinfer-trace.json) is written to a temporary sibling and renamed
into out_dir, so it appears whole or not at all.

--stop-when-stdin-closes: on a remote host, sshd closes the job's stdin when the
connection that started it is gone; the job then stops with its process group instead of
tracing on for nobody.

TEST ONLY: with DOINFER_TEST_ONLY_DEVICE=cpu in its environment, the job traces a gpu or
inf model with torch.jit.trace on the cpu. Tests set it on a stand-in "accelerator" host
(an sshd on this machine), which has no GPU or Inferentia chip; nothing else sets it.

Exit codes: 0 done, 2 bad job or model, 3 an hf: model that cannot be downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
TEST_ONLY_DEVICE = "DOINFER_TEST_ONLY_DEVICE"
MAX_ABS_DIFF = 1e-4
EXAMPLE_TEXT = (
    "What does the engine compare before it applies a plan?",
    "It compares fingerprints with the recorded state and what it observes.",
)


class JobError(Exception):
    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    print(message, flush=True)


def load(job: dict[str, Any]) -> tuple[Any, Any]:
    """Tokenizer (fast) and model for the task, in eval mode."""
    import transformers

    source: str = job["source"]
    task: str = job["task"]
    classes = {
        "question-answering": transformers.AutoModelForQuestionAnswering,
        "feature-extraction": transformers.AutoModel,
        "text-classification": transformers.AutoModelForSequenceClassification,
    }
    if task not in classes:
        raise JobError(f"unknown task {task!r}")
    if source.startswith("hf:"):
        location = source[3:]
    else:
        location = source
        if not Path(location).is_dir():
            raise JobError(f"model directory {location} does not exist")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(location, use_fast=True)
        model = classes[task].from_pretrained(location)
    except OSError as exc:
        if source.startswith("hf:"):
            raise JobError(
                f"cannot download {source} from the Hugging Face Hub ({_first_line(exc)}). "
                f"Download it on a machine with access (huggingface-cli download {location} "
                f"--local-dir DIR) and use `source: path:DIR`",
                EXIT_UNREACHABLE,
            ) from None
        raise JobError(f"cannot load {task} model from {location}: {_first_line(exc)}") from None
    except ValueError as exc:
        raise JobError(f"cannot load {task} model from {location}: {_first_line(exc)}") from None
    return tokenizer, model.eval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def wrap(model: Any, task: str, input_names: list[str]) -> Any:
    """A module with positional tensor inputs and tuple outputs: what tracing needs.

    transformers 5 has no `torchscript=True`; calling with return_dict=False gives tuples.
    """
    import torch

    class Traceable(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            kwargs = dict(zip(input_names, tensors, strict=True))
            out = self.model(**kwargs, return_dict=False)
            if task == "question-answering":
                return out[0], out[1]  # start_logits, end_logits
            return (out[0],)  # last_hidden_state, or logits

    return Traceable().eval()


def example_inputs(tokenizer: Any, task: str, trace: dict[str, int]) -> tuple[list[str], list[Any]]:
    texts = [EXAMPLE_TEXT] if task == "question-answering" else [EXAMPLE_TEXT[0]]
    batch = texts * trace["batch_size"]
    if task == "question-answering":
        encoded = tokenizer(
            [q for q, _ in batch],
            [c for _, c in batch],
            padding="max_length",
            truncation=True,
            max_length=trace["sequence_length"],
            return_tensors="pt",
        )
    else:
        encoded = tokenizer(
            batch,
            padding="max_length",
            truncation=True,
            max_length=trace["sequence_length"],
            return_tensors="pt",
        )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in encoded]
    return names, [encoded[n] for n in names]


def compile_for(
    processor: str,
    module: Any,
    example: tuple[Any, ...],
    trace: dict[str, int],
    libs: dict[str, Any] | None = None,
    workdir: str | None = None,
) -> tuple[Any, str]:
    """The device call: torch.jit.trace on cpu/cuda, the Neuron compiler on inf.

    `libs` lets tests hand in stand-ins for torch / torch_neuron / torch_neuronx;
    `workdir` is where the Neuron compiler works and logs.
    """
    libs = libs or {}
    torch = libs.get("torch") or __import__("torch")
    if processor == "cpu" or test_only_cpu(processor):
        return torch.jit.trace(module, example, strict=False), "cpu"
    if processor == "gpu":
        module = module.to("cuda")
        example = tuple(t.to("cuda") for t in example)
        return torch.jit.trace(module, example, strict=False), "cuda"
    if processor == "inf":
        neuron = libs.get("torch_neuron", _optional_import("torch_neuron"))
        if neuron is not None:  # Inf1: torch-neuron, NeuronCore pipelining
            cores = str(trace.get("pipeline_cores", 1))
            return torch.neuron.trace(
                module,
                example_inputs=list(example),
                compiler_args=["--neuroncore-pipeline-cores", cores],
                compiler_workdir=workdir,
            ), "neuron"
        neuronx = libs.get("torch_neuronx", _optional_import("torch_neuronx"))
        if neuronx is not None:  # Inf2 / Trn1: torch-neuronx
            return neuronx.trace(module, example, compiler_workdir=workdir), "neuronx"
        raise JobError(
            "processor inf needs torch-neuron (Inf1) or torch-neuronx (Inf2/Trn1) "
            "on the tracing host"
        )
    raise JobError(f"unknown processor {processor!r}")


def test_only_cpu(processor: str) -> bool:
    """Whether a test's stand-in host asked to trace this accelerator model on the cpu."""
    device = os.environ.get(TEST_ONLY_DEVICE)
    if not device or processor == "cpu":
        return False
    if device != "cpu":
        raise JobError(f"{TEST_ONLY_DEVICE}={device!r}: only cpu is understood")
    return True


def _optional_import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


def pooling_of(source: str) -> dict[str, Any]:
    """Sentence-transformers pooling (1_Pooling/config.json, modules.json) if the model has it."""
    pooling = {"mode": "mean", "normalize": False}
    directory = Path(source)
    if source.startswith("hf:") or not directory.is_dir():
        return pooling
    try:
        config = json.loads((directory / "1_Pooling" / "config.json").read_text())
        if config.get("pooling_mode_cls_token"):
            pooling["mode"] = "cls"
        elif config.get("pooling_mode_max_tokens"):
            pooling["mode"] = "max"
    except (OSError, ValueError):
        pass
    try:
        modules = json.loads((directory / "modules.json").read_text())
        pooling["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
    except (OSError, ValueError):
        pass
    return pooling


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def run(job: dict[str, Any]) -> Path:
    # Quiet libraries: the engine streams this job's output into the apply's progress.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    import torch
    import transformers

    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.utils.logging.disable_progress_bar()

    task, processor, trace = job["task"], job["processor"], job["trace"]
    out = Path(job["out_dir"])
    full = trace["sequence_length"]
    lengths = sorted(set(job.get("sequence_lengths") or [full]))
    if lengths[-1] != full:
        raise JobError(f"sequence_lengths {lengths} must end at the sequence length {full}")
    if test_only_cpu(processor):
        say(f"TEST ONLY: {TEST_ONLY_DEVICE}=cpu: tracing this {processor} model on the cpu")
    say(f"loading {job['model']} ({task}) from {job['source']}")
    tokenizer, model = load(job)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        modules, names, device = trace_lengths(job, lengths, tokenizer, model, tmp)
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        model.config.to_json_file(str(tmp / "config.json"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    meta: dict[str, Any] = {
        "format": 1,
        "model": job["model"],
        "source": job["source"],
        "task": task,
        "processor": processor,
        "trace": trace,
        "inputs": names,
        "sha256": modules[str(full)]["sha256"],
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "device": device,
    }
    if job.get("sequence_lengths"):
        meta["modules"] = modules
    if task == "feature-extraction":
        meta["pooling"] = pooling_of(job["source"])
    (tmp / "doinfer-trace.json").write_text(json.dumps(meta, indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    say(f"saved {out} sha256={meta['sha256']}")
    return out


def trace_lengths(
    job: dict[str, Any], lengths: list[int], tokenizer: Any, model: Any, directory: Path
) -> tuple[dict[str, dict[str, str]], list[str], str]:
    """Trace one module per sequence length into `directory`: model.pt at the full (last)
    length, model-<len>.pt below it. Returns {length: {file, sha256}}, input names, device."""
    import torch

    task, processor, trace = job["task"], job["processor"], job["trace"]
    workdir = job.get("compiler_workdir")
    modules: dict[str, dict[str, str]] = {}
    names: list[str] = []
    device = processor
    for length in lengths:
        names, tensors = example_inputs(tokenizer, task, {**trace, "sequence_length": length})
        module = wrap(model, task, names)
        say(f"tracing on {processor} ({trace['batch_size']}x{length}, inputs {', '.join(names)})")
        started = time.monotonic()
        with torch.no_grad():
            traced, device = compile_for(
                processor,
                module,
                tuple(tensors),
                trace,
                workdir=f"{workdir}/{length}" if workdir else None,
            )
            if device == "cpu":  # the traced graph must answer as the model does
                expected = module(*tensors)
                got = traced(*tensors)
                diff = max(float((a - b).abs().max()) for a, b in zip(expected, got, strict=True))
                if diff > MAX_ABS_DIFF:
                    raise JobError(f"traced module differs from the model by {diff:.2e}")
                say(f"traced in {time.monotonic() - started:.1f}s, max abs diff {diff:.1e}")
        file = "model.pt" if length == lengths[-1] else f"model-{length}.pt"
        torch.jit.save(traced, str(directory / file))
        modules[str(length)] = {"file": file, "sha256": sha256_of(directory / file)}
    return modules, names, device


def stop_when_stdin_closes() -> None:
    """Stop this job and its process group (the compiler's children) at stdin's end."""

    def watch() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        print("error: the engine that started this trace is gone; stopping", file=sys.stderr)
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str]) -> int:
    watch = "--stop-when-stdin-closes" in argv[1:]
    argv = [a for a in argv if a != "--stop-when-stdin-closes"]
    if len(argv) != 2:
        print("usage: trace_job.py JOB.json [--stop-when-stdin-closes]", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not watch:
        return trace(argv[1])
    stop_when_stdin_closes()
    code = trace(argv[1])
    # The watcher blocks in a read of stdin, which interpreter shutdown would wait on
    # (and abort): the job's work is done and written, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def trace(job_file: str) -> int:
    """Run the job in `job_file`; an exit code, with the error on stderr."""
    try:
        job = json.loads(Path(job_file).read_text())
        for key in ("model", "source", "task", "processor", "trace", "out_dir"):
            if key not in job:
                raise JobError(f"bad trace job {job_file}: no {key!r}")
    except (OSError, ValueError) as exc:
        print(f"error: bad trace job {job_file}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    try:
        run(job)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except Exception as exc:  # the model's own code failed: keep the whole story in the log
        traceback.print_exc()
        print(f"error: tracing {job['model']} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
