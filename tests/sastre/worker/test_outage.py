"""How often Redis is tried while it is away (`sastre.worker.outage.Outage`), on a fake clock:
after each failed try, a wait twice the one before, from when that try ended."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sastre.worker.outage import MAX_RETRY_EVERY, Outage

BROKEN = ConnectionError("no answer")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def outage(clock: Clock) -> Outage:
    return Outage("the shared rate limits", "each process limits its own sends", clock=clock)


def test_redis_that_answers_is_always_tried() -> None:
    watch = outage(Clock())
    assert watch.may_try()
    watch.succeeded()
    assert watch.may_try()


def test_after_each_failure_the_wait_doubles_from_when_the_try_ended() -> None:
    clock = Clock()
    watch = outage(clock)
    waits = []
    for _ in range(6):
        clock.now += 0.25  # the try waited for its timeout
        watch.failed(BROKEN)
        waited = 0.0
        while not watch.may_try():
            clock.now += 0.5
            waited += 0.5
        waits.append(waited)
    assert waits == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_redis_back_is_tried_every_time_again() -> None:
    clock = Clock()
    watch = outage(clock)
    watch.failed(BROKEN)
    watch.failed(BROKEN)
    clock.now += 4.0
    assert watch.may_try()
    watch.succeeded()
    assert not watch.down
    watch.failed(BROKEN)  # away again: the first wait again
    clock.now += 2.0
    assert watch.may_try()


@given(st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=1, max_size=30))
def test_a_try_never_waits_longer_than_the_most(gaps: list[float]) -> None:
    clock = Clock()
    watch = outage(clock)
    for gap in gaps:
        watch.failed(BROKEN)
        clock.now += gap
    clock.now += MAX_RETRY_EVERY
    assert watch.may_try()


def test_while_one_caller_tries_the_others_wait_for_its_outcome() -> None:
    """A Redis that hangs costs the caller that tries its timeout, not every caller at once."""
    clock = Clock()
    watch = outage(clock)
    watch.failed(BROKEN)
    clock.now += 2.0
    assert watch.may_try()
    assert not watch.may_try()  # the try is still out
    clock.now += 0.25
    watch.failed(BROKEN)
    clock.now += 2.0
    assert not watch.may_try()  # the next wait is 4 s, from when that try ended


def test_a_user_that_must_not_wait_long_tries_at_most_every_so_often() -> None:
    """The web processes' wake-ups (`publish_wakeups`): the workers are back on Redis within
    seconds of its return, and wake-ups not published meanwhile are lost."""
    clock = Clock()
    watch = Outage("worker wake-ups", "poll", retry_every=1.0, max_retry_every=1.0, clock=clock)
    for _ in range(10):
        assert watch.may_try()
        watch.failed(BROKEN)
        clock.now += 0.9
        assert not watch.may_try()
        clock.now += 0.1
    assert watch.may_try()
