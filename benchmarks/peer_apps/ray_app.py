"""The MiniLM on Ray Serve, configured as its documentation recommends for throughput:
dynamic request batching with @serve.batch (the batch handler async, taking a list),
max_ongoing_requests above max_batch_size so that batches can fill, the intra-op threads
set in the replica (OMP_NUM_THREADS / torch.set_num_threads), the HTTP proxy on
127.0.0.1, no access log. Replicas reserve no CPU (num_cpus 0): the machine's cores are
shared by all of them, as doinfer's instances share theirs. Answers
GET /predictions/minilm-0?seq_0=TEXT as doinfer does.

    python benchmarks/peer_apps/ray_app.py ARTIFACT PORT THREADS REPLICAS BATCH WAIT_MS
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    artifact, port, threads, replicas, batch, wait_ms = sys.argv[1:7]
    os.environ["OMP_NUM_THREADS"] = threads
    import ray
    from ray import serve
    from starlette.requests import Request

    from benchmarks.peer_apps.embedder import Embedder

    @serve.deployment(
        num_replicas=int(replicas),
        max_ongoing_requests=4 * int(batch),
        ray_actor_options={
            "num_cpus": 0,
            "runtime_env": {"env_vars": {"OMP_NUM_THREADS": threads}},
        },
    )
    class MiniLM:
        def __init__(self) -> None:
            self.embedder = Embedder(artifact, int(threads))

        @serve.batch(max_batch_size=int(batch), batch_wait_timeout_s=float(wait_ms) / 1000)
        async def embed(self, texts: list[str]) -> list[list[float]]:
            return self.embedder.embed(texts)

        async def __call__(self, request: Request) -> dict[str, list[float]]:
            return {"embedding": await self.embed(request.query_params.get("seq_0", ""))}

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(port)})
    quiet = {"enable_access_log": False, "log_level": "WARNING"}  # doinfer logs no request
    serve.run(MiniLM.bind(), route_prefix="/predictions/minilm-0", logging_config=quiet)
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
