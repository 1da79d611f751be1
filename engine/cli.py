"""doinfer's command line: parse arguments, call the engine, print. No logic lives here."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from engine import __version__
from engine.console import LoadProgress, Progress
from engine.envs import spec_file
from engine.errors import DoinferError
from engine.graph.plan import Plan, plan_hash
from engine.graph.render import (
    RENDERERS,
    render_json,
    render_json_plans,
    render_markdown_plans,
    render_refresh,
    render_text,
    summary_line,
)
from engine.graph.step import Action
from engine.operations import (
    ApplyResult,
    Workspace,
    check_plan_hash,
    execute,
    is_saved_plan,
    load_saved_plan,
    plans_for,
    saved_plan_target,
)
from engine.spec import SpecError, load_spec
from engine.state import StateError, StateStore, default_state_dir

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_SLO, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except SpecError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        count = len(exc.diagnostics)
        print(f"{count} error{'s' * (count != 1)}", file=sys.stderr)
        return EXIT_ERROR
    except (DoinferError, StateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


SPEC_HELP = "the spec file (YAML), or an app directory (specs/<app>) with --env"


def _env_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--env",
        metavar="ENV",
        help="the environment: loads <app>/envs/ENV.yaml for an app directory, and names "
        "the state's environment",
    )


def _targeting_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="STEP",
        help="only this step and the steps it needs (e.g. deploy/qa); repeatable",
    )
    p.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="STEP",
        help="replace this step although nothing changed (e.g. deploy/qa); repeatable",
    )


def _lock_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lock-timeout",
        type=_duration,
        default=0.0,
        metavar="DURATION",
        help="wait this long for another doinfer's state lock (30s, 5m; default: fail at once)",
    )


def _duration(text: str) -> float:
    """`30`, `30s`, `5m` or `1h` as seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 5m)") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"a duration cannot be negative: {text!r}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="doinfer",
        description="Compile a declarative spec into running, benchmarked inference servers.",
    )
    parser.add_argument("--version", action="version", version=f"doinfer {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where state, caches and logs live (default: $DOINFER_STATE_DIR or ./.doinfer)",
    )
    common.add_argument("--no-color", action="store_true", help="never colour the output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help_text: str,
        spec_help: str = SPEC_HELP,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.add_argument("spec", type=Path, help=spec_help)
        _env_option(p)
        p.set_defaults(handler=handler)
        return p

    command("validate", cmd_validate, "check a spec: schema and semantics, errors as FILE:LINE:COL")

    p = command("plan", cmd_plan, "show what apply would change, and why")
    p.add_argument("--format", choices=sorted(RENDERERS), default="text")
    p.add_argument("--out", type=Path, help="save the plan to apply it exactly later")
    p.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when nothing changes, 2 when something does, 1 on error",
    )
    p.add_argument("--all", action="store_true", help="list unchanged steps too")
    p.add_argument(
        "--base-ref",
        metavar="REF",
        help="plan the change from the spec at git revision REF to the working tree: what a "
        "pull request changes (no state, no runtime)",
    )
    p.add_argument(
        "--all-envs",
        action="store_true",
        help="plan every environment of an app directory (with --base-ref: those a change "
        "touches are shown in full)",
    )
    _targeting_options(p)
    p.add_argument(
        "--refresh-only",
        action="store_true",
        help="show what runs now against what the state records, and nothing else",
    )

    p = command(
        "apply",
        cmd_apply,
        "make the deployment match the spec (or a saved plan)",
        "a spec file (or app directory with --env), or a plan saved with plan --out",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--parallel", type=int, default=4, help="steps applied at once (default 4)")
    p.add_argument("--verbose", "-v", action="store_true", help="show every step's log lines")
    _targeting_options(p)
    p.add_argument(
        "--refresh-only",
        action="store_true",
        help="record in the state what runs now (drift included), changing nothing that runs",
    )
    p.add_argument(
        "--plan-hash",
        metavar="HASH",
        help="apply only if the plan is the one reviewed (the hash plan --base-ref printed)",
    )
    _lock_option(p)

    p = command("destroy", cmd_destroy, "remove everything the spec created")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    _lock_option(p)

    p = command("status", cmd_status, "list every server replica, its URL and its state")
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = command("logs", cmd_logs, "show a server replica's log")
    p.add_argument("server", help="server name")
    p.add_argument("--replica", type=int, default=0, help="replica index (default 0)")
    p.add_argument("--tail", type=int, default=100, help="lines from the end (default 100)")

    p = command("exec", cmd_exec, "run a command in a server replica (a shell by default)")
    p.add_argument("server", help="server name")
    p.add_argument("--replica", type=int, default=0, help="replica index (default 0)")
    p.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="what to run (default sh)"
    )

    help_text = "run the spec's scenarios against what is deployed; gate on their SLOs"
    p = sub.add_parser(
        "bench",
        parents=[common],
        help=help_text,
        description=f"{help_text}. Exit status: 0 every objective met, {EXIT_SLO} an SLO "
        f"missed (or errors where none are accepted), {EXIT_ERROR} could not run.",
    )
    p.set_defaults(handler=cmd_bench)
    p.add_argument("spec", type=Path, nargs="?", help=SPEC_HELP)
    _env_option(p)
    p.add_argument("scenarios", nargs="*", help="scenario names (default: all)")
    p.add_argument(
        "--json", type=Path, help="write every result, raw samples included, as JSON here"
    )
    p.add_argument("--report", type=Path, help="write the HTML report here")
    p.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A.json", "B.json"),
        help="show what changed between two runs' --json files (no spec needed)",
    )
    return parser


