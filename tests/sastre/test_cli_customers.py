"""`sastre customer merge` and `sastre customer export`, run as an operator runs them (a real
process), on SQLite and PostgreSQL: the same acts the API calls, audited as the account that ran
them."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select, update

from crm_core.customers import upsert_customer
from crm_core.models import AuditEntry, Customer, Identity, IdentityKind
from crm_core.records import parse_customer
from sastre.db import SessionMaker

SASTRE = str(Path(sys.executable).with_name("sastre"))
ME = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"


def sastre(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SASTRE_")}
    env["SASTRE_DATABASE_URL"] = database_url
    env["SASTRE_SECRET_KEY"] = "cli-test-secret-0123456789"
    return subprocess.run(
        [SASTRE, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


async def customer(sessionmaker: SessionMaker, **fields: str) -> int:
    async with sessionmaker.begin() as session:
        created, _ = await upsert_customer(session, parse_customer(fields, "US"))
        return created.id


async def audited(sessionmaker: SessionMaker, action: str) -> list[AuditEntry]:
    async with sessionmaker() as session:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        return list(await session.scalars(query))


async def test_merge_says_what_it_did_in_one_line_and_is_audited_as_this_account(
    tmp_path: Path, database_url: str, sessionmaker: SessionMaker
) -> None:
    survivor = await customer(sessionmaker, external_id="C-1", name="Ana", email="ana@example.com")
    other = await customer(sessionmaker, external_id="C-2", email="ana.g@example.com")
    result = sastre(tmp_path, database_url, "customer", "merge", str(survivor), str(other))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"merged customer {other} into {survivor}: Ana, 4 identities, tier STANDARD\n"
    )
    async with sessionmaker() as session:
        merged = await session.get(Customer, other)
        assert merged is not None
        assert merged.merged_into_id == survivor
    [entry] = await audited(sessionmaker, "customer.merge")
    assert (entry.actor, entry.data["merged_id"]) == (ME, other)


async def test_a_refused_merge_gives_the_reason_and_conflicts_exits_1_and_changes_nothing(
    tmp_path: Path, database_url: str, sessionmaker: SessionMaker
) -> None:
    survivor = await customer(sessionmaker, external_id="C-1", email="ana@example.com")
    other = await customer(sessionmaker, external_id="C-2", email="bea@example.com")
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Identity).where(Identity.kind == IdentityKind.EMAIL.value).values(verified=True)
        )
    result = sastre(tmp_path, database_url, "customer", "merge", str(survivor), str(other))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: merge refused: both customers hold different verified identities of the same kind",
        "  email: SURVIVOR holds ana@example.com; OTHER holds bea@example.com",
        "  if they are one person all the same, merge again with --force",
    ]
    async with sessionmaker() as session:
        untouched = await session.get(Customer, other)
        assert untouched is not None
        assert untouched.merged_into_id is None
    assert await audited(sessionmaker, "customer.merge") == []

    forced = sastre(
        tmp_path, database_url, "customer", "merge", "--force", str(survivor), str(other)
    )
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.startswith(f"merged customer {other} into {survivor} (forced): ")
    [entry] = await audited(sessionmaker, "customer.merge")
    assert entry.data["forced"] is True


async def test_merge_of_an_unknown_or_the_same_customer_is_one_error_line(
    tmp_path: Path, database_url: str, sessionmaker: SessionMaker
) -> None:
    known = await customer(sessionmaker, external_id="C-1")
    unknown = sastre(tmp_path, database_url, "customer", "merge", str(known), "999999")
    itself = sastre(tmp_path, database_url, "customer", "merge", str(known), str(known))
    assert (unknown.returncode, unknown.stderr) == (1, "Error: no customer 999999\n")
    assert (itself.returncode, itself.stderr) == (
        1,
        "Error: merge refused: a customer cannot be merged with itself\n",
    )


async def test_export_by_any_query_prints_the_whole_person_and_is_audited(
    tmp_path: Path, database_url: str, sessionmaker: SessionMaker
) -> None:
    survivor = await customer(sessionmaker, external_id="C-1", email="ana@example.com")
    other = await customer(sessionmaker, external_id="C-2", phone="+14155552671")
    assert sastre(tmp_path, database_url, "customer", "merge", str(survivor), str(other)).stdout
    for query in ("ana@example.com", "+14155552671", "external:C-2", str(other)):
        result = sastre(tmp_path, database_url, "customer", "export", query)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert (document["customer_id"], document["merged_ids"]) == (survivor, [other])
        values = {identity["value"] for identity in document["identities"]}
        assert {"ana@example.com", "+14155552671", "C-1", "C-2"} <= values
    entries = await audited(sessionmaker, "customer.export")
    assert [(e.actor, e.customer_id) for e in entries] == [(ME, survivor)] * 4
    assert entries[-1].data == {"asked_for": other}  # an id goes to the act as it was given


async def test_export_to_a_file_makes_it_readable_by_this_account_only(
    tmp_path: Path, database_url: str, sessionmaker: SessionMaker
) -> None:
    known = await customer(sessionmaker, external_id="C-1", email="ana@example.com")
    result = sastre(tmp_path, database_url, "customer", "export", "C-1", "--output", "ana.json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"exported customer {known} to ana.json\n"
    written = tmp_path / "ana.json"
    assert json.loads(written.read_text(encoding="utf-8"))["customer_id"] == known
    assert written.stat().st_mode & 0o777 == 0o600


async def test_export_refuses_to_overwrite_a_file_and_exports_nothing(
    tmp_path: Path, database_url: str, sessionmaker: SessionMaker
) -> None:
    """The bug: an existing file was overwritten without a word."""
    await customer(sessionmaker, external_id="C-1", email="ana@example.com")
    kept = tmp_path / "notes.json"
    kept.write_text("my own notes\n", encoding="utf-8")
    result = sastre(tmp_path, database_url, "customer", "export", "C-1", "-o", "notes.json")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "Error: notes.json already exists; use --force to overwrite it\n"
    assert kept.read_text(encoding="utf-8") == "my own notes\n"
    assert await audited(sessionmaker, "customer.export") == []


async def test_export_with_force_overwrites_and_makes_the_file_private(
    tmp_path: Path, database_url: str, sessionmaker: SessionMaker
) -> None:
    known = await customer(sessionmaker, external_id="C-1", email="ana@example.com")
    old = tmp_path / "ana.json"
    old.write_text("an older export, longer than the new one will be" * 1000, encoding="utf-8")
    old.chmod(0o644)
    result = sastre(
        tmp_path, database_url, "customer", "export", "C-1", "-o", "ana.json", "--force"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(old.read_text(encoding="utf-8"))["customer_id"] == known
    assert old.stat().st_mode & 0o777 == 0o600


async def test_export_of_nobody_is_an_error_and_writes_no_file(
    tmp_path: Path, database_url: str, sessionmaker: SessionMaker
) -> None:
    result = sastre(tmp_path, database_url, "customer", "export", "x@example.com", "-o", "x.json")
    assert (result.returncode, result.stdout) == (1, "")
    assert "no customer" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.json").exists()
    assert await audited(sessionmaker, "customer.export") == []
