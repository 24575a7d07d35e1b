"""CPU seconds spent by the processes of a benchmark, so a figure on a shared machine can be
read as CPU per message (the wall clock there depends on everyone else's load).

`own()`: this process; `tree(pid)`: a process and its children (PostgreSQL's postmaster and its
backends), read from /proc; `postgres_pid(url)`: the postmaster of the throwaway server a URL
names (its socket directory holds the data directory), or None when that cannot be told.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

__all__ = ["own", "postgres_pid", "tree"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def own() -> float:
    return time.process_time()


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    # after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based here
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / _TICK


def tree(pid: int) -> float:
    """CPU seconds of `pid` and its direct children (0 where /proc cannot be read)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        found = _stat(int(entry.name))
        if found is not None and (int(entry.name) == pid or found[0] == pid):
            total += found[1]
    return total


def postgres_pid(url: str) -> int | None:
    """The postmaster of a throwaway server (socket in `host=`, data directory beside it)."""
    hosts = parse_qs(urlsplit(url).query).get("host")
    if not hosts:
        return None
    try:
        return int((Path(hosts[0]) / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
