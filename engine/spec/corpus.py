"""Scenario corpus files: `corpus: FILE` becomes the scenario's `texts` when the spec loads.

Reading the file here, once, keeps everything after it unchanged: a plan shows the corpus
as its size and digest, a changed file is a change to apply, and the load clients get the
texts in their plans wherever they run. A path is relative to the file that names it (an
overlay's corpus lives next to the overlay).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.spec.errors import Diagnostic
from engine.spec.validate import Marks, mark_of

MAX_BYTES = 16 * 1024 * 1024
MAX_TEXTS = 10_000  # as many as `texts` may hold (the schema's maxItems)

Text = str | dict[str, str]


def load_corpora(doc: dict[str, Any], marks: Marks) -> list[Diagnostic]:
    """Replace each scenario's `corpus` by the `texts` read from its file (in place)."""
    errors: list[Diagnostic] = []
    for i, scenario in enumerate(doc["scenarios"]):
        if "corpus" not in scenario:
            continue
        where = mark_of(marks, ("scenarios", i, "corpus"))
        if "texts" in scenario:
            errors.append(Diagnostic(where, f"scenarios[{i}]: give texts or corpus, not both"))
            continue
        path = Path(where.file).parent / scenario["corpus"]
        try:
            texts = read_corpus(path)
        except CorpusError as exc:
            errors.append(Diagnostic(where, f"scenarios[{i}].corpus: {exc}"))
            continue
        del scenario["corpus"]
        scenario["texts"] = texts
    return errors


class CorpusError(Exception):
    pass


def read_corpus(path: Path) -> list[Text]:
    """The texts of a corpus file: one per line, or .jsonl objects with "text" (and an
    optional "text_pair", the context of a question)."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise CorpusError(f"{path} holds {size} bytes; a corpus may hold {MAX_BYTES}")
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"cannot read {path}: {exc}") from None
    jsonl = path.suffix == ".jsonl"
    texts: list[Text] = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        texts.append(_json_text(path, number, line) if jsonl else line)
        if len(texts) > MAX_TEXTS:
            raise CorpusError(f"{path} holds more than {MAX_TEXTS} texts")
    if not texts:
        raise CorpusError(f"{path} holds no text")
    return texts


def _json_text(path: Path, number: int, line: str) -> Text:
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise CorpusError(f"{path}:{number}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not data["text"]:
        raise CorpusError(f'{path}:{number}: a line must be an object with a "text" string')
    pair = data.get("text_pair")
    if pair is None:
        return data["text"]
    if not isinstance(pair, str) or not pair:
        raise CorpusError(f'{path}:{number}: "text_pair" must be a non-empty string')
    return {"seq_0": data["text"], "seq_1": pair}
