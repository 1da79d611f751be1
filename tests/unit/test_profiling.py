"""How a profile's rate is found: the ladder of closed-loop runs and where it stops."""

from __future__ import annotations

from engine.profiles import LoadStep
from engine.profiling import CONCURRENCY, climb


def ladder_of(
    rates: dict[int, tuple[float, float]], lines: list[str] | None = None
) -> list[LoadStep]:
    """The runs climb makes when concurrency c gives rates[c] = (requests/s, p99 ms)."""
    ran: list[int] = []

    def run(concurrency: int) -> LoadStep:
        ran.append(concurrency)
        rate, p99 = rates[concurrency]
        return LoadStep(concurrency, rate, p99, 0)

    lines = [] if lines is None else lines
    ladder = climb(run, 100.0, lines.append)
    assert [s.concurrency for s in ladder] == ran and len(lines) == len(ran)
    return ladder


def test_the_ladder_stops_at_the_first_run_over_the_objective() -> None:
    lines: list[str] = []
    ladder = ladder_of({1: (40, 30), 2: (60, 50), 4: (75, 120), 8: (80, 300)}, lines)
    assert [s.concurrency for s in ladder] == [1, 2, 4]
    assert lines[-1].endswith("p99  120.0 ms  (over the objective)")
    assert not lines[1].endswith("(over the objective)")


def test_one_flat_run_is_noise_two_say_the_core_is_full() -> None:
    rates = {1: (40, 10), 2: (39, 12), 4: (60, 20), 8: (61, 40), 16: (62, 80), 32: (90, 90)}
    ladder = ladder_of(rates)
    assert [s.concurrency for s in ladder] == [1, 2, 4, 8, 16]  # 2 was flat, then 4 gained


def test_the_ladder_is_bounded() -> None:
    rates = {c: (10.0 * 2**i, 10) for i, c in enumerate(CONCURRENCY)}
    assert [s.concurrency for s in ladder_of(rates)] == list(CONCURRENCY)
