"""Plan renderers: text (optionally coloured) for terminals, markdown for pull requests, JSON.

Both text and markdown show every change attribute by attribute, Terraform style: a create
lists what matters, an update `old -> new`, a replace marks what forces it, and unchanged
attributes fold away with a count. Markdown fits one GitHub comment (65,536 characters):
sections fold in `<details>`, and when a plan is too long, items are cut and the comment
says how many.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.envs import spec_argument
from engine.gc_pause import gc_paused
from engine.graph.attributes import Attribute
from engine.graph.plan import Change, Cost, Plan, plan_hash
from engine.graph.profiles import KNOWN_AFTER_PROFILING, measured_lines
from engine.graph.refresh import Refresh
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
FORCES = "# forces replacement"
COMMENT_LIMIT = 65_536  # characters a GitHub comment holds
MARKER = "<!-- doinfer-plan -->"  # how a CI job finds its comment again to update it


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
    lines = [f"{BOLD}{header}{RESET}" if colour else header]
    if plan.base:
        lines.append(f"compared with {plan.base}")
    lines.append("")
    shown = [c for c in plan.changes if show_noop or c.action is not Action.NOOP]
    width = max((len(c.step_id) for c in shown), default=0)
    for change in shown:
        symbol = SYMBOL[change.action].rjust(3)
        lines.append(
            paint(change.action, f"{symbol} {change.step_id.ljust(width)}  {change.action}")
            + f"  {described(change)}"
        )
        lines.extend(f"        {line}" for line in detail_lines(change))
    if shown:
        lines.append("")
    if plan.cost is not None:
        lines += [cost_line(plan.cost), *(f"  {line}" for line in plan.cost.lines), ""]
    for bill, measured in bills(plan):
        lines += [*text_lines(bill), *(f"  measured {line}" for line in measured), ""]
    lines.append(summary_line(plan))
    return "\n".join(lines)


def bills(plan: Plan) -> list[tuple[Summary, list[str]]]:
    """What each packed fleet of the plan costs, per node type, and the profiles it rests
    on that were measured (what, when, where)."""
    return [
        (Summary.from_json(s.inputs["bill"]), measured_lines(s.inputs))
        for s in plan.steps
        if s.kind == "packing" and s.inputs["packing"] is not None
    ]


def detail_lines(change: Change) -> list[str]:
    """Why, attribute by attribute, what is known only after apply, what servers do."""
    lines = list(change.why)
    if change.action is not Action.NOOP:
        lines += [_attribute_line(change, a) for a in change.attributes]
    lines += [f"{name}: {value}" for name, value in change.values.items()]
    if change.unchanged and change.action is not Action.NOOP:
        lines.append(f"# ({change.unchanged} unchanged attribute(s) hidden)")
    if change.effect:
        lines.append(f"# servers: {change.effect}")
    return lines


def _attribute_line(change: Change, attribute: Attribute) -> str:
    if attribute.old is None:
        text = f"{attribute.name}: {attribute.new}"
    elif attribute.new is None and change.action is Action.DELETE:
        text = f"{attribute.name}: {attribute.old}"
    else:
        text = f"{attribute.name}: {attribute.old or '(none)'} -> {attribute.new or '(none)'}"
    return f"{text}  {FORCES}" if attribute.forces else text


def described(change: Change) -> str:
    """The step's summary, and where it runs when that is not this machine."""
    return f"{change.summary}, on {change.runs_on}" if change.runs_on else change.summary


def cost_line(cost: Cost) -> str:
    def money(value: float | None) -> str:
        return "nothing priced" if value is None else f"{value:,.2f} {cost.currency}/h"

    line = f"Cost per hour: {money(cost.before)} -> {money(cost.after)}"
    if cost.waiting:  # what those fleets cost is known once they are packed
        after = "" if cost.after is None else f"{money(cost.after)} + "
        line = f"Cost per hour: {money(cost.before)} -> {after}{KNOWN_AFTER_PROFILING[1:-1]}"
        return f"{line} ({', '.join(cost.waiting)})"
    if cost.before is not None and cost.after is not None:
        line += f" ({cost.after - cost.before:+,.2f})"
    return line


# -- markdown ---------------------------------------------------------------------------


