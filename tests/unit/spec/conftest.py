from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.spec import SpecError, load_spec
from engine.spec.model import Spec

VALID = """\
apiVersion: doinfer/v1
name: demo
models:
  - name: tiny
    source: path:tiny
    task: feature-extraction
servers:
  - name: web
    processor: cpu
    models: [{model: tiny, instances: 2}]
runtime: {kind: local}
scenarios:
  - {name: smoke, kind: sequential}
"""


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return write


def errors_of(path: Path) -> list[str]:
    """Every diagnostic line load_spec reports for `path` (which must be invalid)."""
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return [str(d) for d in caught.value.diagnostics]


def valid(path: Path) -> Spec:
    return load_spec(path)
