"""plan --base-ref: the spec at a git revision against the working tree, in a real
temporary git repository (the git command, no network, no state, no runtime)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine.errors import DoinferError
from engine.graph.build import build_steps
from engine.graph.plan import make_plan, plan_hash
from engine.graph.render import render_markdown_plans
from engine.graph.step import Action
from engine.operations import check_plan_hash, plans_for
from engine.review import applied, plan_against_revision, plan_all_environments
from engine.spec import load_spec

from .test_cli import run

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")

BASE = """\
apiVersion: doinfer/v1
name: shop
models:
  - name: bert-qa
    source: hf:distilbert-base-cased-distilled-squad
    task: question-answering
    trace: {sequence_length: 384}
servers:
  - name: qa
    processor: cpu
    models: [{model: bert-qa, instances: 1}]
    replicas: 1
    threads: 1
scenarios:
  - {name: smoke, kind: sequential}
"""
STAGING = "extends: ../base.yaml\nservers:\n  - {name: qa, replicas: 2}\n"
PROD = "extends: ../base.yaml\nservers:\n  - {name: qa, replicas: 6}\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose first commit holds specs/shop: a base and two environments."""
    root = tmp_path / "repo"
    app = root / "specs" / "shop"
    (app / "envs").mkdir(parents=True)
    (app / "base.yaml").write_text(BASE)
    (app / "envs" / "staging.yaml").write_text(STAGING)
    (app / "envs" / "prod.yaml").write_text(PROD)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-qm", "base")
    return root


def app(repo: Path) -> Path:
    return repo / "specs" / "shop"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def actions(plan) -> dict[str, Action]:
    return {c.step_id: c.action for c in plan.changes if c.action is not Action.NOOP}


def test_an_unchanged_working_tree_plans_no_change(repo: Path, tmp_path: Path) -> None:
    plans = plan_all_environments(app(repo), "main", tmp_path / "cache")
    assert [(p.environment, p.has_changes) for p in plans] == [("prod", False), ("staging", False)]


def test_an_overlay_change_reaches_its_environment_only(repo: Path, tmp_path: Path) -> None:
    edit(app(repo) / "envs" / "staging.yaml", "replicas: 2", "replicas: 3")
    prod, staging = plan_all_environments(app(repo), "main", tmp_path / "cache")
    assert not prod.has_changes
    assert actions(staging) == {"deploy/qa": Action.UPDATE, "scenario/smoke": Action.REPLACE}
    deploy = next(c for c in staging.changes if c.step_id == "deploy/qa")
    assert [(a.name, a.old, a.new, a.forces) for a in deploy.attributes] == [
        ("replicas", "2", "3", False)
    ]
    assert deploy.effect == "scale 2 -> 3 replica(s); running replicas keep serving"
    assert staging.base == "main"
    markdown = render_markdown_plans([prod, staging])
    assert "## doinfer plan: 1 of 2 environment(s) change" in markdown
    assert "### doinfer plan: `shop` (staging, local)" in markdown
    assert "### doinfer plan: `shop` (prod" not in markdown  # untouched: only in the summary


def test_a_base_change_reaches_every_environment(repo: Path, tmp_path: Path) -> None:
    edit(app(repo) / "base.yaml", "sequence_length: 384", "sequence_length: 256")
    plans = plan_all_environments(app(repo), "main", tmp_path / "cache")
    for plan in plans:
        assert set(actions(plan)) == {"trace/bert-qa@cpu", "pack/qa", "deploy/qa", "scenario/smoke"}
        trace = next(c for c in plan.changes if c.step_id == "trace/bert-qa@cpu")
        assert [(a.name, a.old, a.new, a.forces) for a in trace.attributes] == [
            ("trace.sequence_length", "384", "256", True)
        ]
    assert [p.environment for p in plans] == ["prod", "staging"]


def test_a_renamed_model_deletes_one_trace_and_creates_another(repo: Path, tmp_path: Path) -> None:
    edit(app(repo) / "base.yaml", "name: bert-qa", "name: bert-squad")
    edit(app(repo) / "base.yaml", "{model: bert-qa,", "{model: bert-squad,")
    plan = plan_against_revision(app(repo), "staging", "main", tmp_path / "cache")
    assert actions(plan) == {
        "trace/bert-squad@cpu": Action.CREATE,
        "pack/qa": Action.REPLACE,
        "deploy/qa": Action.REPLACE,
        "scenario/smoke": Action.REPLACE,
        "trace/bert-qa@cpu": Action.DELETE,
    }
    pack = next(c for c in plan.changes if c.step_id == "pack/qa")
    names = {a.name for a in pack.attributes if a.forces}
    assert "models[bert-squad].instances" in names and "models[bert-qa].instances" in names


