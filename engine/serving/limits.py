"""What the model server takes from one HTTP client: the limits that keep a few hostile or
broken clients from holding it (docs/SECURITY.md lists them). Each is a flag of
`python -m engine.serving`; the defaults suit a server behind a load balancer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 4 * 1024 * 1024  # a larger request body: 413
    max_inputs: int = 256  # texts in one v2 request (and never more than max_queue): 413
    max_header_bytes: int = 16 * 1024  # request line and headers together: 431
    read_timeout_s: float = 10.0  # to send a whole request, from its first byte: 408
    max_connections: int = 1000  # open connections; past it new requests answer 503
    drain_delay_s: float = 0.0  # after SIGTERM, serving on (not ready) before closing
    drain_timeout_s: float = 30.0  # then, for the requests in flight to finish
