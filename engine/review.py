"""What a pull request changes: the spec at a git revision planned against the working tree.

No runtime, no state and no network: the base revision's steps stand in for the state
(as if the base had been applied exactly), so the plan shows what merging would make
`apply` do, attribute by attribute. Model files under `path:` are read from the working
tree for both sides: the plan compares specs, not weights.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from engine.envs import ENVS_DIR, app_dir, env_file, environments, spec_file
from engine.errors import DoinferError
from engine.git_revision import GitRevision
from engine.graph.build import build_steps
from engine.graph.plan import Plan, destroy_plan, make_plan
from engine.graph.step import Step
from engine.spec import SpecError, load_spec
from engine.spec.errors import Diagnostic
from engine.spec.model import Mark, Spec
from engine.state import State


def plan_against_revision(
    spec_arg: Path, environment: str | None, revision: str, cache_dir: Path
) -> Plan:
    """The plan of one spec (or an app's environment) from `revision` to the working tree."""
    path = spec_file(spec_arg, environment)
    git = GitRevision(revision, path)
    return _plan(path, environment, git, cache_dir)


def plan_all_environments(spec_arg: Path, revision: str, cache_dir: Path) -> list[Plan]:
    """A plan per environment of an app, at the revision or in the working tree (an added
    environment is all creates, a removed one all deletes), in name order."""
    app = app_dir(spec_arg)
    git = GitRevision(revision, app)
    at_revision = sorted(
        Path(name).stem for name in git.list_dir(app / ENVS_DIR) if name.endswith(".yaml")
    )
    names = sorted(set(environments(app)) | set(at_revision))
    if not names:
        raise DoinferError(
            f"{app} has no environments ({app / ENVS_DIR}/<env>.yaml), here or at {revision}"
        )
    return [_plan(env_file(app, env), env, git, cache_dir) for env in names]


def _plan(path: Path, environment: str | None, git: GitRevision, cache_dir: Path) -> Plan:
    head = load_spec(path, environment) if path.is_file() else None
    base = _load_at_revision(path, environment, git)
    if head is None and base is None:
        raise DoinferError(f"{path} exists neither here nor at {git.revision}")
    if head is None:
        assert base is not None
        plan = destroy_plan(
            applied(build_steps(base, cache_dir), base),
            runtime=base.runtime.kind,
            spec_path=git.relative(path),
        )
        why = f"{git.relative(path)} is removed"
        changes = [replace(c, reasons=(why,), why=(why,)) for c in plan.changes]
        return replace(plan, changes=changes, base=git.revision)
    state = (
        applied(build_steps(base, cache_dir), base)
        if base is not None
        else State(head.name, head.environment)
    )
    plan = make_plan(
        build_steps(head, cache_dir),
        state,
        None,
        spec=head.name,
        environment=head.environment,
        runtime=head.runtime.kind,
        spec_path=git.relative(path),
        document=head.document,
    )
    return replace(plan, base=git.revision)


def _load_at_revision(path: Path, environment: str | None, git: GitRevision) -> Spec | None:
    """The spec as the revision has it; None when the revision has no such file."""
    if git.kind(path) is None:
        return None
    try:
        return load_spec(path, environment, files=git)
    except SpecError as exc:
        lines = "\n".join(str(_at_revision(d, git)) for d in exc.diagnostics)
        raise DoinferError(
            f"the spec at {git.revision} does not validate, so there is nothing to compare "
            f"the working tree with:\n{lines}"
        ) from None


def _at_revision(diagnostic: Diagnostic, git: GitRevision) -> Diagnostic:
    """`origin/main:specs/qa/base.yaml:3:5: error: ...`: which revision the error is in."""
    mark = diagnostic.mark
    try:
        file = git.relative(Path(mark.file))
    except DoinferError:
        file = mark.file
    return Diagnostic(Mark(f"{git.revision}:{file}", mark.line, mark.column), diagnostic.message)


def applied(steps: list[Step], spec: Spec) -> State:
    """The state an environment would have had these steps been applied exactly."""
    by_id = {s.id: s for s in steps}
    return State(
        spec.name,
        spec.environment,
        steps={
            s.id: {
                "kind": s.kind,
                "fingerprint": s.fingerprint,
                "inputs": s.inputs,
                "needs": list(s.needs),
                "upstream": {n: by_id[n].fingerprint for n in s.needs},
                "summary": s.summary,
                "outputs": {},
            }
            for s in steps
        },
    )
