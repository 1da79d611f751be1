"""An hf: model that cannot be downloaded fails apply with a message that says what to do.

The Hugging Face Hub is out of reach here, which is the situation the message is for;
HF_HUB_OFFLINE=1 makes that certain and immediate.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

SPEC = """\
apiVersion: doinfer/v1
name: offline
models:
  - {name: bert, source: "hf:bert-base-uncased", task: question-answering}
servers:
  - {name: bert, processor: cpu, models: [{model: bert}]}
"""


def test_unreachable_hub_fails_with_a_path_suggestion(tmp_path: Path) -> None:
    spec = tmp_path / "offline.yaml"
    spec.write_text(SPEC)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "apply",
            str(spec),
            "--yes",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "trace of bert failed: error: cannot download hf:bert-base-uncased" in result.stderr
    assert "source: path:" in result.stderr
    assert "Traceback" not in result.stderr
    assert "1 failed, 2 skipped" in result.stderr
