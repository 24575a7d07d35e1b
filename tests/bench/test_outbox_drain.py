"""The outbox benchmark, small: workers in a process of their own drain through the real
senders to the fakes in theirs, every row sent and every message taken, with the CPU figures;
and an idle worker's wake-up time."""

from __future__ import annotations

import pytest

from bench import outbox_drain


def test_a_small_drain_through_the_real_senders_is_counted_and_costed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    outbox_drain.main(
        [
            "--messages=30",
            "--database=sqlite",
            "--channels=sms,email",
            "--concurrency=8",
            "--smtp-connections=2",
            "--ceiling-messages=10",
        ]
    )
    out = capsys.readouterr().out
    assert "sqlite   sms: 30 drained" in out
    assert "sqlite email: 30 drained" in out
    assert out.count("the fakes took 30") == 2  # the benchmark checks it too
    assert out.count("CPU ms per message: worker") == 2
    assert "sqlite idle worker, commit to provider call: median" in out