def test_a_spec_that_does_not_validate_at_the_revision_says_where(
    repo: Path, tmp_path: Path
) -> None:
    edit(app(repo) / "base.yaml", "instances: 1", "instances: many")
    git(repo, "commit", "-qam", "broken")
    edit(app(repo) / "base.yaml", "instances: many", "instances: 2")  # the fix under review
    with pytest.raises(DoinferError) as caught:
        plan_against_revision(app(repo), "staging", "HEAD", tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith("the spec at HEAD does not validate")
    assert "HEAD:specs/shop/base.yaml:11:" in message and "error:" in message
    result = run("plan", str(app(repo)), "--env", "staging", "--base-ref", "HEAD")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "HEAD:specs/shop/base.yaml:11:" in result.stderr


def test_an_added_environment_creates_and_a_removed_one_deletes(repo: Path, tmp_path: Path) -> None:
    (app(repo) / "envs" / "prod.yaml").unlink()
    (app(repo) / "envs" / "canary.yaml").write_text(STAGING)
    plans = {p.environment: p for p in plan_all_environments(app(repo), "main", tmp_path / "c")}
    assert set(plans) == {"canary", "prod", "staging"}
    assert set(plans["canary"].counts().items()) >= {("create", 4)}
    assert {c.action for c in plans["prod"].changes} == {Action.DELETE}
    assert plans["prod"].changes[0].why == ("specs/shop/envs/prod.yaml is removed",)
    assert not plans["staging"].has_changes


def test_a_bad_revision_or_no_repository_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(DoinferError, match="--base-ref nope: no such revision"):
        plan_against_revision(app(repo), "staging", "nope", tmp_path / "cache")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "spec.yaml").write_text(BASE)
    with pytest.raises(DoinferError, match="needs a git repository"):
        plan_against_revision(outside / "spec.yaml", None, "main", tmp_path / "cache")


def test_the_reviewed_hash_is_the_hash_of_applying_from_the_base(repo: Path, tmp_path) -> None:
    """What apply --plan-hash compares: the pull request's plan hash equals the hash of the
    plan made against the state of an environment applied from the base revision, and a
    state that moved since gives another hash, which apply refuses."""
    edit(app(repo) / "envs" / "staging.yaml", "replicas: 2", "replicas: 3")
    reviewed = plan_against_revision(app(repo), "staging", "main", tmp_path / "cache")
    git(repo, "stash", "-q")
    base = load_spec(app(repo) / "envs" / "staging.yaml", "staging")
    state = applied(build_steps(base, tmp_path / "cache"), base)
    git(repo, "stash", "pop", "-q")
    head = load_spec(app(repo) / "envs" / "staging.yaml", "staging")

    def plan_against(state):
        return make_plan(
            build_steps(head, tmp_path / "cache"),
            state,
            None,
            spec=head.name,
            environment=head.environment,
            runtime=head.runtime.kind,
            spec_path="x",
            document={},
        )

    check_plan_hash(plan_against(state), plan_hash(reviewed))  # the same plan: accepted
    state.steps["deploy/qa"]["fingerprint"] = "applied-from-another-branch"
    with pytest.raises(DoinferError, match="is not the one reviewed"):
        check_plan_hash(plan_against(state), plan_hash(reviewed))


def test_cli_plan_base_ref_all_envs_markdown(repo: Path, tmp_path: Path) -> None:
    edit(app(repo) / "base.yaml", "instances: 1", "instances: 2")
    state = ["--state-dir", str(tmp_path / "st")]
    result = run(
        "plan",
        str(app(repo)),
        "--all-envs",
        "--base-ref",
        "main",
        "--format",
        "markdown",
        "--detailed-exitcode",
        *state,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout.startswith("## doinfer plan: 2 of 2 environment(s) change")
    assert "models[bert-qa].instances: 1 -> 2  # forces replacement" in result.stdout
    assert result.stdout.rstrip().endswith("<!-- doinfer-plan -->")
    assert not (tmp_path / "st" / "state").exists()  # no state was read or written
    with pytest.raises(DoinferError, match="--replace and --target act on"):
        plans_for(app(repo), "staging", tmp_path, base_ref="main", targets=["deploy/qa"])
