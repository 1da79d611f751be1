"""The built-in catalog of EC2 node types a fleet may be packed onto, and the spec's overrides.

A *device* is what one copy of a model is loaded on; its *cores* are what a copy's load
uses. The three kinds of node:

- cpu (c6i, c7i, m6i): the whole node is one device; its cores are the vCPUs and its memory
  is the node's memory less `CPU_NODE_RESERVE_GIB` (the OS, the kubelet, and the model
  server's own process).
- gpu (g4dn: NVIDIA T4 16 GiB, g5: A10G 24 GiB, g6: L4 24 GiB): each GPU is a device with
  one core (a profile's `rate_per_core` on gpu is the rate one GPU sustains) and its own
  memory.
- inf (Neuron: inf1, inf2, trn1): each chip is a device, its NeuronCores are its cores:
  Inferentia has 4 NeuronCore-v1 and 8 GiB per chip, Inferentia2 and Trainium 2
  NeuronCore-v2 and 32 GiB of HBM per chip.

Prices: on-demand, Linux, us-east-1, USD per hour, as listed on
https://aws.amazon.com/ec2/pricing/on-demand/ in 2024 (the table was compiled 2026-12-02
from those list prices; AWS changes them rarely, but check before you sign a budget).
Devices, cores and memory: the EC2 instance-type pages and the AWS Neuron architecture
pages (awsdocs-neuron: inf1-arch, inferentia2, trainium), read 2026-12-02. A spec's
`catalog` adds node types or overrides these by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CATALOG_SOURCE = "aws.amazon.com/ec2/pricing/on-demand (us-east-1, Linux, on-demand), 2024 list"
CATALOG_DATE = "2026-12-02"
CPU_NODE_RESERVE_GIB = 1.0


@dataclass(frozen=True)
class NodeType:
    """A node a fleet can rent: what one device holds and what the node costs."""

    name: str
    processor: str  # cpu | gpu | inf
    devices: int
    cores_per_device: float
    memory_per_device_gib: float
    price_per_hour: float

    @property
    def memory_per_device_mib(self) -> float:
        return self.memory_per_device_gib * 1024

    @property
    def price_per_device(self) -> float:
        return self.price_per_hour / self.devices


def _cpu(name: str, vcpus: int, memory_gib: float, price: float) -> NodeType:
    return NodeType(name, "cpu", 1, vcpus, memory_gib - CPU_NODE_RESERVE_GIB, price)


def _sizes(family: str, gib_per_vcpu: int, price_per_vcpu: float) -> list[NodeType]:
    """A family whose price is linear in vCPUs up to 24xlarge (as EC2 lists them)."""
    return [
        _cpu(f"{family}.{size}", vcpus, vcpus * gib_per_vcpu, round(vcpus * price_per_vcpu, 5))
        for size, vcpus in _CPU_SIZES.items()
    ]


_CPU_SIZES = {  # size -> vCPUs
    "large": 2,
    "xlarge": 4,
    "2xlarge": 8,
    "4xlarge": 16,
    "8xlarge": 32,
    "12xlarge": 48,
    "16xlarge": 64,
    "24xlarge": 96,
}

BUILTIN: tuple[NodeType, ...] = (
    # c6i: 2 GiB per vCPU, $0.0425 per vCPU-hour
    *_sizes("c6i", 2, 0.0425),
    _cpu("c6i.32xlarge", 128, 256, 5.44),
    # c7i: 2 GiB per vCPU, $0.044625 per vCPU-hour
    *_sizes("c7i", 2, 0.044625),
    _cpu("c7i.48xlarge", 192, 384, 8.568),
    # m6i: 4 GiB per vCPU, $0.048 per vCPU-hour
    *_sizes("m6i", 4, 0.048),
    _cpu("m6i.32xlarge", 128, 512, 6.144),
    # g4dn: NVIDIA T4, 16 GiB per GPU
    NodeType("g4dn.xlarge", "gpu", 1, 1, 16, 0.526),
    NodeType("g4dn.2xlarge", "gpu", 1, 1, 16, 0.752),
    NodeType("g4dn.4xlarge", "gpu", 1, 1, 16, 1.204),
    NodeType("g4dn.12xlarge", "gpu", 4, 1, 16, 3.912),
    # g5: NVIDIA A10G, 24 GiB per GPU
    NodeType("g5.xlarge", "gpu", 1, 1, 24, 1.006),
    NodeType("g5.2xlarge", "gpu", 1, 1, 24, 1.212),
    NodeType("g5.4xlarge", "gpu", 1, 1, 24, 1.624),
    NodeType("g5.12xlarge", "gpu", 4, 1, 24, 5.672),
    NodeType("g5.48xlarge", "gpu", 8, 1, 24, 16.288),
    # g6: NVIDIA L4, 24 GiB per GPU
    NodeType("g6.xlarge", "gpu", 1, 1, 24, 0.8048),
    NodeType("g6.2xlarge", "gpu", 1, 1, 24, 0.9776),
    NodeType("g6.4xlarge", "gpu", 1, 1, 24, 1.3232),
    NodeType("g6.12xlarge", "gpu", 4, 1, 24, 4.6016),
    NodeType("g6.48xlarge", "gpu", 8, 1, 24, 13.3504),
    # inf1: Inferentia chips of 4 NeuronCore-v1 and 8 GiB each
    NodeType("inf1.xlarge", "inf", 1, 4, 8, 0.228),
    NodeType("inf1.2xlarge", "inf", 1, 4, 8, 0.362),
    NodeType("inf1.6xlarge", "inf", 4, 4, 8, 1.18),
    NodeType("inf1.24xlarge", "inf", 16, 4, 8, 4.721),
    # inf2: Inferentia2 chips of 2 NeuronCore-v2 and 32 GiB HBM each
    NodeType("inf2.xlarge", "inf", 1, 2, 32, 0.7582),
    NodeType("inf2.8xlarge", "inf", 1, 2, 32, 1.9679),
    NodeType("inf2.24xlarge", "inf", 6, 2, 32, 6.4906),
    NodeType("inf2.48xlarge", "inf", 12, 2, 32, 12.9813),
    # trn1: Trainium chips of 2 NeuronCore-v2 and 32 GiB HBM each (torch-neuronx, as inf2)
    NodeType("trn1.2xlarge", "inf", 1, 2, 32, 1.34375),
    NodeType("trn1.32xlarge", "inf", 16, 2, 32, 21.50),
)


def catalog(overrides: Iterable[NodeType] = ()) -> dict[str, NodeType]:
    """The built-in catalog by name, with the spec's node types added or replacing by name."""
    merged = {t.name: t for t in BUILTIN}
    merged.update((t.name, t) for t in overrides)
    return merged
