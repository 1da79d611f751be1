"""Environments by convention: `specs/<app>/base.yaml` + `specs/<app>/envs/<env>.yaml`.

`doinfer plan specs/qa --env staging` loads `specs/qa/envs/staging.yaml` (which extends
the base). `--env` also names the state's environment: a spec that names none gets it,
one that names another is an error (engine.spec.load_spec checks).
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import DoinferError

ENVS_DIR = "envs"
BASE = "base.yaml"


def environments(app: Path) -> list[str]:
    """The environments of an app directory: the names of its envs/*.yaml, sorted."""
    return sorted(p.stem for p in (app / ENVS_DIR).glob("*.yaml") if p.is_file())


def env_file(app: Path, environment: str) -> Path:
    """Where an environment's overlay lives in an app directory."""
    return app / ENVS_DIR / f"{environment}.yaml"


def spec_file(path: Path, environment: str | None) -> Path:
    """The file to load for a spec argument: a spec file as it is; for an app directory,
    the overlay of `environment` (or base.yaml when the app has no environments)."""
    if not path.is_dir():
        return path
    known = environments(path)
    if environment is None:
        if not known and (path / BASE).is_file():
            return path / BASE
        raise DoinferError(
            f"{path} is an app with environments: pass --env "
            f"({', '.join(known) or f'none yet: add {path / ENVS_DIR}/<env>.yaml'})"
        )
    file = env_file(path, environment)
    if not file.is_file():
        raise DoinferError(
            f"no environment {environment!r} in {path}: {file} does not exist "
            f"(environments: {', '.join(known) or 'none'})"
        )
    return file


def app_dir(path: Path) -> Path:
    """The app directory a spec argument names: itself, or the app an overlay belongs to."""
    if path.is_dir():
        return path
    if not path.exists():
        raise DoinferError(f"{path}: no such app directory")
    if path.parent.name == ENVS_DIR:
        return path.parent.parent
    raise DoinferError(f"--all-envs needs an app directory (specs/<app>), not the file {path}")


def spec_argument(path: str) -> str:
    """How to name a spec on the command line: an overlay by its app directory (with
    --env), any other file as it is."""
    file = Path(path)
    return str(file.parent.parent) if file.parent.name == ENVS_DIR else path
