"""Trace one model into a TorchScript artifact. Self-contained on purpose.

This script imports only the standard library, torch and transformers (and, on Inferentia
hosts, torch_neuron or torch_neuronx), never the doinfer package: the engine runs it in a
child process here, and uploads it to GPU and Inferentia hosts to run there.

    python trace_job.py JOB.json [--stop-when-stdin-closes]

JOB.json: {"model": name, "source": "<dir>" | "hf:<id>", "task": ..., "processor":
"cpu"|"gpu"|"inf", "trace": {"sequence_length", "batch_size", "pipeline_cores",
"precision" (fp32 | bf16 | fp16 | int8 | auto, default fp32), "accuracy_floor" (optional)},
"out_dir": path, and optionally "sequence_lengths": [...] (a fixed-shape processor's
padded lengths: one module is compiled per length), "compiler_workdir": path (where
the Neuron compiler keeps its work and log), "calibration": [[seq_0, seq_1 | null], ...]
(the texts on which the traced module is compared with the fp32 model)}. The artifact
(model.pt, model-<len>.pt, tokenizer/, config.json, doinfer-trace.json) is written to a
temporary sibling and renamed into out_dir, so it appears whole or not at all.

Precision: the traced module is measured against the fp32 model on the calibration texts
(cosine of the pooled embeddings; top-1 agreement and the largest probability difference of
a classifier; exact-span agreement of question answering), the numbers recorded in
doinfer-trace.json; below the floor the job fails with them. `auto` traces every precision
the processor supports, measures each, and keeps the fastest within the floor.

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
# the floor a measured agreement must reach, by task, when the spec sets none
DEFAULT_FLOOR = {"feature-extraction": 0.999, "text-classification": 0.99,
                 "question-answering": 0.99}  # fmt: skip
CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}
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


def example_inputs(tokenizer: Any, task: str, trace: dict[str, Any]) -> tuple[list[str], list[Any]]:
    texts = [EXAMPLE_TEXT] if task == "question-answering" else [(EXAMPLE_TEXT[0], None)]
    encoded = encode(tokenizer, task, texts * trace["batch_size"], trace["sequence_length"])
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in encoded]
    return names, [encoded[n] for n in names]


def encode(tokenizer: Any, task: str, texts: list[Any], length: int, fixed: bool = True) -> Any:
    """Texts ([seq_0, seq_1 or None] each) as the traced module takes them: truncated to
    `length`, and padded to it when `fixed` (else to the longest text, as a server pads for
    a module that takes any shape); question answering: question and context as a pair."""
    padding = "max_length" if fixed else "longest"
    if task == "question-answering":
        return tokenizer(
            [q for q, _ in texts],
            [c or "" for _, c in texts],
            padding=padding,
            truncation=True,  # longest first: a calibration question may be long
            max_length=length,
            return_tensors="pt",
        )
    return tokenizer(
        [t for t, _ in texts],
        padding=padding,
        truncation=True,
        max_length=length,
        return_tensors="pt",
    )


def compile_for(
    processor: str,
    module: Any,
    example: tuple[Any, ...],
    trace: dict[str, Any],
    libs: dict[str, Any] | None = None,
    workdir: str | None = None,
) -> tuple[Any, str]:
    """The device call: torch.jit.trace on cpu/cuda, the Neuron compiler on inf.

    On cpu and gpu `module` already holds the weights at the trace's precision (cast_to);
    on inf it is the fp32 model and the Neuron compiler casts, as its options say.
    `libs` lets tests hand in stand-ins for torch / torch_neuron / torch_neuronx;
    `workdir` is where the Neuron compiler works and logs.
    """
    libs = libs or {}
    torch = libs.get("torch") or __import__("torch")
    precision = trace.get("precision", "fp32")
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
                compiler_args=["--neuroncore-pipeline-cores", cores, *NEURON_CAST[precision]],
                compiler_workdir=workdir,
            ), "neuron"
        neuronx = libs.get("torch_neuronx", _optional_import("torch_neuronx"))
        if neuronx is not None:  # Inf2 / Trn1: torch-neuronx
            return neuronx.trace(
                module, example, compiler_workdir=workdir, compiler_args=NEURONX_CAST[precision]
            ), "neuronx"
        raise JobError(
            "processor inf needs torch-neuron (Inf1) or torch-neuronx (Inf2/Trn1) "
            "on the tracing host"
        )
    raise JobError(f"unknown processor {processor!r}")


# The Neuron compilers cast by themselves unless told not to (neuron-cc: --fast-math all,
# fp32 to bf16; neuronx-cc: --auto-cast matmult to bf16): fp32 must say none.
NEURON_CAST = {
    "fp32": ["--fast-math", "none"],
    "bf16": ["--fast-math", "fp32-cast-all"],
    "fp16": ["--fast-math", "fp32-cast-all-fp16"],
}
NEURONX_CAST = {
    "fp32": ["--auto-cast", "none"],
    "bf16": ["--auto-cast", "all", "--auto-cast-type", "bf16"],
    "fp16": ["--auto-cast", "all", "--auto-cast-type", "fp16"],
}


def supported_precisions(
    processor: str, libs: dict[str, Any] | None = None, flags: set[str] | None = None
) -> list[str]:
    """The precisions this processor computes in, fp32 first. cpu: bf16 and fp16 only with
    the instructions that make them fast (AVX-512 BF16/AMX, AVX-512 FP16/AMX-FP16), int8 as
    dynamic quantization of the linear layers; gpu: fp16, and bf16 where CUDA has it; inf:
    what the Neuron compilers cast to (no int8)."""
    if processor == "cpu" or test_only_cpu(processor):
        flags = cpu_flags() if flags is None else flags
        fast = [p for p, needed in CPU_FLAGS.items() if flags & set(needed)]
        return ["fp32", *fast, "int8"]
    if processor == "gpu":
        torch = (libs or {}).get("torch") or __import__("torch")
        return ["fp32", "fp16", *(["bf16"] if torch.cuda.is_bf16_supported() else [])]
    if processor == "inf":
        return ["fp32", "bf16", "fp16"]
    raise JobError(f"unknown processor {processor!r}")


def cpu_flags() -> set[str]:
    """This CPU's feature flags (Linux /proc/cpuinfo; elsewhere none: fp32 and int8 only)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cast_to(model: Any, precision: str, processor: str) -> Any:
    """A copy of the fp32 model at `precision` for torch.jit.trace (cpu, gpu); on inf the
    fp32 model itself, which the Neuron compiler casts."""
    import copy

    import torch

    if precision == "fp32" or (processor == "inf" and not test_only_cpu(processor)):
        return model
    if precision == "int8":
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
        )
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return copy.deepcopy(model).to(dtype)


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
    quiet_libraries()
    task, processor, trace = job["task"], job["processor"], job["trace"]
    out = Path(job["out_dir"])
    full = trace["sequence_length"]
    lengths = sorted(set(job.get("sequence_lengths") or [full]))
    if lengths[-1] != full:
        raise JobError(f"sequence_lengths {lengths} must end at the sequence length {full}")
    if test_only_cpu(processor):
        say(f"TEST ONLY: {TEST_ONLY_DEVICE}=cpu: tracing this {processor} model on the cpu")
    requested = trace.get("precision", "fp32")
    supported = supported_precisions(processor)
    if requested != "auto" and requested not in supported:
        raise JobError(unsupported(requested, processor, supported))
    say(f"loading {job['model']} ({task}) from {job['source']}")
    tokenizer, model = load(job)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        trials: list[dict[str, Any]] = []
        chosen = None
        if requested == "auto":
            chosen, trials = choose_precision(job, supported, tokenizer, model)
        modules, names, device, accuracy = trace_lengths(
            job, lengths, tokenizer, model, tmp, chosen
        )
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        model.config.to_json_file(str(tmp / "config.json"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    meta = artifact_meta(job, names, modules, device, accuracy, trials)
    (tmp / "doinfer-trace.json").write_text(json.dumps(meta, indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    say(f"saved {out} sha256={meta['sha256']}")
    return out


def quiet_libraries() -> None:
    """Quiet torch and transformers: the engine streams this job's output into the
    apply's progress, where warnings and progress bars are noise."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    import torch
    import transformers

    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*quantiz")  # int8: deprecation notices
    transformers.utils.logging.disable_progress_bar()


def artifact_meta(
    job: dict[str, Any],
    names: list[str],
    modules: dict[str, dict[str, str]],
    device: str,
    accuracy: dict[str, Any],
    trials: list[dict[str, Any]],
) -> dict[str, Any]:
    """What doinfer-trace.json says of the artifact: what was traced, with which libraries,
    on which device, at which precision and with what measured agreement."""
    import torch
    import transformers

    trace = job["trace"]
    meta: dict[str, Any] = {
        "format": 1,
        "model": job["model"],
        "source": job["source"],
        "task": job["task"],
        "processor": job["processor"],
        "trace": trace,
        "inputs": names,
        "sha256": modules[str(trace["sequence_length"])]["sha256"],
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "device": device,
        "precision": accuracy["precision"],
        "accuracy": accuracy,
    }
    if trials:
        meta["precision_trials"] = trials
    if job.get("sequence_lengths"):
        meta["modules"] = modules
    if job["task"] == "feature-extraction":
        meta["pooling"] = pooling_of(job["source"])
    return meta


def unsupported(precision: str, processor: str, supported: list[str]) -> str:
    why = ""
    if processor == "cpu" and precision in CPU_FLAGS:
        flags = " or ".join(CPU_FLAGS[precision])
        why = f": it needs a CPU with {flags}, which this one lacks"
    return (
        f"precision {precision} is not supported on {processor}{why} (supported here: "
        f"{', '.join(supported)}; or precision: auto)"
    )


def trace_lengths(
    job: dict[str, Any],
    lengths: list[int],
    tokenizer: Any,
    model: Any,
    directory: Path,
    ready: tuple[Any, str, list[str], dict[str, Any]] | None = None,
) -> tuple[dict[str, dict[str, str]], list[str], str, dict[str, Any]]:
    """Trace one module per sequence length into `directory`: model.pt at the full (last)
    length, model-<len>.pt below it, at the trace's precision; the full-length module is
    measured against the fp32 model on the calibration texts, and the job fails below the
    floor. `ready`: the full-length module already traced and measured (precision auto).
    Returns {length: {file, sha256}}, input names, device, the measured accuracy."""
    import torch

    precision = ready[3]["precision"] if ready else job["trace"].get("precision", "fp32")
    modules: dict[str, dict[str, str]] = {}
    names: list[str] = []
    device = job["processor"]
    accuracy: dict[str, Any] = {}
    for length in lengths:
        if ready and length == lengths[-1]:
            traced, device, names, accuracy = ready
        else:
            traced, device, names = trace_one(job, length, precision, tokenizer, model)
            if length == lengths[-1]:
                accuracy = measure(job, precision, tokenizer, model, traced, names)
                if not accuracy["passed"]:
                    raise JobError(
                        f"precision {precision} is below the accuracy floor: "
                        f"{accuracy['summary']}; use a higher precision, or lower "
                        f"trace.accuracy_floor if that is good enough"
                    )
                say(f"accuracy at {precision}: {accuracy['summary']}")
        file = "model.pt" if length == lengths[-1] else f"model-{length}.pt"
        torch.jit.save(traced, str(directory / file))
        modules[str(length)] = {"file": file, "sha256": sha256_of(directory / file)}
    return modules, names, device, accuracy


def trace_one(
    job: dict[str, Any], length: int, precision: str, tokenizer: Any, model: Any
) -> tuple[Any, str, list[str]]:
    """One module at one sequence length and precision: traced, device, input names."""
    import torch

    task, processor, trace = job["task"], job["processor"], job["trace"]
    workdir = job.get("compiler_workdir")
    names, tensors = example_inputs(tokenizer, task, {**trace, "sequence_length": length})
    module = wrap(cast_to(model, precision, processor), task, names)
    say(
        f"tracing on {processor} at {precision} ({trace['batch_size']}x{length}, "
        f"inputs {', '.join(names)})"
    )
    started = time.monotonic()
    with torch.no_grad():
        traced, device = compile_for(
            processor,
            module,
            tuple(tensors),
            {**trace, "precision": precision},
            workdir=f"{workdir}/{length}" if workdir else None,
        )
        if device == "cpu":  # the traced graph must answer as the module it traced
            expected = module(*tensors)
            got = traced(*tensors)
            diff = max(
                float((a.float() - b.float()).abs().max())
                for a, b in zip(expected, got, strict=True)
            )
            if diff > MAX_ABS_DIFF:
                raise JobError(f"traced module differs from the model by {diff:.2e}")
            say(f"traced in {time.monotonic() - started:.1f}s, max abs diff {diff:.1e}")
    return traced, device, names


def choose_precision(
    job: dict[str, Any], supported: list[str], tokenizer: Any, model: Any
) -> tuple[tuple[Any, str, list[str], dict[str, Any]], list[dict[str, Any]]]:
    """precision auto: trace the full length at every supported precision, measure each on
    the calibration texts (agreement, and the traced module's compute time there), keep
    the fastest within the floor. Returns it (module, device, names, accuracy) and every
    trial's numbers."""
    length = job["trace"]["sequence_length"]
    trials, passing = [], []
    for precision in supported:
        traced, device, names = trace_one(job, length, precision, tokenizer, model)
        accuracy = measure(job, precision, tokenizer, model, traced, names)
        say(f"auto: {precision}: {accuracy['summary']}, {accuracy['seconds']:.2f}s")
        trials.append(accuracy)
        if accuracy["passed"]:
            passing.append((accuracy["seconds"], (traced, device, names, accuracy)))
    if not passing:
        numbers = "; ".join(f"{t['precision']}: {t['summary']}" for t in trials)
        raise JobError(f"no precision reaches the accuracy floor: {numbers}")
    best = min(passing, key=lambda p: p[0])[1]
    say(f"auto: chose {best[3]['precision']}, the fastest within the floor")
    return best, trials


def calibration_texts(job: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The job's calibration texts, or (a job written by hand) the built-in example."""
    texts = job.get("calibration")
    if texts:
        return [(t[0], t[1]) for t in texts]
    if job["task"] == "question-answering":
        return [EXAMPLE_TEXT]
    return [(EXAMPLE_TEXT[0], None), (EXAMPLE_TEXT[1], None)]


def measure(
    job: dict[str, Any], precision: str, tokenizer: Any, model: Any, traced: Any, names: list[str]
) -> dict[str, Any]:
    """Run the traced module and the fp32 model on the calibration texts in batches of the
    traced size, padded to the traced length on inf (a Neuron module takes no other shape),
    and compare their answers as the task's users would."""
    import torch

    task, trace = job["task"], job["trace"]
    reference = wrap(model, task, names)
    where = next(model.parameters()).device  # fp32 on gpu: traced and moved to cuda
    texts = calibration_texts(job)
    rows = trace["batch_size"]
    pooling = pooling_of(job["source"])["mode"]
    fixed = job["processor"] == "inf" and not test_only_cpu("inf")
    scores: list[tuple[float, float]] = []
    seconds = 0.0
    for begin in range(0, len(texts), rows):
        chunk = texts[begin : begin + rows]
        real = len(chunk)
        if fixed:  # a Neuron module takes only its batch size
            chunk += [chunk[0]] * (rows - real)
        encoded = encode(tokenizer, task, chunk, trace["sequence_length"], fixed)
        tensors = tuple(encoded[n] for n in names)
        with torch.no_grad():
            expected = [o.float().cpu() for o in reference(*(t.to(where) for t in tensors))]
            device = "cuda" if job["processor"] == "gpu" and not test_only_cpu("gpu") else "cpu"
            started = time.perf_counter()
            got = [o.float().cpu() for o in traced(*(t.to(device) for t in tensors))]
            seconds += time.perf_counter() - started
        scores += compare(task, pooling, expected, got, encoded)[:real]
    floor = float(trace.get("accuracy_floor") or DEFAULT_FLOOR[task])
    return summarize(task, precision, scores, floor, seconds)


def compare(
    task: str, pooling: str, expected: list[Any], got: list[Any], encoded: Any
) -> list[tuple[float, float]]:
    """Per text: (agreement, difference). Embeddings: (cosine of the pooled vectors, 0);
    classification: (same top-1 label, largest probability difference); question
    answering: (same answer span, 0)."""
    import torch

    if task == "feature-extraction":
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        a, b = pool(expected[0], mask, pooling), pool(got[0], mask, pooling)
        return [(float(c), 0.0) for c in torch.nn.functional.cosine_similarity(a, b, dim=-1)]
    if task == "text-classification":
        p, q = torch.softmax(expected[0], -1), torch.softmax(got[0], -1)
        same = p.argmax(-1) == q.argmax(-1)
        diff = (p - q).abs().max(-1).values
        return [(float(s), float(d)) for s, d in zip(same, diff, strict=True)]
    scores = []
    for i in range(expected[0].shape[0]):
        context = [j for j, s in enumerate(encoded.sequence_ids(i)) if s == 1]
        spans = [best_span(o[0][i], o[1][i], context) for o in (expected, got)]
        scores.append((float(spans[0] == spans[1]), 0.0))
    return scores


def pool(hidden: Any, mask: Any, mode: str) -> Any:
    """Sentence-transformers pooling over the real tokens, as the server pools."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(mask == 0, -1e9).max(dim=1).values
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def best_span(start: Any, end: Any, context: list[int]) -> tuple[int, int]:
    """The answer span (first, last token) with the highest start x end score in the
    context, at most 30 tokens long, as the server picks it."""
    import torch

    if not context:
        return (-1, -1)
    first, last = context[0], context[-1]
    s = torch.softmax(start[first : last + 1], 0)
    e = torch.softmax(end[first : last + 1], 0)
    scores = torch.tril(torch.triu(s[:, None] * e[None, :]), diagonal=29)
    begin, finish = divmod(int(torch.argmax(scores)), scores.shape[1])
    return (first + begin, first + finish)


def cut(value: float, places: int = 5) -> str:
    """`value` cut (not rounded) to `places` decimals: a cosine of 0.9999996 below a floor
    of 1 shows as 0.99999, never as 1.00000."""
    scale = 10**places
    return f"{int(value * scale) / scale:.{places}f}"


def summarize(
    task: str, precision: str, scores: list[tuple[float, float]], floor: float, seconds: float
) -> dict[str, Any]:
    """The measured agreement as doinfer-trace.json records it, with a one-line summary."""
    values = [a for a, _ in scores]
    result: dict[str, Any] = {"precision": precision, "texts": len(scores), "floor": floor}
    if task == "feature-extraction":
        low, mean = min(values), sum(values) / len(values)
        result |= {"metric": "cosine", "cosine_min": low, "cosine_mean": mean}
        result["passed"] = low >= floor
        text = f"cosine to fp32 min {cut(low)}, mean {cut(mean)}"
    else:
        agreement = sum(values) / len(values)
        result |= {"metric": "agreement", "agreement": agreement}
        result["passed"] = agreement >= floor
        if task == "text-classification":
            diff = max(d for _, d in scores)
            result["max_probability_diff"] = diff
            text = f"top-1 agreement with fp32 {cut(agreement)}, max probability diff {diff:.5f}"
        else:
            text = f"exact-span agreement with fp32 {cut(agreement)}"
    result["summary"] = f"{text} on {len(scores)} texts (floor {floor:g})"
    result["seconds"] = seconds
    return result


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
