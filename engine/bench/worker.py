"""A load client as a process: `python -m engine.bench.worker --plan PLAN.json [--out FILE]`.

Reads a ClientPlan (a file, `-` for standard input, or with `--plans-env NAME` item
$JOB_COMPLETION_INDEX of a JSON list in the environment variable NAME, as the pods of a
Kubernetes Indexed Job get theirs), runs it on one event loop, and
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
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.bench.load import Client, OnProgress, new_event_loop, raise_file_limit
from engine.bench.plan import ClientPlan

PROGRESS_PREFIX = "doinfer-bench-progress"
PROGRESS_EVERY_S = 0.2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.bench.worker", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--plan", help="the client plan (JSON file, or - )")
    source.add_argument(
        "--plans-env",
        metavar="NAME",
        help="a JSON list of client plans in this environment variable: run the one at "
        "index $JOB_COMPLETION_INDEX (a Kubernetes Indexed Job's pod)",
    )
    parser.add_argument("--out", type=Path, help="where to write the result (default: stdout)")
    args = parser.parse_args(argv)
    try:
        plan = ClientPlan.from_dict(_plan_document(args.plan, args.plans_env))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
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


def _plan_document(path: str | None, plans_env: str | None) -> dict[str, Any]:
    if plans_env is not None:
        plans = json.loads(os.environ[plans_env])
        return plans[int(os.environ["JOB_COMPLETION_INDEX"])]
    assert path is not None
    return json.loads(sys.stdin.read() if path == "-" else Path(path).read_text())


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
