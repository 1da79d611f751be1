"""doinfer's command line: parse arguments, call the engine, print. No logic lives here."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from engine import completion, doctor
from engine.console import LoadProgress, Progress, colours, make_console
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
from engine.runtimes.base import RuntimeOptions
from engine.spec import Diagnostic, SpecError, load_spec
from engine.state import StateError, StateStore, default_state_dir

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_SLO, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell shows for a tool its reader left

EPILOG = f"""\
exit status:
  {EXIT_OK}    success (bench: every objective met)
  {EXIT_ERROR}    error: bad spec, unreachable runtime, a failed step, a refused confirmation
  {EXIT_CHANGES}    plan --detailed-exitcode: the plan has changes
  {EXIT_SLO}    bench: an SLO was missed (or errors where none are accepted)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); the next apply resumes

streams:
  results (plans, tables, status, versions, doctor) go to stdout; progress, logs, prompts
  and errors to stderr, so `doinfer plan --format json SPEC > plan.json` holds the plan only.
  Colour and live progress only on a terminal; NO_COLOR or --no-color never colour,
  FORCE_COLOR colours through a pipe, TERM=dumb prints plain lines.

shell completion:
  eval "$(doinfer completion bash)"   (or zsh; fish: doinfer completion fish | source)
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    completion.enable(parser)  # answers the shell's completion request, if this is one
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
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
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction, nargs=0, help="print versions and exit")
    commands = _Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    _add_offline_commands(commands)
    _add_plan_command(commands)
    _add_change_commands(commands)
    _add_replica_commands(commands)
    _add_state_command(commands)
    _add_bench_command(commands)
    _add_machine_commands(commands.sub)
    return parser


class _Commands:
    """The subcommands, and the options they share: every spec command takes --state-dir
    and --no-color; those that may reach the runtime take --context too."""

    def __init__(self, sub: argparse._SubParsersAction) -> None:
        self.sub = sub
        self.common = argparse.ArgumentParser(add_help=False)
        self.common.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help="where state, caches and logs live (default: $DOINFER_STATE_DIR or ./.doinfer)",
        )
        self.common.add_argument("--no-color", action="store_true", help="never colour the output")
        self.reach = argparse.ArgumentParser(add_help=False)
        self.reach.add_argument(
            "--context",
            help="kubeconfig context to use (kubernetes; overrides runtime.context)",
        )

    def add(
        self,
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help_text: str,
        spec_help: str | None = SPEC_HELP,
        reaches: bool = True,
        description: str | None = None,
    ) -> argparse.ArgumentParser:
        """A subcommand with the shared options and, unless `spec_help` is None, the
        spec it works on (a file, or an app directory with --env)."""
        parents = [self.common, self.reach] if reaches else [self.common]
        p = self.sub.add_parser(
            name, parents=parents, help=help_text, description=description or help_text
        )
        p.set_defaults(handler=handler)
        if spec_help is not None:
            p.add_argument("spec", type=Path, help=spec_help)
            _env_option(p)
        return p


def _add_offline_commands(commands: _Commands) -> None:
    """Commands that read the spec alone and never reach the runtime."""
    commands.add(
        "validate",
        cmd_validate,
        "check a spec: schema and semantics, errors as FILE:LINE:COL",
        reaches=False,
    )
    p = commands.add(
        "render",
        cmd_render,
        "write the Kubernetes objects of a spec as YAML (for GitOps), without a cluster",
        reaches=False,
    )
    p.add_argument(
        "--out", type=Path, help="write one file per object into this directory (default: stdout)"
    )


def _add_plan_command(commands: _Commands) -> None:
    p = commands.add("plan", cmd_plan, "show what apply would change, and why")
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
    p.add_argument(
        "--no-refresh",
        action="store_true",
        help="plan from the recorded state alone, without asking the runtime what runs "
        "(no cluster or Docker engine needed; drift is not seen)",
    )


