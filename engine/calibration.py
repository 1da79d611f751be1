"""The texts a trace measures its precision on: the traced module's answers against the
fp32 model's (engine/steps/trace_job.py).

At a reduced precision, the spec's own scenario texts when it has any (what users will
send), else doinfer's default corpus (engine/data/corpus.json, also the serving
benchmarks' corpus). The texts are inputs of the trace step (a saved plan applies without
the spec), so a changed corpus re-traces a reduced-precision model: its agreement was
measured on the old texts. At fp32 there is no precision lost to characterise on the
user's texts (the check is that tracing kept the model's answers): the default corpus,
so that editing a benchmark's corpus does not re-trace and redeploy fp32 models. At most
MAX_TEXTS, taken evenly across the corpus: a few hundred show a precision's worst case on
a model well enough.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from engine.artifacts import default_request
from engine.spec.model import Spec

CORPUS_FILE = Path(__file__).with_name("data") / "corpus.json"
MAX_TEXTS = 128
Text = tuple[str, str | None]


@functools.cache
def default_corpus() -> tuple[list[str], list[str]]:
    """The default corpus: (questions, passages)."""
    data = json.loads(CORPUS_FILE.read_text())
    return list(data["questions"]), list(data["passages"])


def calibration_texts(spec: Spec, task: str, precision: str) -> list[list[str | None]]:
    """[seq_0, seq_1 or None] per text, as JSON values; question answering always has a
    context (the one a scenario would send with a plain string, or a default passage)."""
    texts: list[Text] = []
    if precision != "fp32":
        texts = list(dict.fromkeys(t for s in spec.scenarios for t in s.texts or ()))
    if not texts:
        questions, passages = default_corpus()
        if task == "question-answering":
            texts = [(q, passages[i % len(passages)]) for i, q in enumerate(questions)]
        else:
            texts = [(t, None) for t in questions + passages]
    if task == "question-answering":
        context = default_request(task)["seq_1"]
        texts = [(q, c if c is not None else context) for q, c in texts]
    step = max(1, -(-len(texts) // MAX_TEXTS))
    return [[q, c] for q, c in texts[::step][:MAX_TEXTS]]
