"""The model every peer serves: doinfer's traced MiniLM artifact, run as a user of that
system would run it (tokenize a batch padded to its longest text, run the module, mean-pool
over the mask, L2-normalise), on the same number of intra-op threads as doinfer.

Imports nothing of doinfer's server: the peers get the same model, not doinfer's code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_LENGTH = 128


class Embedder:
    def __init__(self, artifact: str | None = None, threads: int | None = None) -> None:
        import torch
        from transformers import AutoTokenizer

        artifact = artifact or os.environ["PEER_ARTIFACT"]
        threads = threads or int(os.environ.get("PEER_THREADS", "2"))
        torch.set_num_threads(threads)
        directory = Path(artifact)
        meta = json.loads((directory / "doinfer-trace.json").read_text())
        self.names = list(meta["inputs"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory / "tokenizer"))
        self.module = torch.jit.load(str(directory / "model.pt"), map_location="cpu").eval()
        # TorchScript's profiling executor optimises a graph during its first calls, for the
        # shapes it sees: warm up as doinfer's server does (engine/serving/models.py), with
        # two shapes, so that the optimised graph is the general one
        for _ in range(3):
            self.embed(["warm up"])
            self.embed(["warm up", "warm up " * 20])

    def embed(self, texts: list[str]) -> list[list[float]]:
        import torch

        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        with torch.inference_mode():
            (hidden,) = self.module(*(encoded[n] for n in self.names))
        mask = encoded["attention_mask"].unsqueeze(-1).to(torch.float32)
        pooled = (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).tolist()


def text_of(query: dict[str, Any]) -> str:
    return str(query.get("seq_0", ""))
