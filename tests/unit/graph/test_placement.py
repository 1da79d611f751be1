"""Where traces run: on a host of their processor, spread by load, shown by the plan."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from engine.graph.build import build_steps
from engine.graph.plan import Plan
from engine.graph.render import render_json, render_markdown, render_text
from engine.spec.model import Host, Server, ServerModel, Spec
from engine.state import State

from .test_plan import applied_state, plan_of

HOSTS = (
    Host("gpu-a", "10.0.0.7", "gpu", user="ec2-user", identity="keys/id", max_parallel=2),
    Host("gpu-b", "10.0.0.8", "gpu", known_hosts="~/.ssh/fleet_hosts"),
    Host("inf-a", "10.0.0.9", "inf", port=2222),
)


def gpu_spec(make_spec, hosts: tuple[Host, ...] = HOSTS) -> Spec:
    """Three gpu models, one inf model, and the cpu model of the base spec."""
    spec = make_spec(scenarios=False)
    tiny = spec.models[0]
    models = tuple(dataclasses.replace(tiny, name=f"m{i}") for i in range(4))
    servers = (
        Server("gpus", "gpu", tuple(ServerModel(f"m{i}") for i in range(3))),
        Server("infs", "inf", (ServerModel("m3"),)),
    )
    return dataclasses.replace(
        spec, models=(*spec.models, *models), servers=(*spec.servers, *servers), hosts=hosts
    )


def traces(steps: list) -> dict:
    return {s.id: s for s in steps if s.kind == "trace"}


def test_traces_go_to_hosts_of_their_processor_by_load(make_spec, tmp_path: Path) -> None:
    steps = traces(build_steps(gpu_spec(make_spec), tmp_path / "cache"))
    where = {i: (s.runs_on or {}).get("name") for i, s in steps.items()}
    # gpu-a has two slots, gpu-b one: a, then b (a is half full), then a again
    assert where == {
        "trace/tiny@cpu": None,  # no cpu host: traced here
        "trace/m0@gpu": "gpu-a",
        "trace/m1@gpu": "gpu-b",
        "trace/m2@gpu": "gpu-a",
        "trace/m3@inf": "inf-a",
    }
    assert (steps["trace/m0@gpu"].pool, steps["trace/m0@gpu"].pool_limit) == ("host/gpu-a", 2)
    assert (steps["trace/m1@gpu"].pool, steps["trace/m1@gpu"].pool_limit) == ("host/gpu-b", 1)
    assert steps["trace/tiny@cpu"].pool is None
    runs_on = steps["trace/m0@gpu"].runs_on or {}
    assert runs_on["identity"] == str(tmp_path / "keys" / "id")  # against the spec's directory
    assert (steps["trace/m1@gpu"].runs_on or {})["known_hosts"] == str(
        Path("~/.ssh/fleet_hosts").expanduser()
    )


def test_a_host_is_not_part_of_what_a_trace_is(make_spec, tmp_path: Path) -> None:
    """Moving traces to another host changes no fingerprint: nothing is re-traced,
    repacked or redeployed for it."""
    before = build_steps(gpu_spec(make_spec), tmp_path / "cache")
    moved = tuple(dataclasses.replace(h, address="192.168.0.1") for h in HOSTS)
    after = build_steps(gpu_spec(make_spec, moved), tmp_path / "cache")
    assert [s.fingerprint for s in before] == [s.fingerprint for s in after]
    assert not plan_of(after, applied_state(before)).has_changes


def test_the_plan_shows_where_each_trace_runs(make_spec, tmp_path: Path) -> None:
    plan = plan_of(build_steps(gpu_spec(make_spec), tmp_path / "cache"), State("demo", "default"))
    text = render_text(plan)
    line = next(line for line in text.splitlines() if "trace/m0@gpu" in line)
    assert line.endswith(", on host gpu-a (ec2-user@10.0.0.7:22)")
    assert "on host inf-a (10.0.0.9:2222)" in text
    cpu = next(line for line in text.splitlines() if "trace/tiny@cpu" in line)
    assert "on host" not in cpu
    assert "on host gpu-b (10.0.0.8:22)" in render_markdown(plan)
    changes = {c["step"]: c for c in json.loads(render_json(plan))["changes"]}
    assert changes["trace/m2@gpu"]["runs_on"] == "host gpu-a (ec2-user@10.0.0.7:22)"
    assert changes["trace/tiny@cpu"]["runs_on"] is None


def test_a_saved_plan_keeps_its_hosts(make_spec, tmp_path: Path) -> None:
    plan = plan_of(build_steps(gpu_spec(make_spec), tmp_path / "cache"), State("demo", "default"))
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.steps == plan.steps
    assert again.changes == plan.changes


def test_models_of_a_spec_without_hosts_trace_here(make_spec, tmp_path: Path) -> None:
    steps = traces(build_steps(make_spec(), tmp_path / "cache"))
    assert [(s.runs_on, s.pool) for s in steps.values()] == [(None, None)]
