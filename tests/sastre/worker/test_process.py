"""`sastre worker` runs until SIGTERM and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


async def test_sastre_worker_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SASTRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
    }
    env.pop("SASTRE_REDIS_URL", None)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sastre", "worker", env=env, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    async with asyncio.timeout(60):
        assert (await child.stdout.readline()).strip() == b"Sastre worker started."
        child.send_signal(signal.SIGTERM)
        rest = await child.stdout.read()
        assert await child.wait() == 0
    assert b"Sastre worker stopped." in rest
