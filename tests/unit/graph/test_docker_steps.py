"""The steps of a docker spec: base image per processor, pack into an image, push when a
registry is set; names known before apply, ids and digests known only after."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.graph.build import build_steps, package_digest
from engine.graph.plan import KNOWN_AFTER_APPLY
from engine.graph.render import render_json, render_text
from engine.graph.step import Action, Step
from engine.spec.model import Runtime, Server, ServerModel

from .test_plan import actions, applied_state, plan_of


def docker_spec(make_spec, **runtime: object):
    spec = make_spec()
    return dataclasses.replace(spec, runtime=Runtime(kind="docker", **runtime))


def by_id(steps: list[Step]) -> dict[str, Step]:
    return {s.id: s for s in steps}


def test_a_docker_spec_builds_its_base_image_before_packing(make_spec, tmp_path: Path) -> None:
    steps = by_id(build_steps(docker_spec(make_spec), tmp_path / "cache"))
    assert list(steps) == [
        "trace/tiny@cpu",
        "image/cpu",
        "pack/tiny",
        "deploy/tiny",
        "scenario/smoke",
    ]  # no push without a registry
    assert steps["pack/tiny"].needs == ("trace/tiny@cpu", "image/cpu")
    assert steps["deploy/tiny"].needs == ("pack/tiny",)
    image = steps["image/cpu"].inputs
    assert image["base_image"] == "debian:bookworm-slim"
    assert any(r.startswith("torch==") and "+" not in r for r in image["requirements"])
    assert steps["image/cpu"].summary.startswith("base image doinfer-base:cpu-")
    pack = steps["pack/tiny"]
    assert pack.inputs["engine_code"] == package_digest()
    assert pack.summary.endswith(f"into doinfer-demo-tiny:default-{pack.fingerprint[:12]}")
    deploy = steps["deploy/tiny"].inputs
    assert (deploy["container_port"], deploy["restart"], deploy["processor"]) == (
        8080,
        "unless-stopped",
        "cpu",
    )


def test_a_registry_adds_a_push_that_deploy_waits_for(make_spec, tmp_path: Path) -> None:
    spec = docker_spec(make_spec, registry="127.0.0.1:5000/team/")
    steps = by_id(build_steps(spec, tmp_path / "cache"))
    assert steps["push/tiny"].needs == ("pack/tiny",)
    assert steps["deploy/tiny"].needs == ("pack/tiny", "push/tiny")
    assert steps["push/tiny"].inputs["registry"] == "127.0.0.1:5000/team/"
    assert steps["push/tiny"].after_apply == ("digest",)


def test_one_base_image_per_processor_and_the_spec_may_choose_it(make_spec, tmp_path: Path) -> None:
    spec = docker_spec(make_spec, base_images={"cpu": "registry.local/debian:12"})
    spec = dataclasses.replace(
        spec,
        servers=(
            *spec.servers,
            Server("other", "cpu", (ServerModel("tiny", 1),), threads=1),
        ),
    )
    steps = build_steps(spec, tmp_path / "cache")
    images = [s for s in steps if s.kind == "image"]
    assert [s.id for s in images] == ["image/cpu"]
    assert images[0].inputs["base_image"] == "registry.local/debian:12"
    # the base image names nothing of the spec: every spec on cpu shares it
    renamed = dataclasses.replace(spec, name="another", environment="prod")
    again = by_id(build_steps(renamed, tmp_path / "cache"))
    assert again["image/cpu"].fingerprint == images[0].fingerprint


def test_the_local_runtime_keeps_its_steps_and_fingerprints(make_spec, tmp_path: Path) -> None:
    steps = by_id(build_steps(make_spec(), tmp_path / "cache"))
    assert "image/cpu" not in steps
    assert "engine_code" not in steps["pack/tiny"].inputs
    assert "container_port" not in steps["deploy/tiny"].inputs


def test_ids_and_digests_are_known_after_apply_and_shown_once_known(
    make_spec, tmp_path: Path
) -> None:
    steps = build_steps(docker_spec(make_spec, registry="127.0.0.1:5000/"), tmp_path / "cache")
    created = plan_of(steps, applied_state([]))
    values = {c.step_id: c.values for c in created.changes}
    assert values["image/cpu"] == {"image_id": KNOWN_AFTER_APPLY}
    assert values["push/tiny"] == {"digest": KNOWN_AFTER_APPLY}
    assert values["deploy/tiny"] == {}
    text = render_text(created)
    assert "        image_id: (known after apply)" in text
    assert '"digest": "(known after apply)"' in render_json(created)

    state = applied_state(steps)
    state.steps["image/cpu"]["outputs"] = {"image_id": "sha256:abc"}
    unchanged = plan_of(steps, state)
    assert set(actions(unchanged).values()) == {Action.NOOP}
    assert {c.step_id: c.values for c in unchanged.changes}["image/cpu"] == {
        "image_id": "sha256:abc"
    }
    assert "image_id: sha256:abc" in render_text(unchanged, show_noop=True)


def test_a_saved_plan_keeps_what_is_known_after_apply(make_spec, tmp_path: Path) -> None:
    from engine.graph.plan import Plan

    steps = build_steps(docker_spec(make_spec), tmp_path / "cache")
    plan = plan_of(steps, applied_state([]))
    again = Plan.from_dict(plan.to_dict())
    assert [s.after_apply for s in again.steps] == [s.after_apply for s in plan.steps]
    assert [c.values for c in again.changes] == [c.values for c in plan.changes]


def test_markdown_lists_the_images_to_rebuild(make_spec, tmp_path: Path) -> None:
    from engine.graph.render import render_markdown

    steps = build_steps(docker_spec(make_spec), tmp_path / "cache")
    text = render_markdown(plan_of(steps, applied_state([])))
    section = text.split("**Images to rebuild:**\n\n")[1].split("\n\n")[0].splitlines()
    assert [line.split("`")[1] for line in section] == ["image/cpu", "pack/tiny"]
    assert "- `deploy/tiny`: 2 replica(s) start" in text  # under Servers
    unchanged = plan_of(steps, applied_state(steps))
    assert "Images to rebuild" not in render_markdown(unchanged)
