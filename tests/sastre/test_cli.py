"""The `sastre` command, run as a user runs it: a real process with its own environment."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sastre import cli
from sastre.auth import Role

SASTRE = str(Path(sys.executable).with_name("sastre"))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SASTRE_")}
    env["SASTRE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    env["SASTRE_SECRET_KEY"] = "cli-test-secret-0123456789"
    env.update(extra)
    return env


def sastre(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SASTRE, *args],
        env=_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_create_prints_the_token_alone_on_the_last_line(tmp_path: Path) -> None:
    result = sastre(tmp_path, "token", "create", "--role", "supervisor", "--name", "Marta")
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("sst_")
    assert " " not in last


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("token", "revoke", "9" * 25), "TOKEN_ID"),
        (("token", "create", "--role", "agent", "--name", "two\nlines"), "--name"),
        (("token", "create", "--role", "agent", "--name", "red\x1b[31m"), "--name"),
        (("token", "create", "--role", "agent", "--name", "x" * 201), "--name"),
        (("actions", "--port", "99999"), "--port"),
    ],
)
def test_an_argument_out_of_range_is_refused_by_name(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    result = sastre(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_a_token_name_may_be_anyones(tmp_path: Path) -> None:
    name = "Marta P\u00e9rez\u00a0Gil, \u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627"
    result = sastre(tmp_path, "token", "create", "--role", "agent", "--name", name)
    assert result.returncode == 0, result.stderr


def test_a_file_that_is_no_database_is_said_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is a spreadsheet, not a database" * 100)
    result = sastre(tmp_path, "migrate", SASTRE_DATABASE_URL=f"sqlite+aiosqlite:///{junk}")
    assert result.returncode != 0
    line = _one_line(result.stderr)
    assert "SASTRE_DATABASE_URL" in line
    assert "not a database" in line


def test_a_bad_setting_fails_fast_naming_the_variable(tmp_path: Path) -> None:
    result = sastre(tmp_path, "migrate", SASTRE_PORT="eighty")
    assert result.returncode != 0
    assert "SASTRE_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SASTRE_DEFAULT_TIMEZONE", "Mars/Base"),
        ("SASTRE_DEFAULT_LANGUAGE", "xx"),
        ("SASTRE_DEFAULT_REGION", "Atlantis"),
        ("SASTRE_PORT", "eighty"),
        ("SASTRE_PUBLIC_URL", "hub.example.com"),
        ("SASTRE_LOG_LEVEL", "loud"),
        ("SASTRE_TIER_CMP_TOP_SHARE", "2"),
        ("SASTRE_SECRET_KEY", "short"),
    ],
)
def test_serve_with_a_bad_setting_says_so_in_one_line_and_touches_nothing(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = sastre(tmp_path, "serve", **{variable: value})
    assert result.returncode != 0
    line = _one_line(result.stderr)
    assert variable in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cli.db").exists()


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process listens on (bound to port 0, so no other test can race it)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


@pytest.mark.parametrize("command", [["serve"], ["demo", "--customers", "3"]])
def test_starting_on_a_port_in_use_changes_nothing(
    tmp_path: Path, taken_port: int, command: list[str]
) -> None:
    result = sastre(tmp_path, *command, SASTRE_PORT=str(taken_port))
    assert result.returncode != 0
    line = _one_line(result.stderr)
    assert f"127.0.0.1:{taken_port} is already in use" in line
    assert "SASTRE_PORT" in line
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no token printed, none created: the database was never opened
    assert not (tmp_path / "cli.db").exists()


def _all_modules_after(code: str, tmp_path: Path) -> set[str]:
    """The modules a fresh interpreter holds after running `code`, which prints nothing else."""
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def _modules_after(code: str, tmp_path: Path) -> set[str]:
    """The top-level packages of what `_all_modules_after` finds."""
    return {name.partition(".")[0] for name in _all_modules_after(code, tmp_path)}


HEAVY = {"sklearn", "numpy", "scipy", "rasa_sdk", "aiohttp", "dateparser"}


def test_importing_the_command_loads_none_of_what_only_some_commands_need(
    tmp_path: Path,
) -> None:
    loaded = _modules_after("import sastre.cli", tmp_path)
    assert not loaded & (HEAVY | {"sqlalchemy", "alembic", "pydantic"})


def test_help_loads_no_application_code(tmp_path: Path) -> None:
    code = (
        "import contextlib, io, sastre.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    sastre.cli.cli(['--help'], prog_name='sastre')"
    )
    loaded = _modules_after(code, tmp_path)
    assert not loaded & (HEAVY | {"sqlalchemy", "alembic", "pydantic"})


# What `token create` on a migrated database has no use for: Alembic (only to migrate), the
# contact policy (the settings need only its contact hours), the customer resolution with its
# e-mail checker (the token table needs only the models).
NOT_FOR_TOKENS = {
    "alembic",
    "email_validator",
    "consent.policy",
    "crm_core.customers",
    "crm_core.identities",
    "crm_core.tiers",
}


def test_token_create_loads_only_the_settings_and_the_tables(tmp_path: Path) -> None:
    assert sastre(tmp_path, "migrate").returncode == 0
    code = (
        "import contextlib, io, sastre.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    sastre.cli.cli(['token', 'create', '--role', 'agent', '--name', 'A'],"
        " prog_name='sastre')"
    )
    loaded = _all_modules_after(code, tmp_path)
    assert "sastre.auth" in loaded  # the token was made, not refused before the work began
    assert not {name.partition(".")[0] for name in loaded} & HEAVY
    assert not loaded & NOT_FOR_TOKENS


def test_the_role_choices_are_the_roles() -> None:
    assert tuple(role.value for role in Role) == cli.ROLES


def test_production_mode_requires_a_secret_key(tmp_path: Path) -> None:
    env = _env(tmp_path, SASTRE_ENV="production")
    del env["SASTRE_SECRET_KEY"]
    result = subprocess.run(
        [SASTRE, "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SASTRE_SECRET_KEY is required" in result.stderr


def test_import_reports_bad_lines_and_imports_the_rest(tmp_path: Path) -> None:
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "external_id,name,email,phone,country,revenue\n"
        "C-1,Ana,ana@example.com,+34612345678,ES,100\n"
        "C-2,Bob,not-an-email,,US,50\n"
        "C-3,Cy,cy@example.com,,US,lots\n"
        "C-4,Di,di@example.com,,US,20\n",
        encoding="utf-8",
    )
    result = sastre(tmp_path, "import", "customers", str(csv_file))
    assert result.returncode == 0, result.stderr
    assert "line 3: email: " in result.stderr
    assert "line 4: revenue: 'lots' is not an amount like 1234.56" in result.stderr
    assert result.stdout.strip().endswith("imported 2, updated 0, rejected 2")
    shown = sastre(tmp_path, "customer", "show", "di@example.com")
    assert json.loads(shown.stdout)["name"] == "Di"


def test_import_without_external_id_column_writes_nothing(tmp_path: Path) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("name,email\nAna,ana@example.com\n", encoding="utf-8")
    result = sastre(tmp_path, "import", "customers", str(csv_file))
    assert result.returncode != 0
    assert "no external_id column" in result.stderr
    shown = sastre(tmp_path, "customer", "show", "ana@example.com")
    assert shown.returncode != 0
    assert "no customer" in shown.stderr


def test_tiers_recompute_prints_the_count_per_tier(tmp_path: Path) -> None:
    csv_file = tmp_path / "customers.csv"
    rows = ["external_id,revenue,cost_to_serve,potential_value"]
    rows += [f"C-{i},{100 * i},10,{50 * i}" for i in range(1, 21)]
    rows += ["LOSS-1,10,500,20"]
    csv_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert sastre(tmp_path, "import", "customers", str(csv_file)).returncode == 0
    result = sastre(tmp_path, "tiers", "recompute")
    assert result.returncode == 0, result.stderr
    counts = dict(line.split() for line in result.stdout.splitlines()[:4])
    assert set(counts) == {"CMV", "CMP", "STANDARD", "BZ"}
    assert sum(int(n) for n in counts.values()) == 21
    assert counts["BZ"] == "1"


def test_customer_show_unknown_is_a_clear_error(tmp_path: Path) -> None:
    result = sastre(tmp_path, "customer", "show", "telegram:abc")
    assert result.returncode != 0
    assert "telegram" in result.stderr
    assert "Traceback" not in result.stderr


def _get(url: str) -> tuple[int, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


def listening_url(first_line: str) -> str:
    """The URL `sastre serve` or `demo` names on its first line: with SASTRE_PORT=0 the system
    picked the port when the command bound it, so no other process can have raced for it."""
    found = re.match(r"Sastre listening on (http://127\.0\.0\.1:\d+) \(", first_line)
    assert found, first_line
    return found[1]


@contextmanager
def _serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`sastre serve` on a port the system picks, with the URL its first line names (said once
    the server answers); killed if a test leaves it running."""
    process = subprocess.Popen(
        [SASTRE, "serve"],
        env=_env(tmp_path, SASTRE_PORT="0"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process, listening_url(process.stdout.readline())
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.timeout(120)
def test_serve_answers_health_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with _serving(tmp_path) as (process, url):
        status, body = _get(f"{url}/healthz")  # said once it answers: no retry needed
        assert status == 200
        assert body["database"] == "ok"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "Sastre stopped." in stdout


@pytest.mark.timeout(120)
def test_a_second_signal_while_serve_stops_does_not_cut_the_stop_short(tmp_path: Path) -> None:
    """Ctrl+C pressed twice: the second used to interrupt the cleanup, leaving the database
    open, the worker child unreaped, and the process waiting forever for the driver's threads."""
    with _serving(tmp_path) as (process, _):
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGINT)  # the loop reads both before it acts on either
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Sastre stopped." in stdout
    assert "SIGINT: already stopping" in stderr


def test_a_worker_asked_to_stop_while_migrating_migrates_and_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM during the migration that precedes the worker killed the process outright."""
    from click.testing import CliRunner

    import sastre.cli
    import sastre.worker.process
    from sastre.cli import cli

    migrated: list[str] = []
    started: list[object] = []

    async def migrate_and_be_stopped(url: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill` would, mid-migration
        migrated.append(url)

    monkeypatch.setattr(sastre.cli, "_migrate", migrate_and_be_stopped)
    monkeypatch.setattr(sastre.worker.process, "worker_main", lambda *a, **k: started.append(a))
    for name, value in _env(tmp_path).items():
        if name.startswith("SASTRE_"):
            monkeypatch.setenv(name, value)
    previous = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 0, result.output
    assert migrated
    assert started == []
    assert result.output.strip() == "Sastre worker stopped."
    assert signal.getsignal(signal.SIGTERM) == previous  # put back as it was


@pytest.mark.timeout(120)
def test_demo_prints_where_to_open_the_console_and_a_token_that_signs_in(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [SASTRE, "demo", "--customers", "3"],
        env=_env(tmp_path, SASTRE_PORT="0"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed: list[str] = []
        for line in process.stdout:
            printed.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        banner = "".join(printed)
        url = listening_url(printed[0])
        assert f"Open the staff console at {url}/ and sign in" in banner, banner
        token = next(line.strip() for line in printed if line.strip().startswith("sst_"))
        request = urllib.request.Request(
            f"{url}/api/me", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["role"] == "admin"
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0


@pytest.mark.parametrize("count", ["0", "-1", "100001", "many"])
def test_demo_refuses_a_customer_count_by_name_and_creates_nothing(
    tmp_path: Path, count: str
) -> None:
    result = sastre(tmp_path, "demo", "--customers", count)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Invalid value for '--customers'" in errors[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "cli.db").exists()


@pytest.mark.timeout(120)
def test_serve_says_where_it_listens_and_the_public_url_apart(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [SASTRE, "serve"],
        env=_env(
            tmp_path,
            SASTRE_PORT="0",
            SASTRE_PUBLIC_URL="https://chat.qa.example",
            SASTRE_SERVE_WORKER="0",
        ),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert listening_url(first) != "http://127.0.0.1:0", first
    assert "public URL https://chat.qa.example;" in first


def test_a_public_url_that_is_where_it_listens_is_not_named_twice(tmp_path: Path) -> None:
    from sastre.config import load_settings

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        settings = load_settings(
            _env_file=None,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
            secret_key="cli-test-secret-0123456789",
            public_url=f"http://127.0.0.1:{port}/",
        )
        line = cli._listening_line(settings, [listener])
    assert line.startswith(f"Sastre listening on http://127.0.0.1:{port} (database: "), line
