"""The test API server's field ownership and selectors, checked directly (fast, no HTTP):
the cases the contract tests reach only indirectly."""

from __future__ import annotations

import pytest

from tests.kube import ssa
from tests.kube.selectors import SelectorError, field_matcher, label_matcher

KIND = "Deployment"


def _container(pod: dict | None = None, spec: dict | None = None, **fields: object) -> dict:
    """A Deployment's stripped content with one container `server`."""
    pod_spec = {**(pod or {}), "containers": [{"name": "server", **fields}]}
    return {"spec": {**(spec or {}), "template": {"spec": pod_spec}}}


def _apply(live: dict, applied: dict, entries: list[ssa.Entry], manager: str, force: bool = False):
    return ssa.apply(live, applied, entries, manager, force, KIND, "apps/v1", "t")


def test_kubernetes_fields_v1_round_trips_with_item_markers() -> None:
    paths = ssa.field_set(_container(image="a", ports=[{"containerPort": 80}]), KIND)
    trie = ssa.to_fields_v1(paths)
    item = trie["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"server"}']
    assert item["."] == {} and item["f:image"] == {}
    assert item["f:ports"]['k:{"containerPort":80,"protocol":"TCP"}'] == {
        ".": {},
        "f:containerPort": {},
    }
    assert ssa.from_fields_v1(trie) == paths


def test_kubernetes_conflicts_with_two_fields_are_listed_like_the_api_server() -> None:
    live, entries = _apply({}, _container(spec={"replicas": 1}, image="a"), [], "kubectl")
    with pytest.raises(ssa.ConflictError) as info:
        _apply(live, _container(spec={"replicas": 2}, image="b"), entries, "doinfer")
    assert info.value.message() == (
        'Apply failed with 2 conflicts: conflicts with "kubectl" using apps/v1:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="server"].image'
    )


def test_kubernetes_an_item_another_manager_shares_keeps_its_fields_and_key() -> None:
    env = [{"name": "A", "value": "1"}]
    live, entries = _apply({}, _container(image="a", env=env), [], "doinfer")
    live, entries = _apply(live, _container(env=env), entries, "sidecar-injector")
    live, entries = _apply(live, _container(image="a"), entries, "doinfer")
    container = live["spec"]["template"]["spec"]["containers"][0]
    assert container == {"name": "server", "image": "a", "env": [{"name": "A", "value": "1"}]}
    live, _ = _apply(live, {"metadata": {"labels": {"x": "y"}}}, entries, "sidecar-injector")
    assert live["spec"]["template"]["spec"]["containers"] == [{"name": "server", "image": "a"}]


def test_kubernetes_atomic_lists_and_maps_are_replaced_whole() -> None:
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists"}, {"key": "b"}]
    live, entries = _apply({}, _container(args=["--a", "--b"]), [], "doinfer")
    live["spec"]["template"]["spec"]["tolerations"] = tolerations
    live, entries = _apply(
        live,
        _container(pod={"tolerations": tolerations[:1]}),
        entries,
        "doinfer",
    )
    assert live["spec"]["template"]["spec"]["tolerations"] == tolerations[:1]
    paths = ssa.field_set({"spec": {"selector": {"matchLabels": {"a": "b"}}}}, KIND)
    assert paths == {("f:spec", "f:selector")}


def test_kubernetes_label_selector_forms() -> None:
    assert label_matcher("a notin (x)")({})  # a missing key is not in any set
    assert not label_matcher("a in (x)")({})
    assert label_matcher("a in (x, y),b!=z")({"a": "y"})
    assert label_matcher("")({"anything": "x"})
    with pytest.raises(SelectorError):
        label_matcher("a in x")


def test_kubernetes_field_selectors_answer_only_the_kinds_field_labels() -> None:
    event = {"involvedObject": {"name": "web-1", "kind": "Pod"}, "metadata": {"name": "e"}}
    assert field_matcher("involvedObject.name=web-1,involvedObject.kind==Pod", "events")(event)
    assert not field_matcher("metadata.name!=e,", "events")(event)
    with pytest.raises(SelectorError, match=r"field label not supported: spec\.replicas"):
        field_matcher("spec.replicas=1", "deployments")