@dataclass
class _Section:
    """Lines around a list of items that may be cut to fit a comment."""

    head: list[str]
    items: list[str]
    tail: list[str] = field(default_factory=list)
    what: str = "items"  # what the items are, for the note saying how many were cut
    cut: int = 0

    def note(self) -> str:
        return (
            f"_… {self.cut} more {self.what} cut to fit one comment "
            f"({COMMENT_LIMIT:,} characters): run `doinfer plan` to see them all._"
        )

    def render(self) -> str:
        note = [self.note()] if self.cut else []
        return "\n".join([*self.head, *self.items, *note, *self.tail])


def render_markdown(plan: Plan, limit: int = COMMENT_LIMIT) -> str:
    return render_markdown_plans([plan], limit)


def render_markdown_plans(plans: Sequence[Plan], limit: int = COMMENT_LIMIT) -> str:
    """One review comment for the plans of one or more environments, under `limit`."""
    sections: list[_Section] = []
    if len(plans) > 1:
        changing = [p for p in plans if p.has_changes]
        sections.append(
            _Section(
                [
                    f"## doinfer plan: {len(changing)} of {len(plans)} environment(s) change",
                    "",
                    *[f"- `{p.spec}/{p.environment}`: {summary_line(p)}" for p in plans],
                    "",
                ],
                [],
            )
        )
    for plan in plans:
        if plan.has_changes or len(plans) == 1:  # the others are listed in the summary
            sections += _plan_sections(plan)
    sections.append(_Section([MARKER], []))
    _fit(sections, limit)
    return "\n".join(s.render() for s in sections)


def _plan_sections(plan: Plan) -> list[_Section]:
    """One plan in a pull-request comment: its summary, the changed steps and what they
    do to servers, images and cost, the details folded, and the plan hash to apply."""
    changed = [c for c in plan.changes if c.action is not Action.NOOP]
    head = [f"### doinfer plan: `{plan.spec}` ({plan.environment}, {plan.runtime})", ""]
    if plan.base:
        head += [f"Compared with `{plan.base}`, with no state and no runtime.", ""]
    head.append(f"**{summary_line(plan)}**")
    sections = [_Section(head, [])]
    if changed:
        sections.append(
            _Section(
                ["", "| | step | action | why |", "|---|---|---|---|"],
                [_markdown_row(c) for c in changed],
                what="steps",
            )
        )
    sections += _effect_sections(changed)
    sections += _cost_sections(plan)
    sections += _folded_sections(plan, changed)
    sections.append(_hash_section(plan))
    return sections


def _effect_sections(changed: list[Change]) -> list[_Section]:
    """The servers the changes touch, and the images they rebuild."""
    servers = [f"- `{c.step_id}`: {_escape(c.effect)}" for c in changed if c.effect]
    images = [
        f"- `{c.step_id}`: {_escape(c.summary)}"
        for c in changed
        if c.action is not Action.DELETE and "image_id" in c.values
    ]
    return [
        _Section(["", f"**{title}:**", ""], items, what=what)
        for title, items, what in (
            ("Servers", servers, "servers"),
            ("Images to rebuild", images, "images"),
        )
        if items
    ]


def _cost_sections(plan: Plan) -> list[_Section]:
    sections = []
    if plan.cost is not None:
        lines = ["", f"**{cost_line(plan.cost)}**"]
        if plan.cost.lines:
            lines += ["", *[f"- {_escape(line)}" for line in plan.cost.lines]]
        sections.append(_Section(lines, []))
    for bill, measured in bills(plan):
        lines = ["", *text_lines(bill, markdown=True)]
        lines += ["", *(f"- measured {_escape(line)}" for line in measured)] if measured else []
        sections.append(_Section(lines, []))
    return sections


def _folded_sections(plan: Plan, changed: list[Change]) -> list[_Section]:
    """The changes attribute by attribute, and the unchanged steps, each folded."""
    sections = []
    if changed:
        sections.append(
            _Section(
                [
                    "",
                    f"<details><summary>Changes, attribute by attribute ({len(changed)})</summary>",
                    "",
                    "```diff",
                ],
                ["\n".join(_diff_block(c)) for c in changed],
                ["```", "", "</details>"],
                what="steps",
            )
        )
    unchanged = [c.step_id for c in plan.changes if c.action is Action.NOOP]
    if unchanged:
        sections.append(
            _Section(
                ["", f"<details><summary>Unchanged steps ({len(unchanged)})</summary>", ""],
                [f"- `{i}`" for i in unchanged],
                ["", "</details>"],
                what="unchanged steps",
            )
        )
    return sections


