"""The contract between a scenario and its load clients, wherever the clients run.

A ClientPlan says what one client does; a ClientResult is what it reports back. Both are
plain JSON, so the same client (`python -m engine.bench.worker`) can run as a local process,
in a container or as a Kubernetes Job, and the scenario merges whatever results come back.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from engine.bench.targets import Target, weigh

if TYPE_CHECKING:  # a client process needs no spec (importing it costs 0.1 s of startup)
    from engine.spec.model import Scenario

Mode = Literal["sequential", "random", "closed", "open"]

START_DELAY_S = 1.0  # time the client processes get to start before the load begins


@dataclass(frozen=True)
class ClientPlan:
    scenario: str
    mode: Mode
    targets: list[Target]
    weights: list[float] | None = None  # one per target; None: uniform
    seq_0: str | None = None
    seq_1: str | None = None
    # a corpus, [seq_0, seq_1 or None] each: every request takes one at random instead of
    # seq_0/seq_1 (a server that pads only to a batch's longest input must be measured on
    # texts of varied length: one text repeated makes batching look better than it is)
    texts: list[list[str | None]] | None = None
    protocol: Literal["predictions", "v2"] = "predictions"  # GET /predictions or POST /v2
    requests: int = 0  # random
    interval_ms: float = 0.0  # random
    duration_s: float = 0.0  # closed, open: the measured window
    warmup_s: float = 0.0  # closed, open: load before the window, not recorded
    concurrency: int = 1  # closed
    rate: float = 0.0  # open: requests/s of this client
    arrivals: Literal["poisson", "constant"] = "poisson"  # open
    client: int = 0  # this client's index
    clients: int = 1  # how many clients share the scenario
    seed: int = 0
    start_at: float | None = None  # wall-clock time (epoch s) the load begins; None: now

    def __post_init__(self) -> None:
        for number, text in enumerate(self.texts or []):
            if not (
                isinstance(text, list | tuple)
                and len(text) in (1, 2)
                and isinstance(text[0], str)
                and text[0]
                and (len(text) == 1 or text[1] is None or isinstance(text[1], str))
            ):
                raise ValueError(
                    f"texts[{number}] is {text!r}: a text is [seq_0] or [seq_0, seq_1], "
                    f"seq_0 a non-empty string, seq_1 a string or null"
                )

    def corpus(self) -> list[tuple[str | None, str | None]]:
        """The (seq_0, seq_1) pairs requests draw from: the texts, or seq_0/seq_1 alone."""
        if not self.texts:
            return [(self.seq_0, self.seq_1)]
        return [(text[0], text[1] if len(text) > 1 else None) for text in self.texts]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = [t.to_dict() for t in self.targets]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientPlan:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown plan field(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        values["targets"] = [Target(**t) for t in data["targets"]]
        return cls(**values)


@dataclass
class ClientResult:
    client: int
    targets: list[str]  # target keys; samples refer to them by index
    samples: list[list[Any]]  # [target index, start s, latency ms, status, error]
    started_at: float  # wall-clock time measuring began
    duration_s: float  # from the start of measuring to the last answer (at least the window)
    sent: int = 0  # requests sent in the measured window
    lag: dict[str, float] = field(default_factory=dict)  # open loop: dispatch lag, ms
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientResult:
        return cls(**data)


def client_plans(
    scenario: Scenario, targets: list[Target], seed: int | None = None
) -> list[ClientPlan]:
    """One plan per client. Probes (sequential, random) always have one client."""
    if not targets:
        raise ValueError(f"scenario {scenario.name}: no targets to send requests to")
    weights = weigh([t.key for t in targets], scenario.weights) if scenario.weights else None
    base = seed if seed is not None else random.randrange(2**31)
    common: dict[str, Any] = {
        "scenario": scenario.name,
        "targets": targets,
        "weights": weights,
        "seq_0": scenario.seq_0,
        "seq_1": scenario.seq_1,
        "texts": [list(text) for text in scenario.texts] if scenario.texts else None,
        "protocol": scenario.protocol,
    }
    if scenario.kind == "sequential":
        return [ClientPlan(mode="sequential", seed=base, **common)]
    if scenario.kind == "random":
        return [
            ClientPlan(
                mode="random",
                requests=scenario.requests,
                interval_ms=scenario.interval_ms,
                seed=base,
                **common,
            )
        ]
    if scenario.rate is None and scenario.concurrency is None:
        raise ValueError(
            f"scenario {scenario.name}: a benchmark needs concurrency (closed loop) "
            f"or rate (open loop)"
        )
    start_at = time.time() + START_DELAY_S
    return [
        ClientPlan(
            mode="open" if scenario.rate else "closed",
            duration_s=scenario.duration_s,
            warmup_s=scenario.warmup_s,
            concurrency=scenario.concurrency or 1,
            rate=scenario.rate or 0.0,
            arrivals=scenario.arrivals,
            client=i,
            clients=scenario.clients,
            seed=base + i,
            start_at=start_at,
            **common,
        )
        for i in range(scenario.clients)
    ]
