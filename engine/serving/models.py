"""Loading a bundle's models and running them: tokenize, infer, decode, per task.

Instances of one artifact share one loaded module when the bundle allows it (the weights
are read-only at inference), so N instances cost about the memory of one. Each runner
computes on its own single worker thread, off the event loop, so health checks answer
while a model computes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    sha256_file,
)

log = logging.getLogger("doinfer.serving")
MAX_ANSWER_TOKENS = 30
WARM_UP_CALLS = 3


class BundleError(Exception):
    """The bundle cannot be served (missing files, checksum mismatch)."""


class InvalidInput(ValueError):
    """A request this model cannot answer (the client's to fix: a 400, never a 500)."""


@dataclass(frozen=True)
class Request:
    seq_0: str
    seq_1: str | None = None


class ModelRunner:
    """One loaded traced module with its tokenizer; `infer` takes a batch of requests."""

    def __init__(
        self, name: str, task: str, directory: Path, module: torch.jit.ScriptModule, meta: TraceMeta
    ) -> None:
        from transformers import AutoTokenizer

        self.name = name
        self.task = task
        self.meta = meta
        self.module = module
        self.tokenizer = AutoTokenizer.from_pretrained(
            str(directory / TOKENIZER_DIR), use_fast=True
        )
        config = json.loads((directory / CONFIG_FILE).read_text())
        self.labels: dict[int, str] = {int(k): v for k, v in config.get("id2label", {}).items()}
        self.max_length = int(meta["trace"]["sequence_length"])
        self.input_names = list(meta["inputs"])
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{name}")

    @property
    def needs_context(self) -> bool:
        return self.task == "question-answering"

    async def __call__(self, requests: list[Request]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.infer, requests)

    def warm_up(self, calls: int = WARM_UP_CALLS) -> None:
        """TorchScript's profiling executor optimises a graph during its first calls (tens
        of ms each): make them here, not on users' first requests."""
        request = Request("warm up", "warm up the model" if self.needs_context else None)
        for _ in range(calls):
            self.infer([request])

    def infer(self, requests: list[Request]) -> list[dict[str, Any]]:
        """Tokenize the batch (padded only to its longest input), run, decode."""
        for request in requests:
            self._check(request)
        firsts = [r.seq_0 for r in requests]
        if self.needs_context:
            encoded = self.tokenizer(
                firsts,
                [r.seq_1 or "" for r in requests],
                padding="longest",
                truncation="only_second",
                max_length=self.max_length,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
        else:
            encoded = self.tokenizer(
                firsts,
                padding="longest",
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        tensors = [encoded[n] for n in self.input_names]
        with torch.inference_mode():
            outputs = self.module(*tensors)
        if self.task == "feature-extraction":
            return self._embeddings(outputs[0], encoded["attention_mask"])
        if self.task == "question-answering":
            return self._answers(outputs[0], outputs[1], encoded, requests)
        return self._labels(outputs[0])

    def _check(self, request: Request) -> None:
        """Question answering truncates only the context: the question must fit whole.

        Runs on the inference thread: a fast tokenizer must not be used from two threads.
        """
        if not self.needs_context:
            return
        room = self.max_length - 3  # [CLS] question [SEP] context [SEP]
        length = len(self.tokenizer(request.seq_0, add_special_tokens=False)["input_ids"])
        if length >= room:
            raise InvalidInput(
                f"the question is too long: {length} tokens, where the model takes "
                f"{self.max_length} for question and context together"
            )

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
            begin, finish = int(offsets[first + s][0]), int(offsets[first + e][1])
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
    runners: dict[str, ModelRunner]  # by instance name ("<model>-<i>")
    models: list[BundleModel]


def load_bundle(bundle: Path) -> LoadedBundle:
    """Load every model of a bundle, checking each module against its recorded sha256."""
    try:
        config: BundleConfig = json.loads((bundle / BUNDLE_CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {bundle / BUNDLE_CONFIG_FILE}: {exc}") from None
    runners: dict[str, ModelRunner] = {}
    for model in config["models"]:
        directory = bundle / model["artifact"]
        meta: TraceMeta = json.loads((directory / TRACE_META_FILE).read_text())
        module_path = directory / MODULE_FILE
        digest = sha256_file(module_path)
        if digest != meta["sha256"]:
            raise BundleError(
                f"{module_path}: sha256 {digest} does not match the trace "
                f"metadata ({meta['sha256']}); re-run doinfer apply"
            )
        started = time.monotonic()
        shared: ModelRunner | None = None
        for name in instance_names(model["name"], model["instances"]):
            if shared is None or not config["share_weights"]:
                module = torch.jit.load(str(module_path), map_location="cpu").eval()
                shared = ModelRunner(name, model["task"], directory, module, meta)
                shared.warm_up()
            runners[name] = shared
        log.info(
            "loaded %s x%d (%s) in %.1fs",
            model["name"],
            model["instances"],
            model["task"],
            time.monotonic() - started,
        )
    return LoadedBundle(config["server"], runners, config["models"])
