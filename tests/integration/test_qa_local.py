"""specs/qa-local.yaml end to end: question answering from a `path:` model directory.

The spec's model directory is the user's to provide; here it is a tiny BERT built by the
test (the Hub is out of reach), so answers are checked against the untraced model rather
than against a human's expectation.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_local_apply import doinfer, server_pids
from tests.tiny_models import build_tiny_model
from tests.unit.serving.test_app import untraced_answer

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_qa_spec_answers_like_the_untraced_model(tmp_path: Path) -> None:
    spec = tmp_path / "qa-local.yaml"
    shutil.copy(REPO / "specs" / "qa-local.yaml", spec)
    # the spec's server limits reach the server (the default body limit is 4 MiB)
    limits = "    replicas: 1\n    limits: {max_body_bytes: 2048}\n"
    spec.write_text(spec.read_text().replace("    replicas: 1\n", limits, 1))
    source = build_tiny_model(tmp_path / "models" / "qa", "question-answering")
    state = tmp_path / "state"
    try:
        result = doinfer(state, "apply", str(spec), "--yes")
        assert "Apply complete" in result.stdout
        assert "trace qa (path:models/qa, question-answering) on cpu, 1x384" in result.stdout
        (replica,) = json.loads(doinfer(state, "status", str(spec), "--format", "json").stdout)[
            "replicas"
        ]
        question = "where does doinfer keep state"
        context = "doinfer keeps the state of every environment in a json file"
        query = urllib.parse.urlencode({"seq_0": question, "seq_1": context})
        with urllib.request.urlopen(f"{replica['url']}/predictions/qa-0?{query}") as response:
            body = json.loads(response.read())
        assert body["answer"] == untraced_answer(source, question, context)
        large = urllib.request.Request(f"{replica['url']}/v2/models/qa-0/infer", b"x" * 4096)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(large)
        assert refused.value.code == 413

        # one more replica, threads left "auto": an update, the running replica keeps serving
        (running,) = server_pids(state)
        spec.write_text(spec.read_text().replace("replicas: 1\n", "replicas: 2\n", 1))
        plan = json.loads(doinfer(state, "plan", str(spec), "--format", "json").stdout)
        assert {c["step"]: c["action"] for c in plan["changes"]}["deploy/qa"] == "update"
        doinfer(state, "apply", str(spec), "--yes")
        pids = server_pids(state)
        assert running in pids and len(pids) == 2

        # the model directory is part of the trace's identity: a new model is a new trace
        build_tiny_model(source, "question-answering", seed=1)
        plan = json.loads(doinfer(state, "plan", str(spec), "--format", "json").stdout)
        actions = {c["step"]: c["action"] for c in plan["changes"]}
        assert actions["trace/qa@cpu"] == "replace"
        assert actions["deploy/qa"] == "replace"
    finally:
        doinfer(state, "destroy", str(spec), "--yes", check=False)
    assert server_pids(state) == set()