def _hash_section(plan: Plan) -> _Section:
    """The plan hash, and the command that applies exactly this plan."""
    spec = spec_argument(plan.spec_path) if plan.base else "SPEC"
    apply = f"doinfer apply {spec} --env {plan.environment} --plan-hash {plan_hash(plan)}"
    return _Section(
        [
            "",
            f"Plan hash: `{plan_hash(plan)}`. {'Once merged, ' if plan.base else ''}"
            f"`{apply}` applies exactly this plan, and refuses if the environment's "
            "state moved.",
            "",
        ],
        [],
    )


def _diff_block(change: Change) -> list[str]:
    """A change in a ```diff block: GitHub colours lines starting with + and -."""
    sign = {Action.CREATE: "+", Action.DELETE: "-"}.get(change.action, "!")
    lines = [f"{SYMBOL[change.action]} {change.step_id}  {change.action}  {described(change)}"]
    lines += [f"{sign}     {line}" for line in detail_lines(change)]
    return lines


def _fit(sections: list[_Section], limit: int) -> None:
    """Cut items, from the longest list first, until the comment fits `limit`."""
    total = sum(len(s.render()) + 1 for s in sections)
    sizes = {id(s): sum(len(i) + 1 for i in s.items) for s in sections}
    while total > limit:
        section = max(sections, key=lambda s: sizes[id(s)])
        if not section.items:
            break
        removed = len(section.items.pop()) + 1
        sizes[id(section)] -= removed
        note_before = len(section.note()) + 1 if section.cut else 0
        section.cut += 1
        total += len(section.note()) + 1 - note_before - removed


def _markdown_row(change: Change) -> str:
    """One line of the overview: why, and each changed attribute (a create's or delete's
    attributes are in the details below)."""
    lines = list(change.why)
    if change.action in (Action.UPDATE, Action.REPLACE):
        lines += [_attribute_line(change, a) for a in change.attributes]
    lines += [f"{k}: {v}" for k, v in change.values.items()]
    cell = "<br>".join(_escape(line) for line in [described(change), *lines])
    return f"| `{SYMBOL[change.action]}` | `{change.step_id}` | {change.action} | {cell} |"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


@gc_paused
def render_json(plan: Plan) -> str:
    return _plan_json(_json_form(plan))


@gc_paused
def render_json_plans(plans: Sequence[Plan]) -> str:
    """Several environments' plans: one JSON document, {"plans": [...]}."""
    body = ",\n".join(_indent(_plan_json(_json_form(p)), 4) for p in plans)
    return '{\n  "plans": [\n' + body + "\n  ]\n}" if plans else '{\n  "plans": []\n}'


def _plan_json(form: dict[str, object]) -> str:
    """A plan as indented JSON with each change on one line: json's indenting encoder is
    pure Python, and a fleet's plan holds thousands of changes (its compact encoder, in C,
    writes them in a tenth of the time); one line per change also reads well in a diff."""
    fields = []
    for key, value in form.items():
        if key == "changes" and isinstance(value, list) and value:
            lines = ",\n".join("    " + json.dumps(change) for change in value)
            text = "[\n" + lines + "\n  ]"
        else:
            text = _indent(json.dumps(value, indent=2), 2).lstrip()
        fields.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(fields) + "\n}"


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.splitlines())


def _json_form(plan: Plan) -> dict[str, object]:
    data = plan.to_dict()
    data.pop("document")
    data.pop("steps")
    return data


def render_refresh(refresh: Refresh) -> str:
    """What a refresh saw of every recorded step: drifted ones with why."""
    lines = [f"{refresh.spec} (environment {refresh.environment}): refresh only", ""]
    width = max((len(step_id) for step_id, _ in refresh.observed), default=0)
    for step_id, drift in refresh.observed:
        lines.append(f"  {step_id.ljust(width)}  {'drifted' if drift else 'as recorded'}")
        lines.extend(f"        {d}" for d in drift)
    if refresh.observed:
        lines.append("")
    lines.append(
        f"Refresh: {len(refresh.drifted)} of {len(refresh.observed)} recorded step(s) drifted. "
        f"Applying it records this in the state and changes nothing that runs."
    )
    return "\n".join(lines)


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}
