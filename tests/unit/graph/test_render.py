from __future__ import annotations

import json
import re
from pathlib import Path

from engine.graph.build import build_steps
from engine.graph.plan import Change, Cost, Plan, plan_hash
from engine.graph.render import (
    COMMENT_LIMIT,
    MARKER,
    render_json,
    render_json_plans,
    render_markdown,
    render_markdown_plans,
    render_text,
)
from engine.graph.step import Action
from engine.state import State

from .test_plan import applied_state, plan_of


def sample_plan(make_spec, tmp_path: Path):
    before = build_steps(make_spec(replicas=2), tmp_path / "cache")
    after = build_steps(make_spec(replicas=3), tmp_path / "cache")
    state = applied_state(before)
    state.steps["deploy/old"] = {
        "kind": "deploy",
        "fingerprint": "f",
        "needs": [],
        "summary": "deploy old: 1 replica(s) on local",
    }
    return plan_of(after, state, environment="prod")


def test_text_lists_changes_with_reasons(make_spec, tmp_path: Path) -> None:
    text = render_text(sample_plan(make_spec, tmp_path))
    lines = text.splitlines()
    assert lines[0] == "demo (environment prod, runtime local)"
    assert any(line.startswith("  ~ deploy/tiny") and "update" in line for line in lines)
    assert "        replicas: 2 -> 3" in lines
    assert any(line.startswith("  - deploy/old") and "delete" in line for line in lines)
    assert any(line.startswith("-/+ scenario/smoke") for line in lines)
    assert "trace/tiny@cpu" not in text  # unchanged steps are hidden by default
    assert lines[-1] == "Plan: 0 to create, 1 to update, 1 to replace, 1 to delete, 2 unchanged."
    assert "\033[" not in text


def test_text_colour_only_when_asked(make_spec, tmp_path: Path) -> None:
    plan = sample_plan(make_spec, tmp_path)
    assert "\033[33m" in render_text(plan, colour=True)
    assert "trace/tiny@cpu" in render_text(plan, show_noop=True)


def test_no_changes_message(make_spec, tmp_path: Path) -> None:
    steps = build_steps(make_spec(), tmp_path / "cache")
    plan = plan_of(steps, applied_state(steps))
    assert render_text(plan).splitlines()[-1] == (
        "No changes. demo/default matches the spec (4 steps)."
    )


def test_markdown_is_a_table_for_pull_requests(make_spec, tmp_path: Path) -> None:
    text = render_markdown(sample_plan(make_spec, tmp_path))
    assert text.startswith("### doinfer plan: `demo` (prod, local)")
    assert "| | step | action | why |" in text
    assert (
        "| `~` | `deploy/tiny` | update | deploy tiny: 3 replica(s) on local<br>replicas: 2 -> 3 |"
        in text
    )
    assert "<details><summary>Unchanged steps (2)</summary>" in text
    assert "- `trace/tiny@cpu`" in text


def test_json_is_machine_readable(make_spec, tmp_path: Path) -> None:
    data = json.loads(render_json(sample_plan(make_spec, tmp_path)))
    assert data["has_changes"] is True
    assert data["counts"] == {"create": 0, "update": 1, "replace": 1, "delete": 1, "no-op": 2}
    deploy = next(c for c in data["changes"] if c["step"] == "deploy/tiny")
    assert deploy["action"] == "update"
    assert deploy["reasons"] == ["replicas: 2 -> 3"]


def test_json_holds_the_plan_whole_with_one_line_per_change(make_spec, tmp_path: Path) -> None:
    """The JSON is written by hand around json's C encoder (fast for thousands of
    changes): it must still be exactly the plan's JSON form, alone or with others."""
    plan = sample_plan(make_spec, tmp_path)
    expected = plan.to_dict()
    del expected["document"], expected["steps"]
    text = render_json(plan)
    assert json.loads(text) == json.loads(json.dumps(expected))
    change_lines = [line for line in text.splitlines() if line.startswith('    {"step": ')]
    assert len(change_lines) == len(expected["changes"])
    both = json.loads(render_json_plans([plan, plan]))
    assert both == {"plans": [json.loads(text), json.loads(text)]}
    assert json.loads(render_json_plans([])) == {"plans": []}


def test_empty_state_renders_creates(make_spec, tmp_path: Path) -> None:
    steps = build_steps(make_spec(), tmp_path / "cache")
    plan = plan_of(steps, State("demo", "default"))
    assert "Plan: 4 to create" in render_text(plan)


def test_a_long_markdown_plan_is_cut_to_fit_and_says_so(make_spec, tmp_path: Path) -> None:
    plan = sample_plan(make_spec, tmp_path)
    extra = [
        Change(
            f"deploy/s{i:04}", "deploy", Action.CREATE, (), f"deploy s{i}: 1 replica(s)", "f", None
        )
        for i in range(2000)
    ]
    plan.changes = [*plan.changes, *extra]
    full = render_markdown(plan, limit=10**9)
    assert len(full) > COMMENT_LIMIT
    text = render_markdown(plan)
    assert len(text) <= COMMENT_LIMIT
    assert "cut to fit one comment (65,536 characters)" in text
    assert re.search(r"_… \d+ more steps cut to fit", text)
    assert text.rstrip().endswith(MARKER)  # the marker a CI job finds the comment by survives
    assert f"Plan hash: `{plan_hash(plan)}`" in text


def test_cost_per_hour_shows_only_when_the_fleet_is_priced(make_spec, tmp_path: Path) -> None:
    plan = sample_plan(make_spec, tmp_path)
    assert "Cost per hour" not in render_text(plan) + render_markdown(plan)
    plan.cost = Cost(before=1.5, after=4.25, lines=("2 x inf1.xlarge at 2.125/h",))
    assert "Cost per hour: 1.50 USD/h -> 4.25 USD/h (+2.75)" in render_text(plan)
    assert "**Cost per hour: 1.50 USD/h -> 4.25 USD/h (+2.75)**" in render_markdown(plan)
    assert Plan.from_dict(plan.to_dict()).cost == plan.cost


def test_attributes_survive_a_saved_plan(make_spec, tmp_path: Path) -> None:
    plan = sample_plan(make_spec, tmp_path)
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.changes == plan.changes
    assert render_text(again) == render_text(plan)
    assert plan_hash(again) == plan_hash(plan)


def test_plans_of_several_environments_share_one_comment(make_spec, tmp_path: Path) -> None:
    steps = build_steps(make_spec(), tmp_path / "cache")
    quiet = plan_of(steps, applied_state(steps), environment="staging")
    text = render_markdown_plans([sample_plan(make_spec, tmp_path), quiet])
    assert text.startswith("## doinfer plan: 1 of 2 environment(s) change")
    assert "- `demo/staging`: No changes." in text
    assert text.count(MARKER) == 1
