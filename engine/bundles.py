"""Write a server bundle (see engine/artifacts.py): every runtime ships the same directory.

The local runtime serves it in place; the Docker runtime copies it into the server image.
Models are hard links into the trace cache, so a bundle costs no disk of its own.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from engine.artifacts import ARTIFACT_FORMAT, BUNDLE_CONFIG_FILE, BUNDLE_MODELS_DIR, BundleConfig


def write_bundle(directory: Path, inputs: dict[str, Any], artifacts: dict[str, str]) -> None:
    """Fill `directory` (which must not hold a bundle yet) from a pack step's inputs."""
    for model in inputs["models"]:
        link_tree(Path(artifacts[model["name"]]), directory / BUNDLE_MODELS_DIR / model["name"])
    config: BundleConfig = {
        "format": ARTIFACT_FORMAT,
        "server": inputs["server"],
        "processor": inputs["processor"],
        "threads": None,
        "share_weights": inputs["share_weights"],
        "models": [
            {
                "name": m["name"],
                "task": m["task"],
                "instances": m["instances"],
                "artifact": f"{BUNDLE_MODELS_DIR}/{m['name']}",
                "max_batch_size": m["max_batch_size"],
                "max_delay_ms": m["max_delay_ms"],
                "max_queue": m["max_queue"],
                "max_padding": m["max_padding"],
            }
            for m in inputs["models"]
        ],
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / BUNDLE_CONFIG_FILE).write_text(json.dumps(config, indent=2))


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link a directory tree (copy where links cannot cross filesystems)."""
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
