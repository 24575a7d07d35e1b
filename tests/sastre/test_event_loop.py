"""The servers run on uvloop where it is installed, on asyncio's loop when told, and a loop
that cannot be had stops start-up naming the setting."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from sastre.config import ConfigError, load_settings
from sastre.event_loop import loop_factory, run


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_auto_runs_on_uvloop_where_it_is_installed() -> None:
    assert run(_loop_type(), "auto") is uvloop.Loop


def test_asyncio_runs_on_the_standard_library_s_loop() -> None:
    assert loop_factory("asyncio") is None
    assert not issubclass(run(_loop_type(), "asyncio"), uvloop.Loop)


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    assert loop_factory("auto") is None
    with pytest.raises(ConfigError, match=r"SASTRE_EVENT_LOOP=.uvloop.: .*not installed"):
        load_settings(_env_file=None, event_loop="uvloop")


def test_an_unknown_loop_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="SASTRE_EVENT_LOOP"):
        load_settings(_env_file=None, event_loop="trio")
