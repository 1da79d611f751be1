"""Updates without an outage on the local runtime: while `doinfer apply` replaces the
servers behind a replica's URL (a change of batching settings), clients that loop requests
on it, over one keep-alive connection and over a new connection each time, see no failed
request, and the URL is the same before and after. And a replica whose pid file is lost
is still found, by the labels in its environment, and stopped by destroy.

Real parts: a tiny BERT traced here, real uvicorn replicas, real `doinfer apply`
subprocesses, real HTTP from threads.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.test_local_apply import doinfer, server_pids
from tests.tiny_models import build_tiny_model

pytestmark = pytest.mark.integration

SPEC = """\
apiVersion: doinfer/v1
name: rolling
models:
  - name: fe
    source: path:models/fe
    task: feature-extraction
    trace: {{sequence_length: 16, batch_size: 1}}
servers:
  - name: web
    processor: cpu
    models: [{{model: fe, instances: 1}}]
    replicas: 1
    threads: 1
    batching: {{max_delay_ms: {delay}}}
runtime: {{kind: local}}
"""
PATH = "/predictions/fe-0?seq_0=the+model+was+good"


@dataclass
class Loop:
    """A client that sends requests one after another until stopped, counting failures.

    The 5 ms between requests leaves a kept-alive connection idle between them, the
    moment a server that closed idle connections at once would close it under a request.
    """

    url: str
    keep_alive: bool
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        while not self.stop.is_set():
            try:
                if self.keep_alive:  # reconnects by itself after a Connection: close
                    connection.request("GET", PATH)
                    response = connection.getresponse()
                    status, body = response.status, response.read()
                else:
                    with urllib.request.urlopen(self.url + PATH, timeout=30) as response:
                        status, body = response.status, response.read()
                if status != 200 or "embedding" not in json.loads(body):
                    self.failures.append(f"{status}: {body[:200]!r}")
                else:
                    self.answered += 1
            except Exception as exc:  # every failure counts, whatever it is
                self.failures.append(f"{type(exc).__name__}: {exc}")
                connection.close()
            time.sleep(0.005)  # leave the CPU to the servers starting meanwhile


def replicas_list(state: Path, spec: Path) -> list[dict]:
    status = json.loads(doinfer(state, "status", str(spec), "--format", "json").stdout)
    return status["replicas"]


def replicas(state: Path, spec: Path) -> dict[int, dict]:
    return {r["replica"]: r for r in replicas_list(state, spec)}


def test_changing_batching_replaces_servers_without_a_failed_request(tmp_path: Path) -> None:
    build_tiny_model(tmp_path / "models" / "fe", "feature-extraction")
    spec, state = tmp_path / "rolling.yaml", tmp_path / "state"
    spec.write_text(SPEC.format(delay=2))
    try:
        doinfer(state, "apply", str(spec), "--yes")
        before = replicas(state, spec)
        assert [r["state"] for r in before.values()] == ["running"]
        loops = [Loop(before[0]["url"], keep_alive=True), Loop(before[0]["url"], keep_alive=False)]
        threads = [threading.Thread(target=loop.run) for loop in loops]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1)
            answered_before = [loop.answered for loop in loops]
            spec.write_text(SPEC.format(delay=3))
            result = doinfer(state, "apply", str(spec), "--yes")
            time.sleep(1)
        finally:
            for loop in loops:
                loop.stop.set()
            for thread in threads:
                thread.join(timeout=60)
        for loop in loops:
            assert loop.failures == [], loop
        assert "-/+ deploy/web" in result.stdout
        assert "models[fe].max_delay_ms: 2 -> 3" in result.stdout
        assert "roll: each new replica is ready before an old one stops" in result.stdout
        after = replicas(state, spec)
        assert [r["url"] for r in after.values()] == [r["url"] for r in before.values()]
        assert [r["state"] for r in after.values()] == ["running"]
        assert all(after[i]["detail"] != before[i]["detail"] for i in after)  # new processes
        assert all(
            loop.answered > count for loop, count in zip(loops, answered_before, strict=True)
        )
        assert len(server_pids(state)) == 1  # the old server is gone

        # a corrupt pid file: the server behind it is an orphan no record knows
        orphan = int(after[0]["detail"].split()[1])
        (state / "local" / "rolling" / "default" / "web" / "replica-0.json").write_text("{]")
        status = replicas_list(state, spec)
        assert [(r["replica"], r["state"]) for r in status] == [
            (0, "missing"),  # the state's record, without its pid file
            (0, "extra"),  # the server, found by its labels
        ]
        assert status[1]["detail"] == f"pid {orphan}, unrecorded"
        plan = doinfer(state, "plan", str(spec), "--detailed-exitcode", check=False)
        assert plan.returncode == 2 and f"replica 0 (pid {orphan}, unrecorded) is extra" in (
            plan.stdout
        )
        doinfer(state, "destroy", str(spec), "--yes")
        assert server_pids(state) == set()  # the orphan too
    finally:
        doinfer(state, "destroy", str(spec), "--yes", check=False)
    assert server_pids(state) == set()
