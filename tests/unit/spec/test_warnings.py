"""Valid specs the user should still hear about: servers reachable from the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.spec import load_spec

from .conftest import VALID


@pytest.mark.parametrize(
    ("address", "reach"),
    [
        ("0.0.0.0", "every network interface of this machine"),
        ("::", "every network interface of this machine"),
        ("10.1.2.3", "the network at 10.1.2.3"),
        ("build-box.example", "the network at build-box.example"),
    ],
)
def test_a_server_bound_beyond_loopback_is_a_warning(write, address: str, reach: str) -> None:
    path = write(
        "s.yaml", VALID.replace("{kind: local}", f"{{kind: local, bind_address: '{address}'}}")
    )
    (Path(path).parent / "tiny").mkdir(exist_ok=True)
    (warning,) = load_spec(path).warnings
    assert str(warning).startswith(
        f"{path}:11:38: warning: runtime.bind_address: {address} makes the servers "
        f"reachable from {reach}; they have no authentication"
    )


@pytest.mark.parametrize("address", [None, "127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_is_quiet(write, address: str | None) -> None:
    runtime = f"{{kind: local, bind_address: '{address}'}}" if address else "{kind: local}"
    path = write("s.yaml", VALID.replace("{kind: local}", runtime))
    (Path(path).parent / "tiny").mkdir(exist_ok=True)
    assert load_spec(path).warnings == ()
