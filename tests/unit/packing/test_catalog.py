"""The built-in catalog's devices as AWS documents them, and overrides by name."""

from __future__ import annotations

import dataclasses

import pytest

from engine.packing.catalog import BUILTIN, CPU_NODE_RESERVE_GIB, NodeType, catalog

BY_NAME = {t.name: t for t in BUILTIN}


@pytest.mark.parametrize(
    ("name", "processor", "devices", "cores", "memory_gib"),
    [
        ("inf1.xlarge", "inf", 1, 4, 8),  # 1 Inferentia: 4 NeuronCore-v1, 8 GiB
        ("inf1.6xlarge", "inf", 4, 4, 8),
        ("inf1.24xlarge", "inf", 16, 4, 8),
        ("inf2.xlarge", "inf", 1, 2, 32),  # Inferentia2: 2 NeuronCore-v2, 32 GiB HBM
        ("inf2.48xlarge", "inf", 12, 2, 32),
        ("trn1.32xlarge", "inf", 16, 2, 32),
        ("g4dn.12xlarge", "gpu", 4, 1, 16),  # 4 T4
        ("g5.48xlarge", "gpu", 8, 1, 24),  # 8 A10G
        ("g6.xlarge", "gpu", 1, 1, 24),  # 1 L4
        ("c6i.large", "cpu", 1, 2, 4 - CPU_NODE_RESERVE_GIB),  # the node is one device
        ("m6i.32xlarge", "cpu", 1, 128, 512 - CPU_NODE_RESERVE_GIB),
        ("c7i.48xlarge", "cpu", 1, 192, 384 - CPU_NODE_RESERVE_GIB),
    ],
)
def test_devices_cores_and_memory(
    name: str, processor: str, devices: int, cores: float, memory_gib: float
) -> None:
    t = BY_NAME[name]
    assert (t.processor, t.devices, t.cores_per_device, t.memory_per_device_gib) == (
        processor,
        devices,
        cores,
        memory_gib,
    )


def test_every_family_of_the_issue_is_there_with_a_price() -> None:
    families = {t.name.split(".")[0] for t in BUILTIN}
    assert families == {"c6i", "c7i", "m6i", "g4dn", "g5", "g6", "inf1", "inf2", "trn1"}
    assert all(t.price_per_hour > 0 for t in BUILTIN)
    assert BY_NAME["c6i.xlarge"].price_per_hour == 0.17  # linear in vCPUs within a family
    assert BY_NAME["inf2.xlarge"].price_per_hour == 0.7582


def test_the_spec_adds_and_overrides_by_name() -> None:
    cheaper = dataclasses.replace(BY_NAME["inf2.xlarge"], price_per_hour=0.5)
    mine = NodeType("my-cpu", "cpu", 1, 8, 30, 0.2)
    merged = catalog([cheaper, mine])
    assert merged["inf2.xlarge"].price_per_hour == 0.5
    assert merged["my-cpu"] == mine
    assert merged["g5.xlarge"] == BY_NAME["g5.xlarge"]
    assert len(merged) == len(BUILTIN) + 1
