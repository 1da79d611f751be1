"""The on-disk contracts shared by the trace step, the remote trace job and the server."""

from engine.artifacts import padded_lengths


def test_padded_lengths_are_powers_of_two_up_to_the_traced_length() -> None:
    assert padded_lengths(128) == [16, 32, 64, 128]
    assert padded_lengths(384) == [16, 32, 64, 128, 256, 384]


def test_padded_lengths_of_a_short_trace_is_that_length_alone() -> None:
    assert padded_lengths(16) == [16]
    assert padded_lengths(8) == [8]
    assert padded_lengths(20) == [16, 20]
