"""`corpus: FILE` and `protocol:` on scenarios: read at load, relative to the naming file."""

from __future__ import annotations

import json
from pathlib import Path

from engine.spec.corpus import MAX_TEXTS
from tests.unit.spec.conftest import VALID, errors_of, valid

SCENARIO = "  - {name: smoke, kind: sequential}\n"


def with_scenario(line: str) -> str:
    return VALID.replace(SCENARIO, f"  - {line}\n")


def test_a_text_file_is_one_text_per_line(write) -> None:
    write("data/questions.txt", "first question\n\n  second, indented  \n")
    spec = valid(
        write("spec.yaml", with_scenario("{name: s, kind: sequential, corpus: data/questions.txt}"))
    )
    assert spec.scenarios[0].texts == (("first question", None), ("  second, indented  ", None))
    assert spec.scenarios[0].protocol == "predictions"


def test_jsonl_texts_and_pairs_and_the_v2_protocol(write) -> None:
    lines = [{"text": "who"}, {"text": "where", "text_pair": "a context"}]
    write("c.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    spec = valid(
        write(
            "spec.yaml", with_scenario("{name: s, kind: sequential, corpus: c.jsonl, protocol: v2}")
        )
    )
    scenario = spec.scenarios[0]
    assert scenario.texts == (("who", None), ("where", "a context"))
    assert scenario.protocol == "v2"
    assert scenario.to_json()["protocol"] == "v2"
    assert "protocol" not in spec.scenarios[0].__class__(name="x", kind="sequential").to_json()


def test_a_path_is_relative_to_the_overlay_that_names_it(write, tmp_path: Path) -> None:
    base = write("base/spec.yaml", VALID)
    write("env/texts.txt", "from the overlay\n")
    overlay = write(
        "env/prod.yaml",
        f"extends: {base}\nscenarios:\n  - {{name: smoke, kind: sequential, corpus: texts.txt}}\n",
    )
    assert valid(overlay).scenarios[0].texts == (("from the overlay", None),)


def test_bad_corpora_are_errors_at_their_line(write) -> None:
    write("bad.jsonl", '{"text": "ok"}\n{"txt": "no"}\n')
    write("many.txt", "t\n" * (MAX_TEXTS + 1))
    write("empty.txt", "\n\n")
    spec = write(
        "spec.yaml",
        VALID.replace(
            SCENARIO,
            "  - {name: a, kind: sequential, corpus: missing.txt}\n"
            "  - {name: b, kind: sequential, corpus: bad.jsonl}\n"
            "  - {name: c, kind: sequential, corpus: many.txt}\n"
            "  - {name: d, kind: sequential, corpus: empty.txt}\n"
            "  - {name: e, kind: sequential, corpus: empty.txt, texts: [x]}\n"
            "  - {name: f, kind: sequential, protocol: grpc}\n",
        ),
    )
    errors = errors_of(spec)
    assert len(errors) == 1 and ":18:" in errors[0] and "protocol" in errors[0]  # schema first
    spec.write_text(
        spec.read_text().replace("  - {name: f, kind: sequential, protocol: grpc}\n", "")
    )
    errors = errors_of(spec)
    assert [e.split(": error: ")[0].rsplit(":", 2)[1] for e in errors] == [
        "13",
        "14",
        "15",
        "16",
        "17",
    ]
    assert "no such file" in errors[0] and errors[0].endswith("missing.txt")
    assert 'bad.jsonl:2: a line must be an object with a "text" string' in errors[1]
    assert f"more than {MAX_TEXTS} texts" in errors[2]
    assert "holds no text" in errors[3]
    assert "give texts or corpus, not both" in errors[4]
