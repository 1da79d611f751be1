"""A load client as a process: `python -m engine.bench.worker --plan PLAN.json [--out FILE]`.

Reads a ClientPlan (a file, or `-` for standard input), runs it on one event loop, and
writes the ClientResult as JSON to FILE or standard output. While it runs it prints
`PROGRESS_PREFIX <answered> <errors>` lines to standard error a few times a second.
Local benchmarks start these as subprocesses; a Docker or Kubernetes runtime can run the
same command in a container or Job next to the servers and collect the JSON it writes.
Exit status: 0 done, 2 the plan is not valid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from engine.bench.load import Client, OnProgress, new_event_loop, raise_file_limit
from engine.bench.plan import ClientPlan

PROGRESS_PREFIX = "doinfer-bench-progress"
PROGRESS_EVERY_S = 0.2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.bench.worker", description=__doc__)
    parser.add_argument("--plan", required=True, help="the client plan (JSON file, or - )")
    parser.add_argument("--out", type=Path, help="where to write the result (default: stdout)")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.plan == "-" else Path(args.plan).read_text()
        plan = ClientPlan.from_dict(json.loads(text))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: not a valid client plan: {exc}", file=sys.stderr)
        return 2
    raise_file_limit()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        result = runner.run(Client(plan, _reporter()).run())
    document = json.dumps(result.to_dict(), separators=(",", ":"))
    if args.out:
        args.out.write_text(document)
    else:
        sys.stdout.write(document)
        sys.stdout.flush()
    return 0


def _reporter() -> OnProgress:
    """Progress lines at most every PROGRESS_EVERY_S: cheap enough to call per answer."""
    last = 0.0

    def report(answered: int, errors: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            print(f"{PROGRESS_PREFIX} {answered} {errors}", file=sys.stderr, flush=True)

    return report


if __name__ == "__main__":
    sys.exit(main())
