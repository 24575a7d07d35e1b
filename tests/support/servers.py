"""Throwaway PostgreSQL and Redis servers for the test suite and the benchmarks.

Each runs from a temporary directory and is stopped on exit; neither can race another process
for a port. PostgreSQL listens only on a Unix socket in its own private directory (no TCP at
all), so nothing else can take its address. Redis keeps a TCP URL (the rate limiter's storage
takes redis:// URLs), so it is started on a port the system just said was free and, if another
process took that port in between, started again on a fresh one; whether it is up is asked over
a Unix socket in its private directory, so another server that happens to hold the port is never
taken for ours.

PostgreSQL refuses to run as root, so as root the cluster is owned and run by the `postgres`
system user. Set SASTRE_TEST_POSTGRES_URL / SASTRE_TEST_REDIS_URL to use servers you already run
instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ServerUnavailable", "postgres_server", "redis_server"]

_REDIS_ATTEMPTS = 5


class ServerUnavailable(RuntimeError):
    pass


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


@contextlib.contextmanager
def _throwaway_directory(prefix: str) -> Iterator[str]:
    """A temporary directory, removed in the background once done with."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield tmp
    finally:
        # The shell returns at once; the rm it leaves in the background outlives the session.
        subprocess.run(["sh", "-c", 'rm -rf "$1" >/dev/null 2>&1 &', "sh", tmp], check=False)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a postgresql+asyncpg URL to a fresh, empty database, reached over a Unix socket."""
    if url := os.environ.get("SASTRE_TEST_POSTGRES_URL"):
        yield url
        return
    prefix = _as_postgres_user()
    # Every test's database stays until the end (dropping each would cost a checkpoint a test),
    # so the directory ends up large: it is removed by a process of its own, not waited for, so
    # the session's teardown never waits on the disk (a loaded machine took minutes).
    with _throwaway_directory("sastre-pg-") as tmp:
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
        # No TCP listener: the socket's name (.s.PGSQL.5432) lives in a directory only this
        # server uses, so no other process can hold it, whatever ports are in use.
        options = (
            f"-c listen_addresses='' -c unix_socket_directories={shlex.quote(tmp)} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=256MB"
        )
        started = subprocess.run(
            [
                *prefix,
                _pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(Path(tmp) / "log"),
                "-w",  # returns once the server accepts connections
                "start",
            ],
            capture_output=True,
        )
        try:
            if started.returncode != 0:
                raise ServerUnavailable(f"PostgreSQL did not start:\n{_tail(Path(tmp) / 'log')}")
            subprocess.run(
                [_pg_bin("createdb"), "-h", tmp, "-U", "sastre", "sastre"],
                check=True,
                capture_output=True,
            )
            yield f"postgresql+asyncpg://sastre@/sastre?host={tmp}"
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
    with tempfile.TemporaryDirectory(prefix="sastre-redis-") as tmp:
        process, port = _start_redis(binary, Path(tmp))
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


def _start_redis(binary: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A running redis-server and the TCP port it holds.

    Redis cannot be told to pick its own TCP port (`--port 0` turns TCP off), so it is given one
    the system just reported free. Another process may take that port before Redis binds it;
    Redis then stops at once saying so, and is started again on a fresh port."""
    for attempt in range(_REDIS_ATTEMPTS):
        port = _unused_port()
        unix = tmp / f"redis-{attempt}.sock"
        log = tmp / f"redis-{attempt}.log"
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--unixsocket",
                str(unix),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp),
                "--logfile",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Redis opens every listener before it answers anyone: an answer on its private socket
        # means the TCP port is its own.
        if _answers_ping(unix, process, seconds=30):
            return process, port
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if "already in use" not in _tail(log):
            raise ServerUnavailable(f"redis-server did not start:\n{_tail(log)}")
    raise ServerUnavailable(f"redis-server found no free port in {_REDIS_ATTEMPTS} attempts")


def _unused_port() -> int:
    """A port nobody listens on right now (the caller must cope with losing it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_ping(path: Path, process: subprocess.Popen[bytes], *, seconds: float) -> bool:
    """Whether the Redis at Unix socket `path` answers PING before `seconds` pass (False at once
    if `process` ended)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client,
        ):
            client.settimeout(1)
            client.connect(str(path))
            client.sendall(b"PING\r\n")
            if client.recv(64).startswith(b"+PONG"):
                return True
        time.sleep(0.05)
    return False


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"
