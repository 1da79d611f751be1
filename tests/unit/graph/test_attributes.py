"""Attribute-level diffs: flattened names, what a create shows, what forces a replace."""

from __future__ import annotations

from engine.graph.attributes import Attribute, changed, created, deleted, flatten


def test_named_lists_flatten_by_name_and_maps_by_key() -> None:
    inputs = {
        "replicas": 2,
        "trace": {"sequence_length": 128},
        "models": [{"name": "qa", "instances": 2}, {"name": "ner", "instances": 1}],
        "texts": [["a", None]],
    }
    assert flatten(inputs) == {
        "replicas": 2,
        "trace.sequence_length": 128,
        "models[qa].instances": 2,
        "models[ner].instances": 1,
        "texts": [["a", None]],
    }


def test_a_create_lists_what_matters_for_its_kind_only() -> None:
    inputs = {
        "model": "qa",
        "source": {"hf": "x"},
        "versions": {"torch": "2.13.0"},
        "job_source": "hf:x",
        "processor": "cpu",
    }
    names = [a.name for a in created("trace", inputs)]
    assert names == ["model", "source.hf", "processor"]
    deploy = created(
        "deploy",
        {"replicas": 3, "port": None, "models": [{"name": "qa", "instances": 2, "task": "t"}]},
    )
    assert deploy == (
        Attribute("replicas", None, "3"),
        Attribute("models[qa].instances", None, "2"),
    )
    limited = created("deploy", {"replicas": 1, "limits": {"max_body_bytes": 4096}})
    assert Attribute("limits.max_body_bytes", None, "4096") in limited  # a spec's limits show


def test_a_delete_shows_the_old_values() -> None:
    assert deleted("push", {"registry": "r/", "spec": "s"}) == (
        Attribute("registry", '"r/"', None),
    )


def test_only_attributes_not_updatable_in_place_force_a_replacement() -> None:
    old = {"replicas": 2, "threads": 1, "models": [{"name": "qa", "instances": 1}], "port": 1}
    new = {"replicas": 3, "threads": 2, "models": [{"name": "qa", "instances": 1}]}
    attributes, unchanged = changed(old, new, frozenset({"replicas"}))
    assert attributes == (
        Attribute("replicas", "2", "3", forces=False),
        Attribute("threads", "1", "2", forces=True),
        Attribute("port", "1", None, forces=True),
    )
    assert unchanged == 1  # models[qa].instances


def test_key_attributes_are_top_level_names() -> None:
    """created() flattens only the inputs named here, so a dotted key would show nothing."""
    from engine.graph.attributes import _SCENARIO_KEYS, KEY_ATTRIBUTES

    for keys in [*KEY_ATTRIBUTES.values(), *_SCENARIO_KEYS.values()]:
        assert all("." not in k and "[" not in k for k in keys), keys