def _add_change_commands(commands: _Commands) -> None:
    """apply, profile and destroy: the commands that change what runs or is measured."""
    p = commands.add(
        "apply",
        cmd_apply,
        "make the deployment match the spec (or a saved plan)",
        "a spec file (or app directory with --env), or a plan saved with plan --out",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--parallel", type=_at_least_one, default=4, help="steps applied at once (default 4)"
    )
    p.add_argument("--verbose", "-v", action="store_true", help="show every step's log lines")
    p.add_argument(
        "--force-conflicts",
        action="store_true",
        help="take over fields another field manager set (kubernetes server-side apply)",
    )
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

    p = commands.add(
        "profile",
        cmd_profile,
        "measure the profiles a spec's fleets do not declare (memory of one copy, rate per "
        "core within the SLO) on this machine, and change nothing else",
    )
    p.add_argument(
        "--parallel", type=_at_least_one, default=4, help="traces run at once (default 4)"
    )
    p.add_argument("--verbose", "-v", action="store_true", help="show every step's log lines")
    _lock_option(p)

    p = commands.add("destroy", cmd_destroy, "remove everything the spec created")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    _lock_option(p)


def _add_replica_commands(commands: _Commands) -> None:
    """status, logs and exec: what the replicas of a deployed spec do."""
    p = commands.add("status", cmd_status, "list every server replica, its URL and its state")
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = commands.add("logs", cmd_logs, "show a server replica's log")
    p.add_argument("server", help="server name")
    p.add_argument("--replica", type=int, default=0, help="replica index (default 0)")
    p.add_argument("--tail", type=int, default=100, help="lines from the end (default 100)")

    p = commands.add("exec", cmd_exec, "run a command in a server replica (a shell by default)")
    p.add_argument("server", help="server name")
    p.add_argument("--replica", type=int, default=0, help="replica index (default 0)")
    p.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="what to run (default sh)"
    )


def _add_state_command(commands: _Commands) -> None:
    p = commands.add(
        "state",
        cmd_state,
        "list, show or remove the steps recorded in a spec's state",
        spec_help=None,
        reaches=False,
    )
    p.add_argument(
        "action",
        choices=["list", "show", "rm"],
        help="list every record; show a record as JSON; rm records (the next apply redoes "
        "their steps)",
    )
    p.add_argument("spec", type=Path, help="the spec file (YAML)")
    p.add_argument("steps", nargs="*", metavar="STEP", help="step ids, e.g. deploy/web")


def _add_bench_command(commands: _Commands) -> None:
    help_text = "run the spec's scenarios against what is deployed; gate on their SLOs"
    p = commands.add(
        "bench",
        cmd_bench,
        help_text,
        spec_help=None,
        description=f"{help_text}. Exit status: 0 every objective met, {EXIT_SLO} an SLO "
        f"missed (or errors where none are accepted), {EXIT_ERROR} could not run.",
    )
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


def _add_machine_commands(sub: argparse._SubParsersAction) -> None:
    """Commands about this machine and shell rather than a spec."""
    help_text = "say what this machine can run: Docker, kube context, SSH agent, accelerators"
    p = sub.add_parser("doctor", help=help_text, description=help_text)
    p.add_argument("--contact", action="store_true", help="also try to reach the kube API server")
    p.set_defaults(handler=cmd_doctor)
    help_text = 'print a shell completion script: eval "$(doinfer completion bash)"'
    p = sub.add_parser("completion", help=help_text, description=help_text)
    p.add_argument("shell", choices=completion.SHELLS)
    p.set_defaults(handler=cmd_completion)