# -- commands ---------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    path = spec_file(args.spec, args.env)
    spec = load_spec(path, args.env)
    instances = sum(m.instances * s.replicas for s in spec.servers for m in s.models)
    print(
        f"{path}: valid ({len(spec.models)} models, {len(spec.servers)} servers, "
        f"{instances} model instances, runtime {spec.runtime.kind})"
    )
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    if args.refresh_only:
        if args.base_ref or args.all_envs or args.target or args.replace or args.out:
            raise DoinferError("--refresh-only takes no --base-ref, --all-envs, --target, ...")
        refresh = Workspace.open(args.spec, state_dir, args.env).refresh()
        print(render_refresh(refresh))
        return EXIT_CHANGES if args.detailed_exitcode and refresh.drifted else EXIT_OK
    plans = plans_for(
        args.spec,
        args.env,
        state_dir,
        base_ref=args.base_ref,
        all_envs=args.all_envs,
        replace=args.replace,
        targets=args.target,
    )
    if args.format == "text":
        print("\n\n".join(render_text(p, colour=_colour(args), show_noop=args.all) for p in plans))
        if args.base_ref:  # what apply --plan-hash checks once the change is merged
            print("\n".join(f"Plan hash of {p.environment}: {plan_hash(p)}" for p in plans))
    elif args.format == "markdown":
        print(render_markdown_plans(plans))
    else:
        print(render_json(plans[0]) if len(plans) == 1 else render_json_plans(plans))
    if args.out:
        if len(plans) != 1 or args.base_ref:
            raise DoinferError(
                "--out saves the plan of one environment against its state: no --all-envs, "
                "no --base-ref"
            )
        args.out.write_text(json.dumps(plans[0].to_dict(), indent=1))
        print(
            f"\nSaved the plan to {args.out}; apply it with: doinfer apply {args.out}",
            file=sys.stderr,
        )
    if args.detailed_exitcode and any(p.has_changes for p in plans):
        return EXIT_CHANGES
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    if is_saved_plan(args.spec):
        if args.target or args.replace or args.refresh_only or args.plan_hash:
            raise DoinferError(
                "a saved plan is applied exactly as it was made: give --target, --replace, "
                "--refresh-only and --plan-hash to plan (or apply a spec)"
            )
        plan = load_saved_plan(args.spec)
        if args.env and args.env != plan.environment:
            raise DoinferError(
                f"{args.spec} is a plan of environment {plan.environment!r}, not {args.env!r}"
            )
        store, ctx = saved_plan_target(plan, state_dir)
        with store.lock(args.lock_timeout):
            print(render_text(plan, colour=_colour(args)))
            if not plan.has_changes:
                return EXIT_OK
            return _run(
                plan,
                lambda on_event: execute(plan, store, ctx, on_event, args.parallel),
                args,
                state_dir,
            )
    workspace = Workspace.open(args.spec, state_dir, args.env)
    with workspace.locked(args.lock_timeout):
        if args.refresh_only:
            refresh = workspace.refresh()
            print(render_refresh(refresh))
            where = f"{refresh.spec}/{refresh.environment}"
            if not _confirm(args, f"Record this in the state of {where}?"):
                return EXIT_ERROR
            workspace.record_refresh(refresh)
            print(f"Recorded what runs now in the state of {where}; nothing that runs changed.")
            return EXIT_OK
        plan = workspace.plan(args.replace, args.target)
        print(render_text(plan, colour=_colour(args)))
        if args.plan_hash:
            check_plan_hash(plan, args.plan_hash)
        if not plan.has_changes:
            return EXIT_OK
        if not _confirm(args, f"Apply these changes to {plan.spec}/{plan.environment}?"):
            return EXIT_ERROR
        return _run(
            plan, lambda on_event: workspace.apply(plan, on_event, args.parallel), args, state_dir
        )


