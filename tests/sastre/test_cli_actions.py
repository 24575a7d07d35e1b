"""`sastre actions`, rasa-sdk's action server, takes its port first, as `serve` and `demo` do."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.sastre.test_cli import SASTRE, _env, _one_line, sastre


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process listens on (bound to port 0, so no other test can race it)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def test_the_action_server_on_a_port_in_use_says_so_in_one_line_and_changes_nothing(
    tmp_path: Path, taken_port: int
) -> None:
    result = sastre(tmp_path, "actions", "--port", str(taken_port))
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert f"127.0.0.1:{taken_port} is already in use" in line
    assert "--port" in line
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "cli.db").exists()  # not migrated: the database was never opened


@contextmanager
def _actions_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`sastre actions` on port 0 (the system picks a free port, the command says which), with
    the URL its first line names; killed if a test leaves it running."""
    process = subprocess.Popen(
        [SASTRE, "actions", "--port", "0"],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Sastre actions listening on http://127.0.0.1:"), first
        yield process, first.split()[-1].removesuffix("/webhook")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _stopped_by_sigterm(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


@pytest.mark.timeout(120)
def test_the_action_server_serves_the_socket_it_took_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    with _actions_server(tmp_path) as (process, url):
        # Said once it answers: the health check needs no retry.
        with urllib.request.urlopen(f"{url}/health", timeout=30) as response:
            assert json.loads(response.read()) == {"status": "ok"}
        _stopped_by_sigterm(process)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.5])
def test_a_sigterm_right_after_the_start_stops_the_action_server_cleanly(
    tmp_path: Path, delay: float
) -> None:
    # Sanic's own runner lost a stop asked for while its start-up events ran: the process never
    # ended. Whenever the signal comes once the server has said it listens, it stops once.
    with _actions_server(tmp_path) as (process, _):
        time.sleep(delay)
        _stopped_by_sigterm(process)
