"""Which accelerators this machine has: a gpu or inf model traced or served here needs one.

A device node is the cheapest honest sign (no CUDA or Neuron library needs importing).
"""

from __future__ import annotations

import os

LOCAL_DEVICES = {"gpu": "/dev/nvidia0", "inf": "/dev/neuron0"}


def has_local_device(processor: str) -> bool:
    """True for cpu; for gpu and inf, whether this machine has the device node."""
    device = LOCAL_DEVICES.get(processor)
    return device is None or os.path.exists(device)
