"""Run a model server: `python -m engine.serving --bundle DIR (--port N | --fd N)`.

A bundle holding router.json (no models) runs a fleet's router instead (serving/router.py).

Models are loaded before the server accepts requests: connections that arrive meanwhile
wait in the listening socket's backlog, and readiness is simply "the server answers".
SIGTERM drains it (engine.serving.http) and it exits 0. The limits flags bound what one
HTTP client can take of it (docs/SECURITY.md).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from engine import system
from engine.serving.limits import ServerLimits
from engine.serving.routing import ROUTER_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.serving", description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True, help="the packed bundle directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--fd", type=int, help="serve on this inherited, bound socket")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    parser.add_argument("--log-level", default="info")
    _add_limits(parser)
    parser.add_argument(
        "--handover",
        type=Path,
        help="once serving, offer the listening socket on a Unix socket here (handover.py)",
    )
    args = parser.parse_args(argv)
    limits = ServerLimits(**{f.name: getattr(args, f.name) for f in fields(ServerLimits)})
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("doinfer.serving")
    if (args.bundle / ROUTER_FILE).is_file():  # a fleet's router: no models, no torch
        return _route(args, limits)

    import torch

    from engine.serving.app import create_app
    from engine.serving.models import BundleError, load_bundle

    torch.set_num_threads(args.threads or system.usable_cpus())
    torch.set_num_interop_threads(1)  # models compute on their own threads (models.py)
    try:
        bundle = load_bundle(args.bundle)
    except BundleError as exc:
        log.error("%s", exc)
        return 1
    rss_mb = system.peak_rss_mb()
    log.info(
        "server %s: %d model instance(s) loaded, %d thread(s), %.0f MB resident",
        bundle.server,
        len(bundle.runners),
        torch.get_num_threads(),
        rss_mb,
    )
    return _serve(create_app(bundle, limits), args, limits)


def _route(args: argparse.Namespace, limits: ServerLimits) -> int:
    import json

    from engine.serving.router import create_router, load_table

    table = load_table(json.loads((args.bundle / ROUTER_FILE).read_text()))
    return _serve(create_router(table), args, limits)


def _serve(app: Any, args: argparse.Namespace, limits: ServerLimits) -> int:
    import uvicorn

    from engine.serving.handover import graceful, offer_listener
    from engine.serving.http import DrainingServer, guarded_protocol

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
        # idle connections close after their next answer, not at once (handover.py)
        http=graceful(guarded_protocol(limits)),
        ws="none",
        limit_concurrency=limits.max_connections,
        timeout_graceful_shutdown=limits.drain_timeout_s,
    )
    # An inherited socket is wrapped here rather than by uvicorn's `fd`, which declares it
    # AF_UNIX: asyncio then skips TCP_NODELAY, and Nagle's algorithm meets delayed ACKs to
    # add ~40 ms to every keep-alive response.
    sockets = [socket.socket(fileno=args.fd)] if args.fd is not None else None
    server = DrainingServer(config, app, limits.drain_delay_s)
    if args.handover and sockets:
        offer_listener(
            args.handover, sockets[0], lambda: server.started, lambda: server.should_exit
        )
    server.run(sockets=sockets)
    return 0


def _add_limits(parser: argparse.ArgumentParser) -> None:
    """One flag per ServerLimits field, its default the field's."""
    defaults = ServerLimits()
    helps = {
        "max_body_bytes": "largest request body; larger is a 413",
        "max_inputs": "most texts in one v2 request; more is a 413",
        "max_header_bytes": "largest request line and headers together; larger is a 431",
        "read_timeout_s": "seconds a client may take to send a request; then a 408",
        "max_connections": "most open connections; past it requests answer 503",
        "drain_delay_s": "seconds to serve on after SIGTERM, not ready, before closing",
        "drain_timeout_s": "seconds in-flight requests may take to finish after SIGTERM",
    }
    for field in fields(ServerLimits):
        default = getattr(defaults, field.name)
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=type(default),
            default=default,
            help=f"{helps[field.name]} (default {default})",
        )


if __name__ == "__main__":
    sys.exit(main())