def cmd_destroy(args: argparse.Namespace) -> int:
    workspace = Workspace.open(args.spec, _state_dir(args), args.env)
    with workspace.locked(args.lock_timeout):
        plan = workspace.destroy_plan()
        if not plan.changes:
            workspace.sweep(print)
            print(f"Nothing to destroy: {plan.spec}/{plan.environment} has no recorded steps.")
            return EXIT_OK
        print(render_text(plan, colour=_colour(args)))
        if not _confirm(args, f"Destroy everything {plan.spec}/{plan.environment} created?"):
            return EXIT_ERROR
        code = _run(
            plan, lambda on_event: workspace.apply(plan, on_event), args, workspace.state_dir
        )
        if code == EXIT_OK:
            workspace.sweep(print)
        return code


def cmd_status(args: argparse.Namespace) -> int:
    workspace = Workspace.open(args.spec, _state_dir(args), args.env)
    replicas = workspace.replicas()
    traces = workspace.traces()
    if args.format == "json":
        print(
            json.dumps(
                {
                    "spec": workspace.spec.name,
                    "environment": workspace.spec.environment,
                    "runtime": workspace.spec.runtime.kind,
                    "replicas": [r.to_dict() for r in replicas],
                    "models": traces,
                },
                indent=2,
            )
        )
        return EXIT_OK
    if not replicas:
        print(f"{workspace.spec.name}/{workspace.spec.environment}: nothing deployed")
        return EXIT_OK
    rows = [("SERVER", "REPLICA", "STATE", "URL", "DETAIL")]
    rows += [(r.server, str(r.index), r.state, r.url or "-", r.detail) for r in replicas]
    print(_table(rows))
    if traces:
        rows = [("MODEL", "PROCESSOR", "PRECISION", "ACCURACY")]
        rows += [(t["model"], t["processor"], t["precision"], t["accuracy"]) for t in traces]
        print()
        print(_table(rows))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    workspace = Workspace.open(args.spec, _state_dir(args), args.env)
    text = workspace.logs(args.server, args.replica, args.tail)
    if not text:
        print(f"no log for replica {args.replica} of {args.server}", file=sys.stderr)
        return EXIT_ERROR
    print(text)
    return EXIT_OK