class VersionAction(argparse.Action):
    """--version: doinfer's version and those of the libraries that shape a trace."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(" ".join(f"{name} {version}" for name, version in doctor.versions().items()))
        parser.exit()


# -- commands ---------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    path = spec_file(args.spec, args.env)
    spec = load_spec(path, args.env)
    _warn(spec.warnings)
    instances = sum(m.instances * s.replicas for s in spec.servers for m in s.models)
    print(
        f"{path}: valid ({len(spec.models)} models, {len(spec.servers)} servers, "
        f"{instances} model instances, runtime {spec.runtime.kind})"
    )
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from engine.yaml_out import file_name, to_yaml

    objects = _workspace(args).render()
    if args.out is None:
        print(to_yaml(objects), end="")
        return EXIT_OK
    args.out.mkdir(parents=True, exist_ok=True)
    for obj in objects:
        (args.out / file_name(obj)).write_text(to_yaml([obj]))
    print(f"wrote {len(objects)} objects to {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    if args.out and (args.base_ref or args.all_envs):  # before the work, not after it
        raise DoinferError(
            "--out saves the plan of one environment against its state: no --all-envs, "
            "no --base-ref"
        )
    if args.refresh_only:
        _refuse_with_refresh_only(args, "base_ref", "all_envs", "target", "replace", "out")
        if args.no_refresh:
            raise DoinferError("--refresh-only and --no-refresh contradict each other")
        refresh = _workspace(args).refresh()
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
        refresh=not args.no_refresh,
        options=_runtime_options(args),
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
        how = f"apply it with: doinfer apply {args.out}"
        if plans[0].waiting_fleets():  # no packing in it yet: apply refuses it
            how = f"measure first (doinfer profile {args.spec}) and plan again to apply one"
        print(f"\nSaved the plan to {args.out}; {how}", file=sys.stderr)
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
        if plan.waiting_fleets():
            raise DoinferError(
                f"{args.spec} was planned before the profiles of "
                f"{', '.join(plan.waiting_fleets())} were measured, so it holds no packing: "
                f"run doinfer profile (or apply) on the spec, then plan it again"
            )
        store, ctx = saved_plan_target(plan, state_dir, _runtime_options(args))
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
    workspace = _workspace(args)
    _warn(workspace.spec.warnings)
    with workspace.locked(args.lock_timeout):
        if args.refresh_only:
            _refuse_with_refresh_only(args, "target", "replace", "plan_hash")
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
        where = f"{plan.spec}/{plan.environment}"
        if plan.waiting_fleets():  # measure first, then show the plan the profiles make
            question = (
                f"Measure {len(plan.profile_steps())} profile(s) on this machine, then plan "
                f"{', '.join(plan.waiting_fleets())} again?"
            )
            if not _confirm(args, question):
                return EXIT_ERROR
            code = _run(
                plan,
                lambda on_event: workspace.measure_profiles(on_event, args.parallel),
                args,
                state_dir,
                done="Profiles measured",
            )
            if code != EXIT_OK:
                return code
            plan = workspace.plan(args.replace, args.target)
            print(f"\nThe plan with the measured profiles:\n\n{render_text(plan, _colour(args))}")
            if not plan.has_changes:
                return EXIT_OK
        if not _confirm(args, f"Apply these changes to {where}?"):
            return EXIT_ERROR
        return _run(
            plan, lambda on_event: workspace.apply(plan, on_event, args.parallel), args, state_dir
        )


def _refuse_with_refresh_only(args: argparse.Namespace, *options: str) -> None:
    """--refresh-only changes nothing but the record: options about changes make no sense."""
    given = [f"--{o.replace('_', '-')}" for o in options if getattr(args, o)]
    if given:
        raise DoinferError(f"--refresh-only records what runs: it takes no {', '.join(given)}")


def cmd_profile(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    _warn(workspace.spec.warnings)
    with workspace.locked(args.lock_timeout):
        profiles = workspace.plan().profile_steps()
        if profiles:
            plan = workspace.plan(targets=profiles)  # the profiles and the traces they need
            print(render_text(plan, colour=_colour(args)))
            code = _run(
                plan,
                lambda on_event: workspace.measure_profiles(on_event, args.parallel),
                args,
                workspace.state_dir,
                done="Profiles measured",
            )
            if code != EXIT_OK:
                return code
    measured = workspace.profiles()
    if not measured:
        print(f"{workspace.spec.name}: every profile its fleets need is declared")
        return EXIT_OK
    print(_table([("STEP", "PROFILE")] + [(i, p.describe()) for i, p in measured]))
    return EXIT_OK


def cmd_destroy(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
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
    workspace = _workspace(args)
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
    workspace = _workspace(args)
    text = workspace.logs(args.server, args.replica, args.tail)
    if not text:
        print(f"no log for replica {args.replica} of {args.server}", file=sys.stderr)
        return EXIT_ERROR
    print(text)
    return EXIT_OK


def cmd_exec(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    return workspace.exec(args.server, args.replica, command or ["sh"], tty)


def cmd_state(args: argparse.Namespace) -> int:
    workspace = Workspace.open(args.spec, _state_dir(args))
    if args.action == "rm":
        if not args.steps:
            raise DoinferError("state rm needs the steps to forget, e.g. deploy/web")
        with workspace.locked():
            workspace.forget(args.steps)
        print(f"Removed {', '.join(args.steps)}; the next apply redoes them.")
        return EXIT_OK
    records, problems = workspace.records()
    if args.action == "show":
        missing = [s for s in args.steps if s not in records]
        if not args.steps or missing:
            raise DoinferError(
                f"state show needs recorded steps (recorded: {', '.join(records) or 'none'})"
            )
        print(json.dumps({s: records[s] for s in args.steps}, indent=2, sort_keys=True))
        return EXIT_OK
    if not records:
        print(f"{workspace.spec.name}/{workspace.spec.environment}: nothing recorded")
        return EXIT_OK
    rows = [("STEP", "KIND", "APPLIED", "PROBLEM")]
    for step_id, record in sorted(records.items()):
        applied = record.get("applied_at")
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(applied))
            if isinstance(applied, int | float)
            else "-"
        )
        rows.append((step_id, str(record.get("kind", "?")), when, problems.get(step_id, "")))
    print(_table(rows))
    return EXIT_OK


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
    workspace = _workspace(args)
    with LoadProgress(make_console(sys.stderr, args.no_color)) as progress:
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


def cmd_doctor(args: argparse.Namespace) -> int:
    from engine.runtimes.doctor import runtime_checks

    print(" ".join(f"{name} {version}" for name, version in doctor.versions().items()))
    checks = doctor.machine_checks() + runtime_checks(args.contact)
    print(
        _table(
            [("CHECK", "FOUND", "DETAIL")]
            + [(c.name, "yes" if c.ok else "no", c.detail) for c in checks]
        )
    )
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    print(completion.script(args.shell))
    return EXIT_OK


# -- helpers ----------------------------------------------------------------------------


def _run(
    plan: Plan,
    apply: Callable[..., ApplyResult],
    args: argparse.Namespace,
    state_dir: Path,
    done: str | None = None,  # what a finished run did, if not the whole plan
) -> int:
    started = time.monotonic()
    console = make_console(sys.stderr, args.no_color)
    with Progress(console, verbose=getattr(args, "verbose", False)) as progress:
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
    if done:
        print(f"\n{done} in {took:.1f}s.")
    else:
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


def _warn(warnings: Sequence[Diagnostic]) -> None:
    for warning in warnings:
        print(warning, file=sys.stderr)


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


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _stdout_closed() -> int:
    """The reader of our output went away (`doinfer plan | head`): stop quietly, as Unix
    tools do, and keep Python from complaining when it flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _workspace(args: argparse.Namespace) -> Workspace:
    return Workspace.open(args.spec, _state_dir(args), args.env, _runtime_options(args))


def _runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    """The command line's say in how the runtime is reached (flags some commands lack)."""
    return RuntimeOptions(
        context=getattr(args, "context", None),
        force_conflicts=getattr(args, "force_conflicts", False),
    )


def _state_dir(args: argparse.Namespace) -> Path:
    """Absolute, so recorded paths (bundles, pid files, logs) hold from any directory."""
    return (args.state_dir or default_state_dir()).absolute()


def _colour(args: argparse.Namespace) -> bool:
    """Whether stdout is coloured: the console decides (--no-color, NO_COLOR, FORCE_COLOR,
    TERM, a terminal or not)."""
    return colours(make_console(sys.stdout, args.no_color))


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


if __name__ == "__main__":
    sys.exit(main())
