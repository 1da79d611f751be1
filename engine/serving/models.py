"""Loading a bundle's models and running them: tokenize, infer, decode, per task.

Instances of one artifact share one loaded module when the bundle allows it (the weights
are read-only at inference), so N instances cost about the memory of one. Models compute
off the event loop, so health checks answer while a model computes: on cpu every model of
the server computes on one shared thread, warm-up included. A second thread that runs torch
ops starts a second OpenMP team, and once a process has more OpenMP threads than cores,
libgomp stops spinning between parallel regions and sleeps in the kernel instead: measured
on MiniLM, ~100 context switches and +1.8 ms (+23%) per batch-1 call. Batches of different
models would only share the same cores anyway. On gpu and inf, where the device computes,
each runner has its own thread so that models run at once.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.artifacts import (
    BUNDLE_CONFIG_FILE,
    CONFIG_FILE,
    MODULE_FILE,
    TOKENIZER_DIR,
    TRACE_META_FILE,
    BundleConfig,
    BundleModel,
    TraceMeta,
    instance_names,
    module_files,
    padded_lengths,
    sha256_file,
)

log = logging.getLogger("doinfer.serving")
MAX_ANSWER_TOKENS = 30
WARM_UP_CALLS = 3
PAD_MULTIPLE = 8  # cpu/gpu: pad a batch's length up to a multiple of this
CHARS_PER_TOKEN = 4  # English text in WordPiece or BPE vocabularies, roughly
SPECIAL_TOKENS = 3  # [CLS] question [SEP] context [SEP]


class BundleError(Exception):
    """The bundle cannot be served (missing files, checksum mismatch)."""


class InvalidInput(ValueError):
    """A request this model cannot answer (the client's to fix: a 400, never a 500)."""


@dataclass(frozen=True)
class Request:
    seq_0: str
    seq_1: str | None = None


class ModelRunner:
    """One loaded traced module with its tokenizer; `infer` answers a batch of requests.

    Not thread-safe (a fast tokenizer must not be used from two threads): the batcher calls
    it on `executor`, a single thread, which other runners of the server may share.
    """

    def __init__(
        self,
        name: str,
        model: str,
        task: str,
        directory: Path,
        modules: dict[int, torch.jit.ScriptModule],
        meta: TraceMeta,
        executor: Executor,
    ) -> None:
        from transformers import AutoTokenizer

        self.name = name  # the model's name when its instances share it, else the instance's
        self.model = model
        self.task = task
        self.meta = meta
        self.modules = modules  # by the sequence length each takes (cpu/gpu: one, any length)
        self.tokenizer = AutoTokenizer.from_pretrained(
            str(directory / TOKENIZER_DIR), use_fast=True
        )
        config = json.loads((directory / CONFIG_FILE).read_text())
        self.labels: dict[int, str] = {int(k): v for k, v in config.get("id2label", {}).items()}
        self.max_length = int(meta["trace"]["sequence_length"])
        self.input_names = list(meta["inputs"])
        self.pad_values = {
            "input_ids": self.tokenizer.pad_token_id or 0,
            "attention_mask": 0,
            "token_type_ids": self.tokenizer.pad_token_type_id,
        }
        # A fixed-shape compiled module (Neuron) takes only the lengths it was compiled at,
        # and only its traced batch size; cpu and gpu modules take any shape.
        self.fixed_shapes = meta.get("processor") == "inf"
        self.batch_rows = int(meta["trace"].get("batch_size", 1)) if self.fixed_shapes else None
        self.lengths = padded_lengths(self.max_length) if self.fixed_shapes else None
        self.executor = executor

    def padded_width(self, length: int) -> int:
        """The width a batch whose longest input has `length` tokens is padded to."""
        if self.lengths is not None:
            return next(n for n in self.lengths if n >= length)
        return min(-(-length // PAD_MULTIPLE) * PAD_MULTIPLE, max(self.max_length, length))

    def estimated_width(self, request: Request) -> int:
        """The width this request would be padded to alone, estimated before tokenizing
        (the batcher groups requests by it, on the event loop, where tokenizing would cost
        too much)."""
        chars = len(request.seq_0) + len(request.seq_1 or "")
        tokens = chars // CHARS_PER_TOKEN + SPECIAL_TOKENS
        return self.padded_width(min(tokens, self.max_length))

    def module_for(self, length: int) -> torch.jit.ScriptModule:
        """The module compiled for this padded length, or the one that takes any."""
        return self.modules.get(length) or self.modules[self.max_length]

    @property
    def needs_context(self) -> bool:
        return self.task == "question-answering"

    def warm_up(self, calls: int = WARM_UP_CALLS) -> None:
        """TorchScript's profiling executor optimises a graph during its first calls (tens
        of ms each): make them here, not on users' first requests. Two batch shapes, so that
        the optimised graph is the general one."""
        request = Request("warm up", "warm up the model" if self.needs_context else None)
        for _ in range(calls):
            self.infer([request])
            self.infer([request, Request("warm up " * 20, request.seq_1)])

    def infer(self, requests: list[Request]) -> list[dict[str, Any] | InvalidInput]:
        """Answer each request, or say why it cannot be answered (the others still are).

        The batch is tokenized at once, then padded only as far as its longest input
        (rounded up to a multiple of 8, or to the next compiled length on a fixed-shape
        processor), so short requests do not pay for the traced sequence length.
        """
        answers: list[dict[str, Any] | InvalidInput | None] = list(self._check(requests))
        valid = [i for i, a in enumerate(answers) if a is None]
        step = self.batch_rows or max(len(valid), 1)
        for begin in range(0, len(valid), step):
            chunk = valid[begin : begin + step]
            for i, answer in zip(chunk, self._run([requests[i] for i in chunk]), strict=True):
                answers[i] = answer
        return [a for a in answers if a is not None]

    def _run(self, requests: list[Request]) -> list[dict[str, Any]]:
        if self.needs_context:
            encoded = self.tokenizer(
                [r.seq_0 for r in requests],
                [r.seq_1 or "" for r in requests],
                truncation="only_second",
                max_length=self.max_length,
                return_offsets_mapping=True,
            )
        else:
            encoded = self.tokenizer(
                [r.seq_0 for r in requests], truncation=True, max_length=self.max_length
            )
        tensors = self._padded(encoded, len(requests))
        module = self.module_for(tensors["input_ids"].shape[1])
        with torch.inference_mode():
            # a bf16/fp16 module answers in its precision: fp32 from here on (pooling, JSON)
            outputs = [o.float() for o in module(*(tensors[n] for n in self.input_names))]
        rows = len(requests)
        if self.task == "feature-extraction":
            return self._embeddings(outputs[0][:rows], tensors["attention_mask"][:rows])
        if self.task == "question-answering":
            return self._answers(outputs[0], outputs[1], encoded, requests)
        return self._labels(outputs[0][:rows])

    def _padded(self, encoded: Any, count: int) -> dict[str, torch.Tensor]:
        """The model's inputs as tensors of the batch's padded shape."""
        width = self.padded_width(max(len(row) for row in encoded["input_ids"]))
        rows = self.batch_rows or count
        tensors = {}
        for name in self.input_names:
            array = np.full((rows, width), self.pad_values[name], dtype=np.int64)
            for i, row in enumerate(encoded.get(name) or []):  # a tokenizer may omit type ids
                array[i, : len(row)] = row
            tensors[name] = torch.from_numpy(array)
        return tensors

    def _check(self, requests: list[Request]) -> list[InvalidInput | None]:
        """Question answering truncates only the context: the question must fit whole."""
        if not self.needs_context:
            return [None] * len(requests)
        room = self.max_length - 3  # [CLS] question [SEP] context [SEP]
        questions = self.tokenizer([r.seq_0 for r in requests], add_special_tokens=False)
        checked: list[InvalidInput | None] = []
        for ids in questions["input_ids"]:
            if len(ids) >= room:
                checked.append(
                    InvalidInput(
                        f"the question is too long: {len(ids)} tokens, where the model takes "
                        f"{self.max_length} for question and context together"
                    )
                )
            else:
                checked.append(None)
        return checked

    def _embeddings(self, hidden: torch.Tensor, mask: torch.Tensor) -> list[dict[str, Any]]:
        pooling = self.meta.get("pooling", {"mode": "mean", "normalize": False})
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        if pooling["mode"] == "cls":
            pooled = hidden[:, 0]
        elif pooling["mode"] == "max":
            pooled = hidden.masked_fill(weights == 0, -1e9).max(dim=1).values
        else:
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        if pooling["normalize"]:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return [{"embedding": row} for row in pooled.tolist()]

    def _answers(
        self, start: torch.Tensor, end: torch.Tensor, encoded: Any, requests: list[Request]
    ) -> list[dict[str, Any]]:
        results = []
        for i, request in enumerate(requests):
            context = [j for j, s in enumerate(encoded.sequence_ids(i)) if s == 1]
            if not context:
                results.append({"answer": "", "score": 0.0})
                continue
            first, last = context[0], context[-1]
            start_p = torch.softmax(start[i, first : last + 1], dim=0)
            end_p = torch.softmax(end[i, first : last + 1], dim=0)
            scores = torch.triu(start_p[:, None] * end_p[None, :])
            scores = torch.tril(scores, diagonal=MAX_ANSWER_TOKENS - 1)
            flat = int(torch.argmax(scores))
            s, e = divmod(flat, scores.shape[1])
            offsets = encoded["offset_mapping"][i]
            begin, finish = offsets[first + s][0], offsets[first + e][1]
            results.append(
                {"answer": (request.seq_1 or "")[begin:finish], "score": float(scores[s, e])}
            )
        return results

    def _labels(self, logits: torch.Tensor) -> list[dict[str, Any]]:
        probabilities = torch.softmax(logits, dim=-1)
        best = probabilities.argmax(dim=-1)
        return [
            {"label": self.labels.get(int(k), str(int(k))), "score": float(probabilities[i, k])}
            for i, k in enumerate(best)
        ]


@dataclass
class LoadedBundle:
    server: str
    runners: dict[str, ModelRunner]  # by served instance name ("<model>-<i>")
    models: list[BundleModel]

    def distinct_runners(self) -> list[tuple[ModelRunner, BundleModel]]:
        """Each loaded module once (instances may share one), with its model's settings."""
        settings = {m["name"]: m for m in self.models}
        distinct = {id(r): r for r in self.runners.values()}
        return [(r, settings[r.model]) for r in distinct.values()]


def load_bundle(bundle: Path) -> LoadedBundle:
    """Load every model of a bundle, checking each module against its recorded sha256."""
    try:
        config: BundleConfig = json.loads((bundle / BUNDLE_CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {bundle / BUNDLE_CONFIG_FILE}: {exc}") from None
    runners: dict[str, ModelRunner] = {}
    cpu_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compute")
    for model in config["models"]:
        directory = bundle / model["artifact"]
        meta: TraceMeta = json.loads((directory / TRACE_META_FILE).read_text())
        for file, expected in module_files(meta).items():
            digest = sha256_file(directory / file)
            if digest != expected:
                raise BundleError(
                    f"{directory / file}: sha256 {digest} does not match the trace "
                    f"metadata ({expected}); re-run doinfer apply"
                )
        _import_compiler_runtime(meta)
        started = time.monotonic()
        shared: ModelRunner | None = None
        # a NeuronCore runs one loaded module: on inf every instance loads its own
        share = config["share_weights"] and config["processor"] != "inf"
        for name in instance_names(model["name"], model["instances"]):
            if shared is None or not share:
                label = model["name"] if share else name
                modules = _load_modules(directory, meta)
                executor = (
                    cpu_thread
                    if config["processor"] == "cpu"
                    else ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"compute-{label}")
                )
                shared = ModelRunner(
                    label, model["name"], model["task"], directory, modules, meta, executor
                )
                executor.submit(shared.warm_up).result()  # on the thread that will compute
            runners[name] = shared
        log.info(
            "loaded %s x%d (%s, %s) in %.1fs",
            model["name"],
            model["instances"],
            model["task"],
            meta.get("precision", "fp32"),
            time.monotonic() - started,
        )
    return LoadedBundle(config["server"], runners, config["models"])


def _load_modules(directory: Path, meta: TraceMeta) -> dict[int, torch.jit.ScriptModule]:
    """The artifact's modules by the sequence length they take: model.pt at the traced
    length (any length on cpu and gpu), and on inf one per shorter padded length."""
    lengths = {int(meta["trace"]["sequence_length"]): MODULE_FILE}
    lengths.update({int(n): m["file"] for n, m in meta.get("modules", {}).items()})
    return {
        n: torch.jit.load(str(directory / file), map_location="cpu").eval()
        for n, file in sorted(lengths.items())
    }


def _import_compiler_runtime(meta: TraceMeta) -> None:
    """A Neuron-compiled module loads only once its runtime's operators are registered."""
    package = {"neuron": "torch_neuron", "neuronx": "torch_neuronx"}.get(meta.get("device", ""))
    if package is None:
        return
    try:
        importlib.import_module(package)
    except ImportError:
        raise BundleError(
            f"model {meta.get('model')} was compiled for {meta['device']}: this server needs "
            f"{package}, which is not installed (run it on an Inferentia host's image)"
        ) from None
