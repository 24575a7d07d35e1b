"""Throwaway PostgreSQL and Redis servers for the test suite and the benchmarks.

Each runs from a temporary directory on a free loopback port and is stopped on exit. PostgreSQL
refuses to run as root, so as root the cluster is owned and run by the `postgres` system user.
Set SASTRE_TEST_POSTGRES_URL / SASTRE_TEST_REDIS_URL to use servers you already run instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ServerUnavailable", "free_port", "postgres_server", "redis_server"]


class ServerUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise ServerUnavailable(
            f"PostgreSQL's {name} was not found: run scripts/test.sh, which installs it"
        )
    return found


def _as_postgres_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def _wait_for_port(port: int, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServerUnavailable(f"{what} did not start listening on 127.0.0.1:{port}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a postgresql+asyncpg URL to a fresh, empty database."""
    if url := os.environ.get("SASTRE_TEST_POSTGRES_URL"):
        yield url
        return
    prefix = _as_postgres_user()
    # A server stopped under load may still be closing files when the directory goes: what it
    # leaves behind is a throwaway directory's business, never a test error.
    with tempfile.TemporaryDirectory(prefix="sastre-pg-", ignore_cleanup_errors=True) as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        if prefix:
            uid = pwd.getpwnam("postgres").pw_uid
            os.chown(tmp, uid, -1)
            os.chown(data, uid, -1)
        subprocess.run(
            [
                *prefix,
                _pg_bin("initdb"),
                "-D",
                str(data),
                "-U",
                "sastre",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        port = free_port()
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={tmp} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=256MB"
        )
        subprocess.run(
            [
                *prefix,
                _pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(Path(tmp) / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        try:
            _wait_for_port(port, 30, "PostgreSQL")
            subprocess.run(
                [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "sastre", "sastre"],
                check=True,
                capture_output=True,
            )
            yield f"postgresql+asyncpg://sastre@127.0.0.1:{port}/sastre"
        finally:
            stop = ["-m", "immediate", "-w", "-t", "120", "stop"]
            subprocess.run(
                [*prefix, _pg_bin("pg_ctl"), "-D", str(data), *stop],
                capture_output=True,
            )


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yield a redis:// URL to a fresh server that keeps nothing on disk."""
    if url := os.environ.get("SASTRE_TEST_REDIS_URL"):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailable(
            "redis-server was not found: run scripts/test.sh, which installs it"
        )
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sastre-redis-") as tmp:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port, 10, "Redis")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)
