"""The listening-socket handover: offered once serving, to every client, until stopping."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from engine.serving.handover import offer_listener, take_listener


def wait_for(path: Path, present: bool = True) -> None:
    deadline = time.monotonic() + 5
    while path.exists() != present:
        assert time.monotonic() < deadline, f"{path} exists: {path.exists()}"
        time.sleep(0.02)


def test_the_listener_is_offered_once_serving_and_until_stopping(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    path = tmp_path / "h.sock"
    serving, stopping = threading.Event(), threading.Event()
    offer_listener(path, listener, serving.is_set, stopping.is_set)
    time.sleep(0.2)
    assert not path.exists() and take_listener(path, timeout_s=0.3) is None  # not serving: none
    serving.set()
    wait_for(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with socket.socket(socket.AF_UNIX) as rude:  # a client that leaves at once
        rude.connect(str(path))
    for _ in range(2):  # ... does not end the offer
        taken = take_listener(path)
        assert taken is not None
        assert taken.getsockname() == listener.getsockname()
        with socket.create_connection(listener.getsockname()):  # the same accept queue
            accepted, _ = taken.accept()
            accepted.close()
        taken.close()
    listener.close()
    assert take_listener(path) is None  # a drained listener is not offered
    stopping.set()
    wait_for(path, present=False)
