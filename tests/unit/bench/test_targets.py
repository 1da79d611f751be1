from __future__ import annotations

import pytest

from engine.bench.targets import model_of, replica_of, selects, weigh
from engine.steps.deployed import targets_from_deploys

KEYS = ["qa/0/bert-0", "qa/0/bert-1", "qa/1/bert-0", "qa/1/bert-1", "ner/0/roberta-0"]


def test_a_key_selects_a_server_a_replica_or_an_instance() -> None:
    assert [k for k in KEYS if selects("qa", k)] == KEYS[:4]
    assert [k for k in KEYS if selects("qa/1", k)] == ["qa/1/bert-0", "qa/1/bert-1"]
    assert [k for k in KEYS if selects("*/*/bert-0", k)] == ["qa/0/bert-0", "qa/1/bert-0"]
    assert [k for k in KEYS if selects("*", k)] == KEYS
    assert not selects("q", "qa/0/bert-0")  # a whole part, not a prefix of it


def test_weights_are_per_target_and_unselected_targets_get_none() -> None:
    assert weigh(KEYS, {"qa/0": 3, "ner": 1}) == [3.0, 3.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"qa/2": 1}, "weight key 'qa/2' selects no target"),
        ({"qa": 1, "*/1/*": 2}, "weight keys 'qa' and '*/1/*' both select qa/1/bert-0"),
        ({"qa": 0}, "give no target a share"),
    ],
)
def test_bad_weight_maps(weights: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        weigh(KEYS, weights)


def test_key_parts() -> None:
    assert model_of("qa/0/bert-base-12") == "bert-base"
    assert replica_of("qa/0/bert-base-12") == "qa/0"


def test_targets_from_deploys() -> None:
    outputs = {
        "replicas": [{"index": 0, "url": "http://a"}, {"index": 1, "url": "http://b"}],
        "models": [{"name": "m", "task": "feature-extraction", "instances": 2}],
    }
    targets = targets_from_deploys({"deploy/web": outputs})
    assert [t.key for t in targets] == ["web/0/m-0", "web/0/m-1", "web/1/m-0", "web/1/m-1"]
    assert targets[2].url == "http://b"
