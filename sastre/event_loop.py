"""The event loop Sastre's processes run on (`SASTRE_EVENT_LOOP`).

A Sastre server process (`serve`, its worker, `sastre worker`) is one event loop, and under
load that loop is what saturates: the inbound SMS benchmark spends most of a core
in it. uvloop (libuv, by the authors of asyncpg) runs the same asyncio programs with less of
the loop's own cost per callback and per socket: in `bench.sms_inbound` on PostgreSQL it cut
the loop's CPU per message by about a tenth, and raised the throughput as much.

"auto" (the default) takes uvloop where it is installed (a dependency wherever it builds:
Linux and macOS), asyncio's own loop elsewhere; "uvloop" requires it, "asyncio" never uses it
(to rule the loop out when chasing a problem).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["EventLoopSetting", "loop_factory", "run"]

EventLoopSetting = Literal["auto", "uvloop", "asyncio"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
T = TypeVar("T")


def loop_factory(setting: EventLoopSetting = "auto") -> LoopFactory | None:
    """What makes the loop for `setting`; None: asyncio's own. ImportError naming the setting
    when "uvloop" is asked for and not installed."""
    if setting == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if setting == "uvloop":
            raise ImportError(
                "SASTRE_EVENT_LOOP=uvloop, but uvloop is not installed: "
                "pip install uvloop, or set SASTRE_EVENT_LOOP=auto"
            ) from None
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], setting: EventLoopSetting = "auto") -> T:
    """`asyncio.run(main)` on the loop `setting` names."""
    with asyncio.Runner(loop_factory=loop_factory(setting)) as runner:
        return runner.run(main)
