"""`sastre leads purge`, run as an operator runs it (a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from crm_core.models import AuditEntry, Customer
from sastre.db import SessionMaker
from tests.sastre.operations.test_purge import add_lead
from tests.sastre.test_cli_customers import ME

SASTRE = str(Path(sys.executable).with_name("sastre"))


def sastre(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SASTRE_")}
    env["SASTRE_DATABASE_URL"] = database_url
    env["SASTRE_SECRET_KEY"] = "cli-test-secret-0123456789"
    return subprocess.run(
        [SASTRE, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


async def test_leads_purge_deletes_the_idle_leads_and_says_how_many(
    tmp_path: Path, database_url: str, sessionmaker: SessionMaker
) -> None:
    now = datetime.now(UTC)
    async with sessionmaker.begin() as session:
        idle = await add_lead(session, "visitor-cli-idle-000001", at=now - timedelta(days=60))
        recent = await add_lead(session, "visitor-cli-recent-0001", at=now - timedelta(days=5))
    result = sastre(tmp_path, database_url, "leads", "purge", "--older-than", "30d")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "purged 1 web chat leads idle for 30 days or longer"
    async with sessionmaker() as session:
        assert await session.get(Customer, idle) is None
        assert await session.get(Customer, recent) is not None
        [entry] = await session.scalars(select(AuditEntry).where(AuditEntry.action == "lead.purge"))
    assert entry.actor == ME  # the account that ran it


def test_leads_purge_refuses_an_age_it_cannot_read(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    result = sastre(tmp_path, url, "leads", "purge", "--older-than", "0d")
    assert result.returncode == 2
    assert "--older-than" in result.stderr
    assert "such as 30d, 12h or 2w" in result.stderr
