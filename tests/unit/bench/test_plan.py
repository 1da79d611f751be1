"""Scenarios into client plans, and the plan/result JSON that crosses process boundaries."""

from __future__ import annotations

import json
import time

import pytest

from engine.bench.load import Client
from engine.bench.plan import START_DELAY_S, ClientPlan, ClientResult, client_plans
from engine.bench.targets import Target
from engine.spec.model import Scenario

TARGETS = [
    Target("http://127.0.0.1:1", "web", r, f"m-{i}", "m", "feature-extraction")
    for r in range(2)
    for i in range(2)
]


def test_a_benchmark_gets_one_plan_per_client_with_the_rate_each() -> None:
    scenario = Scenario(
        "load", "benchmark", duration_s=5, warmup_s=1, clients=3, rate=40, arrivals="constant"
    )
    before = time.time()
    plans = client_plans(scenario, TARGETS, seed=7)
    assert [(p.client, p.clients, p.mode, p.rate) for p in plans] == [
        (0, 3, "open", 40),
        (1, 3, "open", 40),
        (2, 3, "open", 40),
    ]
    assert len({p.seed for p in plans}) == 3  # clients do not draw the same arrivals
    assert len({p.start_at for p in plans}) == 1  # and start together
    assert plans[0].start_at >= before + START_DELAY_S
    assert (plans[0].duration_s, plans[0].warmup_s, plans[0].arrivals) == (5, 1, "constant")


def test_a_scenarios_corpus_reaches_every_client_and_survives_json() -> None:
    texts = (("short", None), ("a question", "its context"))
    scenario = Scenario("c", "benchmark", concurrency=2, clients=2, texts=texts)
    plans = client_plans(scenario, TARGETS)
    assert [p.texts for p in plans] == [[["short", None], ["a question", "its context"]]] * 2
    again = ClientPlan.from_dict(json.loads(json.dumps(plans[0].to_dict())))
    assert again.texts == plans[0].texts


def test_closed_loop_and_probes() -> None:
    (closed,) = client_plans(Scenario("c", "benchmark", concurrency=8), TARGETS)
    assert (closed.mode, closed.concurrency, closed.rate) == ("closed", 8, 0.0)
    (probe,) = client_plans(Scenario("r", "random", requests=5, clients=4), TARGETS)
    assert (probe.mode, probe.requests, probe.start_at) == ("random", 5, None)


def test_weights_are_resolved_per_target() -> None:
    scenario = Scenario("r", "random", weights={"web/1": 3, "web/0/m-0": 1})
    (plan,) = client_plans(scenario, TARGETS)
    assert plan.weights == [1.0, 0.0, 3.0, 3.0]


def test_a_benchmark_without_a_load_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="needs concurrency"):
        client_plans(Scenario("load", "benchmark"), TARGETS)
    with pytest.raises(ValueError, match="no targets"):
        client_plans(Scenario("smoke", "sequential"), [])


def test_plan_and_result_round_trip_through_json() -> None:
    (plan,) = client_plans(Scenario("c", "benchmark", rate=5, weights={"web": 1}), TARGETS)
    again = ClientPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    result = ClientResult(0, ["web/0/m-0"], [[0, 0.5, 20.0, 200, ""]], 1.0, 2.0, 1, {"max_ms": 1})
    assert ClientResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_a_plan_with_unknown_fields_is_refused() -> None:
    data = ClientPlan("s", "sequential", TARGETS).to_dict() | {"ratee": 5}
    with pytest.raises(ValueError, match=r"unknown plan field.*ratee"):
        ClientPlan.from_dict(data)


@pytest.mark.parametrize(
    "text", [[], [""], [None], ["a", "b", "c"], ["a", 3], "a string, not a list"]
)
def test_a_malformed_text_in_a_plan_is_a_clear_error(text) -> None:
    with pytest.raises(ValueError, match=r"texts\[1\] is .*: a text is \[seq_0\]"):
        ClientPlan("c", "closed", TARGETS, texts=[["fine"], text])


def test_a_large_corpus_costs_no_requests_until_they_are_sent() -> None:
    """Requests are built per (target, text) when first drawn, not for every pair."""
    texts: list[list[str | None]] = [[f"question {i}", None] for i in range(10_000)]
    client = Client(ClientPlan("c", "closed", TARGETS * 50, texts=texts))
    assert client.prepared == {}
    chosen = [client._next() for _ in range(100)]
    assert len(client.prepared) == len({(index, r.data) for index, r in chosen})
    assert {index for index, _ in chosen} <= set(range(len(TARGETS) * 50))
    assert len({request.data for _, request in chosen}) > 90
