from engine.graph.fingerprint import canonical_json, changed_keys, diff_inputs, fingerprint


def test_canonical_json_ignores_key_order() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == canonical_json(
        {"a": [1, {"c": 3, "d": 2}], "b": 1}
    )


def test_fingerprint_covers_inputs_and_upstream() -> None:
    base = fingerprint({"a": 1}, {"up": "x"})
    assert base == fingerprint({"a": 1}, {"up": "x"})
    assert base != fingerprint({"a": 2}, {"up": "x"})
    assert base != fingerprint({"a": 1}, {"up": "y"})
    assert len(base) == 64


def test_diff_inputs_names_nested_leaves() -> None:
    old = {"trace": {"sequence_length": 128, "batch_size": 1}, "task": "qa", "gone": 1}
    new = {"trace": {"sequence_length": 64, "batch_size": 1}, "task": "qa", "new": True}
    assert diff_inputs(old, new) == [
        "gone: 1 -> (none)",
        "new: (none) -> true",
        "trace.sequence_length: 128 -> 64",
    ]
    assert changed_keys(old, new) == {"trace", "gone", "new"}
