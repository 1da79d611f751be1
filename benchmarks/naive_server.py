"""The baseline the serving benchmark compares against: what the old FastAPI server did.

Each request is tokenized on its own, padded to the traced sequence length, and run
alone (batch 1) in the web framework's thread pool, on the same HTTP stack (litestar on
uvicorn) as doinfer's server, so the difference measured is the serving strategy alone.

    python benchmarks/naive_server.py --artifact DIR --port N [--threads N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import uvicorn
from litestar import Litestar, get
from litestar.params import FromPath
from transformers import AutoTokenizer


def create_app(artifact: Path) -> Litestar:
    meta = json.loads((artifact / "doinfer-trace.json").read_text())
    module = torch.jit.load(str(artifact / "model.pt"), map_location="cpu").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(artifact / "tokenizer"))
    length = meta["trace"]["sequence_length"]

    @get("/predictions/{name:str}", sync_to_thread=True)
    def predictions(name: FromPath[str], seq_0: str) -> dict[str, object]:
        encoded = tokenizer(
            seq_0, padding="max_length", truncation=True, max_length=length, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = module(*(encoded[n] for n in meta["inputs"]))[0]
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        return {"model": name, "embedding": pooled[0].tolist()}

    @get("/v2/health/ready", sync_to_thread=False)
    def ready() -> dict[str, bool]:
        return {"ready": True}

    return Litestar([predictions, ready])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    uvicorn.run(create_app(args.artifact), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
