"""The completers behind `doinfer completion SHELL` (the shells themselves: integration)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine import completion
from engine.cli import build_parser

SPEC = Path(__file__).resolve().parents[2] / "specs" / "local.yaml"


def test_spec_names_complete_from_the_spec() -> None:
    args = argparse.Namespace(spec=SPEC)
    assert completion.scenario_names(args) == ["smoke", "random", "load"]
    assert completion.server_names(args) == ["minilm"]


def test_step_ids_are_the_plans_without_asking_the_runtime(tmp_path: Path) -> None:
    args = argparse.Namespace(spec=SPEC, state_dir=tmp_path)
    assert completion.step_ids(args) == [
        "trace/minilm@cpu",
        "pack/minilm",
        "deploy/minilm",
        "scenario/smoke",
        "scenario/random",
        "scenario/load",
    ]
    assert not (tmp_path / "state").exists()


def test_no_spec_or_a_bad_one_completes_to_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n")
    for args in (argparse.Namespace(), argparse.Namespace(spec=bad, state_dir=tmp_path)):
        assert completion.scenario_names(args) == []
        assert completion.step_ids(args) == []


def test_every_spec_argument_gets_a_completer() -> None:
    parser = build_parser()
    completion.enable(parser)  # not started by a shell: returns at once
    specs = [a for a in completion._all_actions(parser) if a.dest == "spec"]
    assert len(specs) >= 8
    assert all(getattr(a, "completer", None) is completion.SPEC_FILES for a in specs)
