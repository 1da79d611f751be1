"""How many requests/s one load client sustains on one core, next to wrk on the same endpoint.

A trivial HTTP/1.1 endpoint (a raw asyncio server answering every GET with a fixed 200)
runs pinned to one core; the load client (`python -m engine.bench.worker`, the process
`doinfer bench` starts) runs pinned to another, first closed-loop at full speed, then
open-loop at a fixed rate to see whether it keeps it. wrk (Debian package `wrk`), pinned to
the same core as the client, shows what the endpoint can answer, i.e. that it is not what
limits the client. Needs two cores; run it on a quiet machine.

    python benchmarks/client_throughput.py [--seconds 5] [--concurrency 64] [--rate 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.bench.plan import START_DELAY_S, ClientPlan, ClientResult  # noqa: E402
from engine.bench.targets import Target  # noqa: E402

ANSWER = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
)
PATH = "/predictions/m-0?seq_0=hello"


class Trivial(asyncio.Protocol):
    """Answers every request head it reads, at once, on a keep-alive connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        heads = self.buffer.count(b"\r\n\r\n")
        if heads:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(ANSWER * heads)


def serve(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Trivial, "127.0.0.1", 0, backlog=4096))
    print(server.sockets[0].getsockname()[1], flush=True)
    loop.run_forever()


def run_client(plan: ClientPlan, cpu: int) -> ClientResult:
    """The load client as `doinfer bench` starts it, pinned to one core."""
    process = subprocess.run(
        ["taskset", "-c", str(cpu), sys.executable, "-m", "engine.bench.worker", "--plan", "-"],
        input=json.dumps(plan.to_dict()),
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=plan.duration_s + 120,
    )
    return ClientResult.from_dict(json.loads(process.stdout))


def run_wrk(port: int, cpu: int, seconds: float, connections: int) -> str:
    if not shutil.which("wrk"):
        return "wrk: not installed (apt-get install wrk)"
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(cpu),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            f"http://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return f"wrk -t1 -c{connections}: {float(rate.group(1)):,.0f} requests/s" if rate else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=3000.0)
    parser.add_argument("--serve", type=int, metavar="CPU", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    if len(os.sched_getaffinity(0)) < 2 or not shutil.which("taskset"):
        sys.exit("needs two cores and taskset (util-linux)")
    client_cpu, server_cpu = sorted(os.sched_getaffinity(0))[:2]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(server_cpu)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        target = Target(f"http://127.0.0.1:{port}", "trivial", 0, "m-0", "m", "feature-extraction")
        common = {"scenario": "throughput", "targets": [target], "duration_s": args.seconds}
        print(
            f"endpoint on cpu {server_cpu}, client and wrk on cpu {client_cpu}, "
            f"{args.seconds:g} s each"
        )

        closed = run_client(
            ClientPlan(mode="closed", concurrency=args.concurrency, warmup_s=1.0, **common),
            client_cpu,
        )
        errors = sum(not 200 <= s[3] < 300 for s in closed.samples)
        print(
            f"doinfer client, closed loop, {args.concurrency} in flight: "
            f"{len(closed.samples) / closed.duration_s:,.0f} requests/s ({errors} errors)"
        )

        start_at = time.time() + START_DELAY_S
        opened = run_client(
            ClientPlan(
                mode="open",
                rate=args.rate,
                arrivals="constant",
                warmup_s=1.0,
                start_at=start_at,
                **common,
            ),
            client_cpu,
        )
        lag = opened.lag
        kept = not any("could not keep" in note for note in opened.notes)
        print(
            f"doinfer client, open loop at {args.rate:,.0f}/s: "
            f"{len(opened.samples) / opened.duration_s:,.0f} requests/s answered, "
            f"{'kept the rate' if kept else 'did NOT keep the rate'} "
            f"(send lag p50 {lag.get('p50_ms', 0):.2f} ms, p99 {lag.get('p99_ms', 0):.2f} ms)"
        )
        for note in opened.notes:
            print(f"  note: {note}")

        print(run_wrk(port, client_cpu, args.seconds, args.concurrency))
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
