"""The on-disk contracts between steps: a traced artifact and a server bundle.

A *traced artifact* is what the trace step produces, whether it ran here or on a remote
host, and what the content-addressed cache stores under its fingerprint:

    <artifact>/
      model.pt              torch.jit traced module (inputs in the order of meta["inputs"]),
                            at the traced batch size and sequence length
      model-<len>.pt        inf only: one compiled module per shorter padded length
                            (padded_lengths), at the traced batch size
      tokenizer/            the tokenizer, saved with save_pretrained (fast tokenizer)
      config.json           the model's transformers config (id2label for classification)
      doinfer-trace.json    TraceMeta: what was traced, how, with which versions, sha256

A Neuron module takes exactly the shape it was compiled at, so an inf artifact holds one
module per length of padded_lengths(sequence_length): meta["modules"] maps each length
(as a string) to its file and sha256 ("128" -> model.pt, "64" -> model-64.pt, ...), and a
server pads each batch to the shortest length that holds it and runs that module. cpu and
gpu artifacts have model.pt only, which takes any shape, and no "modules".

A *bundle* is what the pack step produces: everything one model server needs, and
nothing it would have to fetch (never a hub at start):

    <bundle>/
      server.json           BundleConfig
      models/<model>/       one traced artifact per distinct model (hard links into the cache)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from engine.canonical import canonical_json

MODULE_FILE = "model.pt"
TOKENIZER_DIR = "tokenizer"
CONFIG_FILE = "config.json"
TRACE_META_FILE = "doinfer-trace.json"
BUNDLE_CONFIG_FILE = "server.json"
BUNDLE_MODELS_DIR = "models"
ARTIFACT_FORMAT = 1
# What determines a traced module: not the model's name in a spec, nor the host tracing it
ARTIFACT_KEY_INPUTS = ("source", "task", "processor", "trace", "calibration", "versions")


def artifact_key(trace_inputs: Mapping[str, Any]) -> str:
    """A traced artifact's fingerprint, from its trace step's inputs: its name in the
    cache, and what a measured profile of it is keyed by (precision included). Hashed as
    engine/graph/fingerprint.py hashes a step with no upstream, so the keys of artifacts
    traced before this function existed still hold."""
    inputs = {k: trace_inputs[k] for k in ARTIFACT_KEY_INPUTS}
    payload = canonical_json({"inputs": inputs, "upstream": {}})
    return hashlib.sha256(payload.encode()).hexdigest()


class Pooling(TypedDict):
    mode: str  # "mean" | "cls" | "max"
    normalize: bool


class ModuleFile(TypedDict):
    file: str  # relative to the artifact: "model.pt" or "model-<len>.pt"
    sha256: str


class Accuracy(TypedDict, total=False):
    """A traced module's agreement with the fp32 model on the calibration texts."""

    precision: str
    texts: int
    floor: float
    metric: str  # "cosine" (feature-extraction) | "agreement" (classification, QA)
    cosine_min: float
    cosine_mean: float
    agreement: float  # same top-1 label, or same answer span
    max_probability_diff: float  # text-classification
    passed: bool
    summary: str  # one line, as the plan and status show it
    seconds: float  # the traced module's compute time on the calibration texts


class TraceMeta(TypedDict, total=False):
    format: int
    model: str
    source: str
    task: str
    processor: str
    trace: dict[str, Any]  # sequence_length, batch_size, pipeline_cores, precision, ...
    inputs: list[str]  # e.g. ["input_ids", "attention_mask", "token_type_ids"]
    pooling: Pooling  # feature-extraction only
    sha256: str  # of model.pt
    modules: dict[str, ModuleFile]  # inf only: per padded sequence length ("16", ..., "128")
    torch_version: str
    transformers_version: str
    device: str  # what the module was traced on: "cpu", "cuda", "neuron", "neuronx"
    precision: str  # what it computes in: "fp32", "bf16", "fp16", "int8" (auto resolved)
    accuracy: Accuracy  # its agreement with the fp32 model, measured by the trace
    precision_trials: list[Accuracy]  # precision auto: every precision measured


class BundleModel(TypedDict):
    name: str  # the spec's model name; instances are served as "<name>-<i>"
    task: str
    instances: int
    artifact: str  # path relative to the bundle: "models/<name>"
    max_batch_size: int
    max_delay_ms: float
    max_queue: int
    max_padding: float


class BundleConfig(TypedDict):
    format: int
    server: str
    processor: str
    threads: int | None
    share_weights: bool
    models: list[BundleModel]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def module_files(meta: TraceMeta) -> dict[str, str]:
    """Every module file of an artifact and the sha256 it must have."""
    files = {MODULE_FILE: meta.get("sha256", "")}
    for module in meta.get("modules", {}).values():
        files[module["file"]] = module["sha256"]
    return files


def artifact_problem(directory: Path, full_check: bool) -> str | None:
    """Why a traced artifact is unusable, or None. The full check hashes every module."""
    try:
        meta: TraceMeta = json.loads((directory / TRACE_META_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return f"artifact {directory} is missing from the cache"
    for name, digest in module_files(meta).items():
        module = directory / name
        if not module.is_file():
            return f"{module} is missing"
        if full_check and sha256_file(module) != digest:
            return f"{module} does not match its sha256"
    return None


def instance_names(model: str, instances: int) -> list[str]:
    """Names under which a packed model's instances are served: `<model>-<i>`."""
    return [f"{model}-{i}" for i in range(instances)]


def padded_lengths(sequence_length: int) -> list[int]:
    """The sequence lengths a server pads a batch to on a fixed-shape processor (inf).

    Powers of two from 16 up to the traced sequence length, and that length itself: a
    Neuron trace compiles one module per length here, and the server pads each batch to the
    shortest that holds its longest input. (cpu and gpu modules take any shape; the server
    pads those only to a multiple of 8.)
    """
    lengths = []
    length = 16
    while length < sequence_length:
        lengths.append(length)
        length *= 2
    return [*lengths, sequence_length]


def default_request(task: str) -> dict[str, Any]:
    """A realistic request for a task, used by scenarios when the spec gives no text."""
    if task == "question-answering":
        return {
            "seq_0": "What does the engine compare before it applies a plan?",
            "seq_1": "Before it applies a plan, the engine compares the desired fingerprint of "
            "every step with the recorded state and with what it observes on the runtime.",
        }
    if task == "text-classification":
        return {"seq_0": "The servers came up quickly and every answer was correct.", "seq_1": None}
    return {"seq_0": "Inference servers packed densely onto few machines cost less.", "seq_1": None}
