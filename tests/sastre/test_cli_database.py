"""A database that cannot be reached at start: one line naming SASTRE_DATABASE_URL and what
failed, exit 1, from every command that opens it (not a traceback through Alembic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sastre.test_cli import sastre


def _nowhere(kind: str, tmp_path: Path) -> str:
    """A database URL nothing answers at (no port: nothing can race for it)."""
    if kind == "sqlite":
        (tmp_path / "sastre.db").mkdir()  # a directory where the file should be
        return f"sqlite+aiosqlite:///{tmp_path / 'sastre.db'}"
    return f"postgresql+asyncpg://sastre:hunter2@/sastre?host={tmp_path / 'no-server'}"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("command", [["serve"], ["worker"], ["migrate"], ["customer", "show", "1"]])
def test_an_unreachable_database_is_one_line_naming_the_setting(
    tmp_path: Path, kind: str, command: list[str]
) -> None:
    url = _nowhere(kind, tmp_path)
    result = sastre(tmp_path, *command, SASTRE_DATABASE_URL=url, SASTRE_PORT="0")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert "SASTRE_DATABASE_URL" in line
    assert "cannot connect to the database" in line
    assert ("unable to open database file" if kind == "sqlite" else "No such file") in line
    assert "hunter2" not in line  # the password is not shown
    assert "Traceback" not in result.stderr
