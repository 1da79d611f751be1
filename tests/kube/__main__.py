"""`python -m tests.kube [--port 0] [--kubeconfig PATH]`: serve until interrupted; prints the
URL (and writes a kubeconfig with context doinfer-test when asked)."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from tests.kube.handle import closed_port_url, write_kubeconfig
from tests.kube.server import KubeApiServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.kube")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="doinfer-test-token")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the server here")
    args = parser.parse_args()
    server = KubeApiServer(token=args.token, port=args.port).start()
    if args.kubeconfig:
        write_kubeconfig(args.kubeconfig, server.url, args.token, closed_port_url())
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
