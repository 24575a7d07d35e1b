"""When to try a failed send again, or whether to give up: a pure decision with its reason.

Exponential backoff with full jitter (a random wait between nothing and the exponential bound),
so that many messages failing at one moment (the provider's outage) do not all come back at the
same moment. A provider that said how long to wait (a 429's Retry-After) is obeyed, never sooner,
up to the longest wait we allow (`cap`, SASTRE_RETRY_MAX_SECONDS): a `Retry-After: 86400` must not
park a customer's reply for a day. Past the cap we try again at the cap; if the provider still
refuses, that attempt counts like any other, and the message fails when they run out.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryPolicy", "Verdict", "next_attempt"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base: float = 2.0  # seconds before the second attempt, at most
    cap: float = 900.0  # the longest wait between two attempts, a provider's Retry-After too


@dataclass(frozen=True, slots=True)
class Verdict:
    retry: bool
    delay: float  # seconds from now; 0 when giving up
    reason: str


def next_attempt(
    policy: RetryPolicy,
    attempts: int,
    *,
    retryable: bool,
    retry_after: float | None,
    jitter: float,
) -> Verdict:
    """After `attempts` calls (this one included) failed: retry after `delay`, or give up.

    `jitter` is a number in [0, 1) drawn by the caller (random.random()), so this stays pure.
    """
    if not retryable:
        return Verdict(False, 0.0, "the provider refused it for good")
    if attempts >= policy.max_attempts:
        return Verdict(False, 0.0, f"gave up after {attempts} attempts")
    bound = min(policy.cap, policy.base * 2 ** (attempts - 1))
    delay = bound * min(max(jitter, 0.0), 1.0)
    if retry_after is not None and retry_after > delay:
        if retry_after > policy.cap:
            return Verdict(
                True,
                policy.cap,  # the backoff bound is never above it
                f"the provider asked us to wait {retry_after:g} s (Retry-After); "
                f"waiting at most {policy.cap:g} s (SASTRE_RETRY_MAX_SECONDS)",
            )
        return Verdict(True, retry_after, "the provider asked us to wait (Retry-After)")
    return Verdict(True, delay, "exponential backoff with jitter")
