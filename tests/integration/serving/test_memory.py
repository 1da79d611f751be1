"""Packing without waste: instances of one traced model share one copy of its weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.serving.conftest import serve
from tests.unit.serving.conftest import pack

pytestmark = pytest.mark.integration


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def server_rss_mb(minilm: Path, root: Path, instances: int, share_weights: bool) -> float:
    bundle = pack(root, {"feature-extraction": minilm}, instances, share_weights)
    for _, pid in serve(bundle, threads=1):
        return resident_mb(pid)
    raise AssertionError("the server did not start")


def test_ten_instances_cost_about_the_memory_of_one(minilm: Path, tmp_path: Path) -> None:
    """MiniLM's weights are about 90 MB: ten copies would add some 800 MB. The copies
    server is measured too, so that this test would see sharing broken."""
    one = server_rss_mb(minilm, tmp_path / "one", 1, True)
    ten = server_rss_mb(minilm, tmp_path / "ten", 10, True)
    copies = server_rss_mb(minilm, tmp_path / "copies", 10, False)
    assert ten <= 1.3 * one, (one, ten)
    assert copies >= one + 500, (one, copies)
