"""Bulk CSV import: good rows go in, each bad row is reported as `line N: field: reason`, and a file
that cannot be read writes nothing once the caller rolls back."""

from __future__ import annotations

import csv
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

import crm_core.importer
from crm_core import Customer, Identity, upsert_customer
from crm_core.importer import ImportFileError, ImportReport, import_customers
from crm_core.records import parse_customer
from crm_core.tiers import tier_reason
from sastre.db import SessionMaker


def write_csv(tmp_path: Path, text: str, name: str = "customers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def write_row(tmp_path: Path, row: dict[str, str], name: str = "row.csv") -> Path:
    """A header and one row, quoted as a spreadsheet would."""
    path = tmp_path / name
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(row), quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerow(row)
    return path


async def run_import(sessionmaker: SessionMaker, path: Path, *, workers: int = 1) -> ImportReport:
    async with sessionmaker.begin() as session:
        return await import_customers(session, path, "US", workers=workers)


def lines(report: ImportReport) -> list[str]:
    return [str(rejection) for rejection in report.rejected]


async def stored(session: AsyncSession, external_id: str) -> dict[str, Any]:
    """Everything stored about one customer that does not depend on when or in which order it
    was written (ids, timestamps)."""
    customer_id = await session.scalar(
        select(Identity.customer_id).where(
            Identity.kind == "external", Identity.value == external_id
        )
    )
    assert customer_id is not None, f"no customer {external_id}"
    customer = await session.get_one(Customer, customer_id, populate_existing=True)
    identities = await session.execute(
        select(Identity.kind, Identity.value, Identity.verified).where(
            Identity.customer_id == customer_id
        )
    )
    return {
        "status": customer.status,
        "name": customer.name,
        "language": customer.language,
        "timezone": customer.timezone,
        "country": customer.country,
        "revenue_cents": customer.revenue_cents,
        "cost_to_serve_cents": customer.cost_to_serve_cents,
        "profit_cents": customer.profit_cents,
        "potential_value_cents": customer.potential_value_cents,
        "tier": customer.tier,
        "tier_reason": (await tier_reason(session, customer_id))[0],
        "attributes": customer.attributes,
        "identities": sorted(tuple(row) for row in identities),
    }


async def count(session: AsyncSession, model: type[Customer] | type[Identity]) -> int:
    return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_good_rows_are_imported(sessionmaker: SessionMaker, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "external_id,name,email,phone,telegram,country,timezone,language,revenue,"
        "cost_to_serve,potential_value,loyalty\n"
        "CRM-1,Ana García,Ana@Example.com,(415) 555-2671,4242,US,America/New_York,es,"
        '"1,234.50",34.5,5000,gold\n'
        "CRM-2,Bob,,,,,,,,,,\n",
    )
    report = await run_import(sessionmaker, path)
    assert (report.imported, report.updated, report.rejected) == (2, 0, [])
    async with sessionmaker() as session:
        assert await stored(session, "CRM-1") == {
            "status": "customer",
            "name": "Ana García",
            "language": "es",
            "timezone": "America/New_York",
            "country": "US",
            "revenue_cents": 123450,
            "cost_to_serve_cents": 3450,
            "profit_cents": 120000,
            "potential_value_cents": 500000,
            "tier": "STANDARD",
            "tier_reason": "not computed yet",
            "attributes": {"loyalty": "gold"},
            "identities": [
                ("email", "ana@example.com", False),
                ("external", "CRM-1", False),
                ("phone", "+14155552671", False),
                ("telegram", "4242", False),
            ],
        }
        bob = await stored(session, "CRM-2")
    assert (bob["name"], bob["revenue_cents"], bob["attributes"]) == ("Bob", 0, {})


async def test_header_is_matched_case_and_space_insensitively(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, " External_ID , Name \nCRM-1,Ana\n")
    assert (await run_import(sessionmaker, path)).imported == 1
    async with sessionmaker() as session:
        assert (await stored(session, "CRM-1"))["name"] == "Ana"


async def test_bad_row_is_reported_and_good_rows_go_in(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        "external_id,name,email,revenue\n"
        "CRM-1,Ana,ana@example.com,10\n"
        "CRM-2,Bob,bob-at-example.com,10\n"
        "CRM-3,Cy,cy@example.com,12,5\n"
        "CRM-4,Dee,dee@example.com,-3\n"
        ",Eve,eve@example.com,1\n"
        "CRM-6,Fay,fay@example.com,1\n",
    )
    report = await run_import(sessionmaker, path)
    assert lines(report) == [
        "line 3: email: An email address must have an @-sign.",
        "line 4: row: has 5 fields, the header has 4",
        "line 5: revenue: must not be negative",
        "line 6: external_id: is required",
    ]
    assert (report.imported, report.updated) == (2, 0)
    assert report.summary == "imported 2, updated 0, rejected 4"
    async with sessionmaker() as session:
        assert await count(session, Customer) == 2
        assert (await stored(session, "CRM-6"))["name"] == "Fay"


async def test_row_with_several_errors_names_the_first_and_lists_the_rest(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, "external_id,country,revenue\nCRM-1,XX,-1\n")
    assert lines(await run_import(sessionmaker, path)) == [
        "line 2: country: 'XX' is not an ISO 3166 alpha-2 country code "
        "(also: revenue: must not be negative)"
    ]


async def test_phone_is_read_with_the_row_country(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path, "external_id,country,phone\nCRM-1,ES,612 34 56 78\nCRM-2,,(415) 555-2671\n"
    )
    assert (await run_import(sessionmaker, path)).imported == 2
    async with sessionmaker() as session:
        assert ("phone", "+34612345678", False) in (await stored(session, "CRM-1"))["identities"]
        assert ("phone", "+14155552671", False) in (await stored(session, "CRM-2"))["identities"]


async def test_customers_created_after_an_import_get_fresh_ids(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    await run_import(sessionmaker, write_csv(tmp_path, "external_id\nCRM-1\nCRM-2\n"))
    async with sessionmaker.begin() as session:
        later, created = await upsert_customer(
            session, parse_customer({"external_id": "API-1"}, "US")
        )
    async with sessionmaker() as session:
        imported = [(await stored_id(session, f"CRM-{n}")) for n in (1, 2)]
    assert created
    assert later.id not in imported


async def stored_id(session: AsyncSession, external_id: str) -> int:
    customer_id = await session.scalar(
        select(Identity.customer_id).where(
            Identity.kind == "external", Identity.value == external_id
        )
    )
    assert customer_id is not None
    return customer_id


async def test_reimport_updates_keeps_empty_cells_and_merges_attributes(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    first = write_csv(
        tmp_path,
        "external_id,name,language,revenue,loyalty,segment\nCRM-1,Ana,es,100,gold,students\n",
        "first.csv",
    )
    second = write_csv(
        tmp_path,
        "external_id,name,language,revenue,loyalty,store\nCRM-1,Ana García,,250,,Madrid\n",
        "second.csv",
    )
    await run_import(sessionmaker, first)
    report = await run_import(sessionmaker, second)
    assert (report.imported, report.updated, report.rejected) == (0, 1, [])
    async with sessionmaker() as session:
        customer = await stored(session, "CRM-1")
        assert await count(session, Customer) == 1
    assert customer["name"] == "Ana García"
    assert customer["language"] == "es"
    assert customer["revenue_cents"] == 25000
    assert customer["attributes"] == {"loyalty": "gold", "segment": "students", "store": "Madrid"}


async def test_reimport_adds_new_identities_to_the_customer(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    await run_import(sessionmaker, write_csv(tmp_path, "external_id,email\nCRM-1,a@example.com\n"))
    await run_import(
        sessionmaker,
        write_csv(tmp_path, "external_id,email,phone\nCRM-1,a@example.com,(415) 555-2671\n"),
    )
    async with sessionmaker() as session:
        assert (await stored(session, "CRM-1"))["identities"] == [
            ("email", "a@example.com", False),
            ("external", "CRM-1", False),
            ("phone", "+14155552671", False),
        ]


async def test_email_of_another_customer_is_refused_naming_the_owner(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    async with sessionmaker.begin() as session:
        owner, _ = await upsert_customer(
            session, parse_customer({"external_id": "CRM-1", "email": "ana@example.com"}, "US")
        )
    path = write_csv(tmp_path, "external_id,email\nCRM-2,ANA@example.com\nCRM-3,cy@example.com\n")
    report = await run_import(sessionmaker, path)
    assert lines(report) == [
        f"line 2: email: ana@example.com already belongs to customer {owner.id}"
    ]
    assert report.imported == 1
    async with sessionmaker() as session:
        assert await count(session, Customer) == 2


async def test_phone_of_another_customer_refuses_an_update_too(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    await run_import(
        sessionmaker,
        write_csv(tmp_path, "external_id,name,phone\nCRM-1,Ana,(415) 555-2671\nCRM-2,Bob,\n"),
    )
    report = await run_import(
        sessionmaker, write_csv(tmp_path, "external_id,name,phone\nCRM-2,Robert,+1 415 555 2671\n")
    )
    assert [(r.line, r.field) for r in report.rejected] == [(2, "phone")]
    assert "already belongs to customer" in report.rejected[0].reason
    async with sessionmaker() as session:
        assert (await stored(session, "CRM-2"))["name"] == "Bob"


async def test_same_email_twice_in_one_file_refuses_the_second(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, "external_id,email\nCRM-1,ana@example.com\nCRM-2,Ana@Example.com\n")
    report = await run_import(sessionmaker, path)
    assert lines(report) == [
        "line 3: email: ana@example.com is also given on line 2 for another customer"
    ]
    async with sessionmaker() as session:
        assert ("email", "ana@example.com", False) in (await stored(session, "CRM-1"))["identities"]
        assert await count(session, Customer) == 1


async def test_refused_row_claims_nothing_so_a_later_row_may_take_its_email(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    async with sessionmaker.begin() as session:
        owner, _ = await upsert_customer(
            session, parse_customer({"external_id": "CRM-0", "phone": "(415) 555-2671"}, "US")
        )
    path = write_csv(
        tmp_path,
        "external_id,email,phone\n"
        "CRM-1,ana@example.com,+1 415 555 2671\n"
        "CRM-2,ana@example.com,\n"
        "CRM-3,ana@example.com,\n",
    )
    report = await run_import(sessionmaker, path)
    assert lines(report) == [
        f"line 2: phone: +14155552671 already belongs to customer {owner.id}",
        "line 4: email: ana@example.com is also given on line 3 for another customer",
    ]
    async with sessionmaker() as session:
        assert ("email", "ana@example.com", False) in (await stored(session, "CRM-2"))["identities"]


async def test_repeated_external_id_may_give_its_identities_again(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        "external_id,name,email,phone\n"
        "CRM-1,Ana,ana@example.com,(415) 555-2671\n"
        "CRM-1,Ana García,ANA@example.com,\n"
        "CRM-1,,ana@example.com,+1 415 555 2671\n",
    )
    report = await run_import(sessionmaker, path)
    assert (report.imported, report.updated, report.rejected) == (1, 2, [])
    async with sessionmaker() as session:
        customer = await stored(session, "CRM-1")
    assert customer["name"] == "Ana García"
    assert customer["identities"] == [
        ("email", "ana@example.com", False),
        ("external", "CRM-1", False),
        ("phone", "+14155552671", False),
    ]


async def test_duplicate_external_id_in_one_file_the_later_row_updates(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        "external_id,name,language,email\n"
        "CRM-1,Ana,es,ana@example.com\n"
        "CRM-2,Bob,,\n"
        "CRM-1,Ana García,,ana.garcia@example.com\n",
    )
    report = await run_import(sessionmaker, path)
    assert (report.imported, report.updated, report.rejected) == (2, 1, [])
    async with sessionmaker() as session:
        customer = await stored(session, "CRM-1")
    assert (customer["name"], customer["language"]) == ("Ana García", "es")
    assert [value for kind, value, _ in customer["identities"] if kind == "email"] == [
        "ana.garcia@example.com",
        "ana@example.com",
    ]


async def test_file_without_external_id_column_writes_nothing(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, "id,name\nCRM-1,Ana\n")
    with pytest.raises(ImportFileError, match="line 1: the header has no external_id column"):
        await run_import(sessionmaker, path)
    async with sessionmaker() as session:
        assert await count(session, Customer) == 0


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("external_id,name,,email", "empty column name"),
        ("external_id,name,Name", "the column 'name' appears twice"),
    ],
)
async def test_bad_header_is_refused(
    sessionmaker: SessionMaker, tmp_path: Path, header: str, message: str
) -> None:
    with pytest.raises(ImportFileError, match=message):
        await run_import(sessionmaker, write_csv(tmp_path, f"{header}\nCRM-1,Ana,x,y\n"))


async def test_empty_file_is_refused(sessionmaker: SessionMaker, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="the file is empty"):
        await run_import(sessionmaker, write_csv(tmp_path, ""))


async def test_header_only_file_imports_nothing(sessionmaker: SessionMaker, tmp_path: Path) -> None:
    report = await run_import(sessionmaker, write_csv(tmp_path, "external_id,name\n"))
    assert report.summary == "imported 0, updated 0, rejected 0"


async def test_missing_file_is_an_import_file_error(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    with pytest.raises(ImportFileError, match="cannot read"):
        await run_import(sessionmaker, tmp_path / "nowhere.csv")


async def test_blank_lines_are_skipped_but_still_counted(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, "external_id,email\n\nCRM-1,ana@example.com\n , \nCRM-2,bad\n")
    report = await run_import(sessionmaker, path)
    assert (report.imported, [(r.line, r.field) for r in report.rejected]) == (1, [(5, "email")])


async def test_utf8_bom_is_ignored(sessionmaker: SessionMaker, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("external_id,name\nCRM-1,Ana García\n".encode("utf-8-sig"))
    assert (await run_import(sessionmaker, path)).imported == 1


async def test_field_over_the_csv_limit_makes_the_file_unreadable(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, f"external_id,notes\nCRM-1,x\nCRM-2,{'y' * 200_000}\nCRM-3,z\n")
    with pytest.raises(ImportFileError, match=r"^line 3: not valid CSV \(field larger"):
        await run_import(sessionmaker, path)


async def test_multi_line_quoted_fields_report_their_starting_line(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        "external_id,notes,email\n"
        'CRM-1,"first line\nsecond line\nthird line",ana@example.com\n'
        'CRM-2,"two\nlines",not-an-email\n'
        "CRM-3,,also-bad\n",
    )
    report = await run_import(sessionmaker, path)
    assert [(r.line, r.field) for r in report.rejected] == [(5, "email"), (7, "email")]
    async with sessionmaker() as session:
        customer = await stored(session, "CRM-1")
    assert customer["attributes"] == {"notes": "first line\nsecond line\nthird line"}


async def test_undecodable_file_midway_writes_nothing_once_rolled_back(
    sessionmaker: SessionMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crm_core.importer, "BATCH_ROWS", 50)
    good = "".join(f"CRM-{n},Customer number {n},c{n}@example.com\n" for n in range(3000))
    path = tmp_path / "latin1.csv"
    # Far past the first read buffer, so whole batches are written before decoding fails.
    path.write_bytes(f"external_id,name,email\n{good}".encode() + "CRM-X,Nuño\n".encode("latin-1"))
    staged: list[int] = []
    stage = crm_core.importer._stage

    async def counting_stage(conn: AsyncConnection, rows: list[Any]) -> None:
        staged.append(len(rows))
        await stage(conn, rows)

    monkeypatch.setattr(crm_core.importer, "_stage", counting_stage)
    with pytest.raises(ImportFileError, match="not UTF-8"):
        async with sessionmaker.begin() as session:
            await import_customers(session, path, "US", workers=1)
    assert sum(staged) >= 1000  # rows had gone into the transaction before decoding failed
    async with sessionmaker() as session:
        assert await count(session, Customer) == 0
        assert await count(session, Identity) == 0


async def test_undecodable_file_names_the_line_with_the_bad_bytes(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("external_id,name\nCRM-1,Nuño\nCRM-2,Ana\n".encode("latin-1"))
    with pytest.raises(ImportFileError, match=r"^line 2: the file is not UTF-8 text"):
        await run_import(sessionmaker, path)


def big_file(tmp_path: Path) -> Path:
    """Several batches of 50 with bad rows, a within-file e-mail clash across batches and a
    repeated external id, so every step of the import runs more than once."""
    rows = ["external_id,name,email,revenue,segment"]
    for n in range(180):
        email = "shared@example.com" if n in (10, 120) else f"c{n}@example.com"
        revenue = "-5" if n % 37 == 0 else f"{n}.{n % 100:02d}"
        rows.append(f"CRM-{n % 170},Customer {n},{email},{revenue},s{n % 3}")
    return write_csv(tmp_path, "\n".join(rows) + "\n", "big.csv")


Snapshot = tuple[int, int, list[str], dict[str, dict[str, Any]]]


async def import_snapshot(sessionmaker: SessionMaker, path: Path, workers: int) -> Snapshot:
    """Import in a transaction that is rolled back; return the counts, the rejections and what
    would have been stored, by external id."""
    async with sessionmaker() as session, session.begin():
        report = await import_customers(session, path, "US", workers=workers)
        rows = await session.execute(
            select(Identity.customer_id, Identity.value).where(Identity.kind == "external")
        )
        external_ids = {customer_id: value for customer_id, value in rows}
        customers = {value: await stored(session, value) for value in external_ids.values()}
        await session.rollback()
    # Customer ids differ between runs on PostgreSQL (sequences do not roll back): name the
    # owner in a rejection by its external id instead.
    rejections = [
        re.sub(r"customer (\d+)", lambda m: f"customer {external_ids[int(m[1])]}", line)
        for line in lines(report)
    ]
    return report.imported, report.updated, rejections, customers


async def test_process_pool_import_gives_the_same_result_as_one_process(
    sessionmaker: SessionMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crm_core.importer, "BATCH_ROWS", 50)
    pools: list[ProcessPoolExecutor] = []

    def recording_pool(*args: Any, **kwargs: Any) -> ProcessPoolExecutor:
        pools.append(ProcessPoolExecutor(*args, **kwargs))
        return pools[-1]

    monkeypatch.setattr(crm_core.importer, "ProcessPoolExecutor", recording_pool)
    path = big_file(tmp_path)
    alone = await import_snapshot(sessionmaker, path, workers=1)
    pooled = await import_snapshot(sessionmaker, path, workers=2)
    assert len(pools) == 1  # only the workers=2 run used worker processes
    assert pooled == alone
    # 170 external ids, five never stored (four negative revenues, one clashing e-mail); the
    # last ten rows repeat CRM-0..CRM-9, of which CRM-0 is new (its first row was refused).
    imported, updated, rejections, _ = alone
    assert (imported, updated, len(rejections)) == (165, 9, 6)
    assert "line 122: email: shared@example.com is also given on line 12 for another customer" in (
        rejections
    )


async def test_bulk_load_gives_the_same_result_as_the_indexed_one(
    sessionmaker: SessionMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL an import into an empty identities table builds its indexes at the end."""
    monkeypatch.setattr(crm_core.importer, "BATCH_ROWS", 50)
    path = big_file(tmp_path)
    natural = await import_snapshot(sessionmaker, path, workers=1)

    async def never(*_: object) -> bool:
        return False

    monkeypatch.setattr(crm_core.importer, "_large_for_identities", never)
    assert await import_snapshot(sessionmaker, path, workers=1) == natural


def identity_schema(connection: Any) -> dict[str, Any]:
    inspector = inspect(connection)
    return {
        "primary key": inspector.get_pk_constraint("identities"),
        "foreign keys": inspector.get_foreign_keys("identities"),
        "indexes": inspector.get_indexes("identities"),
    }


async def test_import_leaves_the_identities_keys_and_indexes_as_migrated(
    sessionmaker: SessionMaker, engine: AsyncEngine, tmp_path: Path
) -> None:
    async with engine.connect() as conn:
        migrated = await conn.run_sync(identity_schema)
    await run_import(sessionmaker, big_file(tmp_path))
    async with engine.connect() as conn:
        assert await conn.run_sync(identity_schema) == migrated
    async with sessionmaker() as session:
        customer_id = await stored_id(session, "CRM-1")
        session.add(Identity(customer_id=customer_id, kind="email", value="c1@example.com"))
        with pytest.raises(IntegrityError):  # the primary key is back
            await session.flush()


def customer_indexes(connection: Any) -> list[Any]:
    return sorted(inspect(connection).get_indexes("customers"), key=lambda index: index["name"])


async def test_import_leaves_the_customers_indexes_as_migrated(
    sessionmaker: SessionMaker, engine: AsyncEngine, tmp_path: Path
) -> None:
    """On SQLite an import larger than the customers table builds the rank indexes at the end."""
    async with engine.connect() as conn:
        migrated = await conn.run_sync(customer_indexes)
    await run_import(sessionmaker, big_file(tmp_path))
    async with engine.connect() as conn:
        assert await conn.run_sync(customer_indexes) == migrated


async def test_import_and_upsert_store_the_same_new_customer(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    row = {
        "external_id": "CRM-1",
        "name": "Ana García",
        "email": "Ana@Bücher.DE",
        "phone": "612 34 56 78",
        "telegram": "4242",
        "country": "ES",
        "timezone": "Europe/Madrid",
        "language": "es-ES",
        "revenue": "1,234.56",
        "cost_to_serve": "100",
        "potential_value": "9000.5",
        "loyalty": "gold",
        "note": 'said "call me\\later", 100% ñandú\tok',
    }
    path = write_row(tmp_path, row)
    async with sessionmaker() as session, session.begin():
        await upsert_customer(session, parse_customer(row, "US"))
        by_api = await stored(session, "CRM-1")
        await session.rollback()
    await run_import(sessionmaker, path)
    async with sessionmaker() as session:
        assert await stored(session, "CRM-1") == by_api


async def test_import_and_upsert_update_a_customer_the_same_way(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    await run_import(
        sessionmaker,
        write_csv(
            tmp_path,
            "external_id,name,language,revenue,email,loyalty,segment\n"
            "CRM-1,Ana,es,100,ana@example.com,gold,students\n",
            "first.csv",
        ),
    )
    update = {
        "external_id": "CRM-1",
        "name": "Ana García",
        "language": "",
        "revenue": "250",
        "email": "ana.garcia@example.com",
        "loyalty": "",
        "store": "Madrid",
    }
    path = write_row(tmp_path, update, "second.csv")
    async with sessionmaker() as session, session.begin():
        await upsert_customer(session, parse_customer(update, "US"))
        by_api = await stored(session, "CRM-1")
        await session.rollback()
    await run_import(sessionmaker, path)
    async with sessionmaker() as session:
        assert await stored(session, "CRM-1") == by_api


async def test_row_refused_by_the_database_does_not_block_a_later_row(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    async with sessionmaker.begin() as session:
        await upsert_customer(
            session, parse_customer({"external_id": "CRM-0", "email": "ana@example.com"}, "US")
        )
    path = write_csv(
        tmp_path,
        "external_id,email,phone\nCRM-1,ana@example.com,(415) 555-2671\nCRM-2,,(415) 555-2671\n",
    )
    report = await run_import(sessionmaker, path)
    assert [(r.line, r.field) for r in report.rejected] == [(2, "email")]
    async with sessionmaker() as session:
        assert ("phone", "+14155552671", False) in (await stored(session, "CRM-2"))["identities"]


@pytest.mark.parametrize("digits", [400, 5000])
async def test_absurd_telegram_id_is_a_rejected_row(
    sessionmaker: SessionMaker, tmp_path: Path, digits: int
) -> None:
    path = write_csv(tmp_path, f"external_id,telegram\nCRM-1,{'9' * digits}\nCRM-2,4242\n")
    report = await run_import(sessionmaker, path)
    assert [(r.line, r.field) for r in report.rejected] == [(2, "telegram")]
    assert report.imported == 1


async def test_amount_beyond_decimal_precision_is_a_rejected_row(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    # Once a Decimal InvalidOperation out of the row check, which aborted the whole import.
    path = write_csv(tmp_path, f"external_id,revenue\nCRM-1,1{'0' * 30}\nCRM-2,10\n")
    report = await run_import(sessionmaker, path)
    assert lines(report) == ["line 2: revenue: is implausibly large (at most 9,999,999,999,999.99)"]
    assert report.imported == 1


async def test_database_error_during_import_surfaces_as_itself(
    sessionmaker: SessionMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_step(conn: AsyncConnection, *_: object) -> int:
        await conn.execute(text("SELECT * FROM no_such_table"))
        return 0

    monkeypatch.setattr(crm_core.importer, "_insert_new_customers", broken_step)
    with pytest.raises(DBAPIError, match="no_such_table"):
        await run_import(sessionmaker, write_csv(tmp_path, "external_id\nCRM-1\n"))


async def test_quote_left_open_makes_the_file_unreadable(
    sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, 'external_id,name\nCRM-1,Ana\nCRM-2,"Bob\nCRM-3,Cy\nCRM-4,Dee\n')
    with pytest.raises(ImportFileError, match="not valid CSV"):
        await run_import(sessionmaker, path)
