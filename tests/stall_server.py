"""A test HTTP server with a known service time and periodic stalls: the truth to measure.

Every request takes `service_ms` from its arrival; during the last `stall_ms` of every
`period_s` (counted from the server's `epoch`) the server is stalled, and a request that
arrives then is served only when the stall ends, as behind a stop-the-world pause.
`Stalls.truth_ms(t)` is the latency a request sent at wall-clock time t should see, on
top of the network round trip; `GET /calibrate...` is served in `service_ms` and never
stalled, so a plain client can measure that round trip as it is after an idle wait.

The timing is exact to a few microseconds: the event loop waits with select()'s
microsecond timeout, wakes a little early and spins to the due time (an epoll timer would
answer up to 1 ms late, which is 5% of 20 ms).

Run: python tests/stall_server.py --service-ms 20 --stall-ms 1000 --period-s 4
It prints one JSON line, {"port": ..., "epoch": ...}, and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.bench.load import new_event_loop

WAKE_EARLY_S = 0.0005


@dataclass(frozen=True)
class Stalls:
    service_ms: float
    stall_ms: float
    period_s: float
    epoch: float  # wall-clock time the first period began

    def wait_s(self, t: float) -> float:
        """How long a request arriving at wall-clock time t waits for a stall to end."""
        if not self.stall_ms:
            return 0.0
        phase = (t - self.epoch) % self.period_s
        stall_from = self.period_s - self.stall_ms / 1000
        return self.period_s - phase if phase >= stall_from else 0.0

    def truth_ms(self, t: float) -> float:
        return self.wait_s(t) * 1000 + self.service_ms


class Handler(asyncio.Protocol):
    """HTTP/1.1 keep-alive; any GET is answered after its service time (and any stall)."""

    def __init__(self, stalls: Stalls) -> None:
        self.stalls = stalls
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            arrived, clock = time.time(), time.perf_counter()
            # /calibrate: the service time but never a stall, to measure the round trip
            wait = 0.0 if head.startswith(b"GET /calibrate") else self.stalls.wait_s(arrived)
            due = clock + wait + self.stalls.service_ms / 1000
            body = json.dumps({"waited_s": wait}).encode()
            answer = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            loop = asyncio.get_running_loop()
            loop.call_at(loop.time() + (due - clock) - WAKE_EARLY_S, self.answer, due, answer)

    def answer(self, due: float, answer: bytes) -> None:
        while time.perf_counter() < due:  # at most WAKE_EARLY_S plus timer slack
            pass
        if self.transport and not self.transport.is_closing():
            self.transport.write(answer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--service-ms", type=float, default=20.0)
    parser.add_argument("--stall-ms", type=float, default=0.0)
    parser.add_argument("--period-s", type=float, default=4.0)
    args = parser.parse_args()
    stalls = Stalls(args.service_ms, args.stall_ms, args.period_s, time.time())
    loop = new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: Handler(stalls), "127.0.0.1", 0, backlog=1024)
    )
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port, "epoch": stalls.epoch}), flush=True)
    loop.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
