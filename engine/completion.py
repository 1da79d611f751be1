"""Shell completion (bash, zsh, fish) through argcomplete.

The shell calls doinfer itself with the words typed so far; doinfer answers before doing
anything else. Spec files complete from the file system; scenario names, server names and
step ids from the spec typed earlier on the line (`doinfer bench specs/local.yaml <TAB>`).
A spec that does not load completes to nothing: completion never prints an error.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import argcomplete
from argcomplete.completers import FilesCompleter

SHELLS = ("bash", "zsh", "fish")
SPEC_FILES = FilesCompleter(("yaml", "yml", "json"))

Completer = Callable[..., list[str]]


def script(shell: str, prog: str = "doinfer") -> str:
    """The script that makes `shell` complete `prog`'s command lines."""
    return argcomplete.shellcode([prog], shell=shell)


def scenario_names(parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    spec = _spec(parsed_args)
    return [s.name for s in spec.scenarios] if spec else []


def server_names(parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    spec = _spec(parsed_args)
    return [s.name for s in spec.servers] if spec else []


def step_ids(parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The spec's steps, as the plan names them (without asking the runtime what runs)."""
    from engine.graph.build import build_steps
    from engine.state import default_state_dir

    spec = _spec(parsed_args)
    if spec is None:
        return []
    state_dir = getattr(parsed_args, "state_dir", None) or default_state_dir()
    try:
        return [step.id for step in build_steps(spec, Path(state_dir) / "cache")]
    except Exception:  # completion must never fail loudly
        return []


# What completes each argument, by its dest; an argument absent from a command is skipped.
COMPLETERS: dict[str, Completer] = {
    "spec": SPEC_FILES,
    "scenarios": scenario_names,
    "server": server_names,
    "target": step_ids,
    "replace": step_ids,
}


def enable(parser: argparse.ArgumentParser) -> None:
    """Attach the completers to every (sub)command's arguments, then answer the shell if
    this process was started by it (argcomplete exits then); otherwise return at once."""
    for action in _all_actions(parser):
        completer = COMPLETERS.get(action.dest)
        if completer is not None:
            action.completer = completer  # type: ignore[attr-defined]
    argcomplete.autocomplete(parser, always_complete_options=False)  # options after "-"


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions += _all_actions(sub)
    return actions


def _spec(parsed_args: argparse.Namespace) -> Any:
    from engine.spec import load_spec

    path = getattr(parsed_args, "spec", None)
    if path is None:
        return None
    try:
        return load_spec(path)
    except Exception:  # a spec being written: nothing to offer yet
        return None