def cmd_exec(args: argparse.Namespace) -> int:
    workspace = Workspace.open(args.spec, _state_dir(args), args.env)
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    return workspace.exec(args.server, args.replica, command or ["sh"], tty)


def cmd_bench(args: argparse.Namespace) -> int:
    from engine.bench.html import render_html
    from engine.bench.report import render_details, render_table, render_verdicts
    from engine.bench.results import BenchRun

    if args.compare:
        if args.spec or args.scenarios:
            raise DoinferError("bench --compare takes two result files and no spec")
        from engine.bench.report import render_compare

        a, b = (BenchRun.load(path) for path in args.compare)
        print(render_compare(a, b, str(args.compare[0]), str(args.compare[1])))
        return EXIT_OK
    if args.spec is None:
        raise DoinferError("bench needs a spec (or --compare A.json B.json)")
    workspace = Workspace.open(args.spec, _state_dir(args), args.env)
    with LoadProgress() as progress:
        run = workspace.bench(args.scenarios, progress)
    default_json, default_report = workspace.bench_files(run.started_at)
    json_path, report_path = args.json or default_json, args.report or default_report
    run.write(json_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(render_html(run))
    for block in (
        render_table(run.results),
        render_details(run.results),
        render_verdicts(run.results),
    ):
        if block:
            print(block + "\n")
    print(f"results: {json_path}")
    print(f"report: {report_path}")
    return EXIT_OK if all(r.ok for r in run.results) else EXIT_SLO


# -- helpers ----------------------------------------------------------------------------


def _run(
    plan: Plan, apply: Callable[..., ApplyResult], args: argparse.Namespace, state_dir: Path
) -> int:
    started = time.monotonic()
    with Progress(verbose=getattr(args, "verbose", False)) as progress:
        result = apply(progress)
    _print_scenario_results(plan, state_dir, result)
    counts = {
        status: sum(o.status == status for o in result.outcomes)
        for status in ("ok", "failed", "skipped", "cancelled")
    }
    took = time.monotonic() - started
    if result.cancelled:
        print(
            f"\nInterrupted after {took:.1f}s: {counts['ok']} step(s) completed and recorded. "
            f"Run apply again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if not result.ok:
        print(
            f"\nApply failed after {took:.1f}s: {counts['failed']} failed, {counts['skipped']} "
            f"skipped, {counts['ok']} completed and recorded.",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print(f"\nApply complete in {took:.1f}s: {summary_line(plan).removeprefix('Plan: ')}")
    return EXIT_OK


def _print_scenario_results(plan: Plan, state_dir: Path, result: ApplyResult) -> None:
    from engine.bench.report import render_table
    from engine.steps.scenario import load_result

    ran = {o.step_id for o in result.outcomes if o.status == "ok"}
    scenario_ids = [
        c.step_id
        for c in plan.changes
        if c.kind == "scenario" and c.action is not Action.DELETE and c.step_id in ran
    ]
    if not scenario_ids:
        return
    state = StateStore(state_dir, plan.spec, plan.environment).load()
    results = [load_result(state.steps[i]["outputs"]["result_file"]) for i in scenario_ids]
    print()
    print(render_table(results))


def _confirm(args: argparse.Namespace, question: str) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise DoinferError(
            "confirmation needed but standard input is not a terminal: pass --yes to proceed"
        )
    answer = input(f"\n{question} Only 'yes' proceeds: ")
    if answer.strip().lower() != "yes":
        print("Cancelled; nothing was changed.")
        return False
    return True


def _state_dir(args: argparse.Namespace) -> Path:
    """Absolute, so recorded paths (bundles, pid files, logs) hold from any directory."""
    return (args.state_dir or default_state_dir()).absolute()


def _colour(args: argparse.Namespace) -> bool:
    """Colour on a terminal, unless --no-color or NO_COLOR (https://no-color.org) says not."""
    return sys.stdout.isatty() and not args.no_color and not os.environ.get("NO_COLOR")


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


if __name__ == "__main__":
    sys.exit(main())
