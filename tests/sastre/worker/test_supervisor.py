"""The worker `sastre serve` runs beside the web server is kept running: an unexpected end is
logged in one line and followed by a restart, with a backoff that grows only while it keeps
failing; /healthz answers 503 while none runs."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_aiohttp.plugin import AiohttpClient

from sastre.app import create_app
from sastre.config import Settings
from sastre.worker.supervisor import (
    BASE_DELAY,
    MAX_DELAY,
    STABLE_UPTIME,
    Restart,
    WorkerSupervisor,
    describe_exit,
    next_restart,
)

FOREVER = 3600.0


def _sleep() -> None:
    time.sleep(FOREVER)


def _sleeper() -> multiprocessing.process.BaseProcess:
    """A stand-in worker: a spawned process that does nothing until it is ended."""
    process = multiprocessing.get_context("spawn").Process(target=_sleep, daemon=True)
    process.start()
    return process


def _waiting(delay: float) -> Callable[[int, float], Restart]:
    def backoff(failures: int, uptime: float) -> Restart:
        return Restart(delay, failures + 1, "as the test says")

    return backoff


# --- the backoff (pure) -------------------------------------------------------------------------


@given(st.integers(0, 10_000), st.floats(0, STABLE_UPTIME, exclude_max=True))
def test_quick_failures_wait_longer_each_time_up_to_the_cap(failures: int, uptime: float) -> None:
    restart = next_restart(failures, uptime)
    assert restart.failures == failures + 1
    assert BASE_DELAY <= restart.delay <= MAX_DELAY
    assert next_restart(failures + 1, uptime).delay >= restart.delay


@given(st.integers(0, 10_000), st.floats(STABLE_UPTIME, 10**9))
def test_a_worker_that_ran_a_while_is_started_again_at_once(failures: int, uptime: float) -> None:
    assert next_restart(failures, uptime) == Restart(BASE_DELAY, 1, f"it had run {uptime:.0f} s")


def test_the_backoff_doubles_from_the_base() -> None:
    assert [next_restart(n, 0).delay for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert next_restart(100, 0).delay == MAX_DELAY


def test_an_exit_is_told_by_its_code_or_its_signal() -> None:
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(None) == "ended"


# --- the supervisor -----------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_a_killed_worker_is_logged_once_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = WorkerSupervisor(_sleeper, backoff=_waiting(0.0))
    await supervisor.start()
    try:
        first = supervisor.pid
        assert first is not None
        assert supervisor.starts == 1
        with caplog.at_level(logging.WARNING, logger="sastre.worker.supervisor"):
            os.kill(first, signal.SIGKILL)
            await supervisor.until("restarting")
            await supervisor.until("ok")
        assert supervisor.starts == 2
        assert supervisor.pid not in (None, first)
        [line] = [r.getMessage() for r in caplog.records]
        assert f"outbox worker (pid {first}) was killed by SIGKILL" in line
        assert "starting another in 0 s" in line
    finally:
        await supervisor.stop()
    assert supervisor.state == "stopped"


@pytest.mark.timeout(120)
async def test_a_stopped_worker_is_not_started_again() -> None:
    supervisor = WorkerSupervisor(_sleeper, backoff=_waiting(0.0))
    await supervisor.start()
    pid = supervisor.pid
    assert pid is not None
    await supervisor.stop()
    assert supervisor.state == "stopped"
    assert supervisor.pid is None
    assert supervisor.starts == 1
    with pytest.raises(ProcessLookupError):  # ended and reaped: no <defunct> child left
        os.kill(pid, 0)


@pytest.mark.timeout(120)
async def test_healthz_is_503_while_no_worker_runs(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    # A restart an hour away: the test looks at the gap between the end and the restart.
    supervisor = WorkerSupervisor(_sleeper, backoff=_waiting(FOREVER))
    client = await aiohttp_client(create_app(settings, worker=supervisor))
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["worker"] == "ok"
    assert supervisor.pid is not None
    os.kill(supervisor.pid, signal.SIGKILL)
    await supervisor.until("restarting")
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "error"
    assert body["worker"] == "restarting"
    assert body["detail"] == {"worker": "the outbox worker was killed by SIGKILL"}


async def test_healthz_names_no_worker_when_this_process_runs_none(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    assert "worker" not in await (await client.get("/healthz")).json()
