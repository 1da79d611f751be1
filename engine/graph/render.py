"""Plan renderers: text (optionally coloured) for terminals, markdown for pull requests, JSON."""

from __future__ import annotations

import json

from engine.graph.plan import Change, Plan
from engine.graph.step import Action
from engine.packing.report import Summary, text_lines

SYMBOL = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.REPLACE: "-/+",
    Action.DELETE: "-",
    Action.NOOP: " ",
}
COLOUR = {
    Action.CREATE: "\033[32m",
    Action.UPDATE: "\033[33m",
    Action.REPLACE: "\033[35m",
    Action.DELETE: "\033[31m",
    Action.NOOP: "\033[2m",
}
RESET = "\033[0m"
BOLD = "\033[1m"


def summary_line(plan: Plan) -> str:
    counts = plan.counts()
    if not plan.has_changes:
        where = f"{plan.spec}/{plan.environment}"
        return f"No changes. {where} matches the spec ({len(plan.changes)} steps)."
    parts = [
        f"{counts['create']} to create",
        f"{counts['update']} to update",
        f"{counts['replace']} to replace",
        f"{counts['delete']} to delete",
        f"{counts['no-op']} unchanged",
    ]
    return "Plan: " + ", ".join(parts) + "."


def render_text(plan: Plan, colour: bool = False, show_noop: bool = False) -> str:
    def paint(action: Action, text: str) -> str:
        return f"{COLOUR[action]}{text}{RESET}" if colour else text

    header = f"{plan.spec} (environment {plan.environment}, runtime {plan.runtime})"
    lines = [f"{BOLD}{header}{RESET}" if colour else header, ""]
    shown = [c for c in plan.changes if show_noop or c.action is not Action.NOOP]
    width = max((len(c.step_id) for c in shown), default=0)
    for change in shown:
        symbol = SYMBOL[change.action].rjust(3)
        lines.append(
            paint(change.action, f"{symbol} {change.step_id.ljust(width)}  {change.action}")
            + f"  {described(change)}"
        )
        lines.extend(f"        {reason}" for reason in change.reasons)
        lines.extend(f"        {name}: {value}" for name, value in change.values.items())
    if shown:
        lines.append("")
    for bill in bills(plan):
        lines += [*text_lines(bill), ""]
    lines.append(summary_line(plan))
    return "\n".join(lines)


def bills(plan: Plan) -> list[Summary]:
    """What each fleet of the plan costs, per node type."""
    return [Summary.from_json(s.inputs["bill"]) for s in plan.steps if s.kind == "packing"]


def described(change: Change) -> str:
    """The step's summary, and where it runs when that is not this machine."""
    return f"{change.summary}, on {change.runs_on}" if change.runs_on else change.summary


def render_markdown(plan: Plan) -> str:
    lines = [
        f"### doinfer plan: `{plan.spec}` ({plan.environment}, {plan.runtime})",
        "",
        f"**{summary_line(plan)}**",
    ]
    for bill in bills(plan):
        lines += ["", *text_lines(bill, markdown=True)]
    changed = [c for c in plan.changes if c.action is not Action.NOOP]
    if changed:
        lines += ["", "| | step | action | why |", "|---|---|---|---|"]
        lines += [_markdown_row(c) for c in changed]
    unchanged = [c.step_id for c in plan.changes if c.action is Action.NOOP]
    if unchanged:
        lines += [
            "",
            "<details><summary>Unchanged steps</summary>",
            "",
            *[f"- `{i}`" for i in unchanged],
            "",
            "</details>",
        ]
    return "\n".join(lines)


def _markdown_row(change: Change) -> str:
    why = "<br>".join(
        [_escape(r) for r in change.reasons]
        + [f"{k}: {_escape(v)}" for k, v in change.values.items()]
    )
    return (
        f"| `{SYMBOL[change.action]}` | `{change.step_id}` | {change.action} | "
        f"{_escape(described(change))}<br>{why} |"
    )


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_json(plan: Plan) -> str:
    data = plan.to_dict()
    data.pop("document")
    data.pop("steps")
    return json.dumps(data, indent=2)


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}
