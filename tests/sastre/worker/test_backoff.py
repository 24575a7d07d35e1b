"""Retries: exponential backoff with jitter, bounded; Retry-After obeyed; permanent is final."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sastre.worker.backoff import RetryPolicy, next_attempt

POLICY = RetryPolicy(max_attempts=6, base=2.0, cap=60.0)
attempts = st.integers(min_value=1, max_value=5)
jitters = st.floats(min_value=0, max_value=1, exclude_max=True)


@given(attempts, jitters)
def test_the_wait_is_within_the_exponential_bound(n: int, jitter: float) -> None:
    verdict = next_attempt(POLICY, n, retryable=True, retry_after=None, jitter=jitter)
    assert verdict.retry
    assert 0 <= verdict.delay <= min(POLICY.cap, POLICY.base * 2 ** (n - 1))


@given(attempts, jitters, st.floats(min_value=0, max_value=POLICY.cap))
def test_retry_after_is_never_cut_short_up_to_the_cap(n: int, jitter: float, after: float) -> None:
    verdict = next_attempt(POLICY, n, retryable=True, retry_after=after, jitter=jitter)
    assert verdict.delay >= after


@given(attempts, jitters, st.floats(min_value=0, max_value=10 * 86_400))
def test_no_wait_is_longer_than_the_cap_whatever_the_provider_asks(
    n: int, jitter: float, after: float
) -> None:
    verdict = next_attempt(POLICY, n, retryable=True, retry_after=after, jitter=jitter)
    assert verdict.retry
    assert verdict.delay <= POLICY.cap


def test_a_day_long_retry_after_waits_the_cap_and_says_so() -> None:
    verdict = next_attempt(POLICY, 1, retryable=True, retry_after=86_400, jitter=0.5)
    assert verdict.delay == POLICY.cap
    assert "86400" in verdict.reason
    assert "SASTRE_RETRY_MAX_SECONDS" in verdict.reason


@given(st.integers(min_value=1, max_value=100), jitters)
def test_a_permanent_failure_is_never_retried(n: int, jitter: float) -> None:
    assert not next_attempt(POLICY, n, retryable=False, retry_after=None, jitter=jitter).retry


@given(st.integers(min_value=6, max_value=100), jitters)
def test_the_attempts_run_out(n: int, jitter: float) -> None:
    verdict = next_attempt(POLICY, n, retryable=True, retry_after=None, jitter=jitter)
    assert not verdict.retry
    assert str(n) in verdict.reason
