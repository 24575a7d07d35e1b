"""Bulk customer import from CSV, set-based, in one transaction.

How a file goes in:

1. The main process reads the CSV in batches; worker processes check each row with the same parser
   the API uses (`records.parse_customer`: phonenumbers and email-validator are CPU-bound, so
   they get every core).
2. Each checked batch is matched against what is stored with one indexed query per identity
   kind; rows whose e-mail, phone or Telegram id belongs to someone else are refused, and ids
   are allocated for the new customers (`resolve_batch`, a pure function).
3. The batch is bulk-loaded into temporary staging tables (COPY on PostgreSQL), and three
   set-based statements insert the new customers, update the known ones and add identities.
   No Python loop over stored rows, and no per-row round trip.

A bad row is skipped and reported (`line N: field: reason`); the good rows go in. A file that
cannot be read, or stops being readable half-way, writes nothing: the transaction rolls back.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    MetaData,
    String,
    Table,
    any_,
    func,
    literal,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from typing_extensions import override

from crm_core.models import (
    Customer,
    CustomerStatus,
    IdentityKind,
    Tier,
    customers_table,
    identities_table,
)
from crm_core.records import CustomerRecord, FieldError, RecordErrors, parse_customer
from crm_core.sqltypes import JsonType, utcnow

__all__ = ["BATCH_ROWS", "ImportFileError", "ImportReport", "Rejection", "import_customers"]

BATCH_ROWS = 20_000
REQUIRED_COLUMN = "external_id"
_IDENTITY_FIELDS = (IdentityKind.EMAIL, IdentityKind.PHONE, IdentityKind.TELEGRAM)


class ImportFileError(Exception):
    """The file as a whole cannot be imported; nothing was written."""


@dataclass(frozen=True, slots=True, order=True)
class Rejection:
    line: int
    field: str
    reason: str

    @override
    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


@dataclass(slots=True)
class ImportReport:
    imported: int = 0
    updated: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return f"imported {self.imported}, updated {self.updated}, rejected {len(self.rejected)}"


# --- reading and checking -----------------------------------------------------------------------

# One staged row: (line, external_id, name, language, timezone, country, email, phone, telegram,
#                  revenue_cents, cost_to_serve_cents, potential_value_cents, attributes_json)
StagedRow = tuple[
    int,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    int | None,
    int | None,
    int | None,
    str | None,
]
RawBatch = list[tuple[int, list[str]]]


def _staged(line: int, record: CustomerRecord) -> StagedRow:
    return (
        line,
        record.external_id,
        record.name,
        record.language,
        record.timezone,
        record.country,
        record.email,
        record.phone,
        record.telegram,
        record.revenue_cents,
        record.cost_to_serve_cents,
        record.potential_value_cents,
        json.dumps(record.attributes, ensure_ascii=False) if record.attributes else None,
    )


def check_batch(
    header: Sequence[str], rows: RawBatch, region: str
) -> tuple[list[StagedRow], list[Rejection]]:
    """Parse and check raw rows (runs in a worker process). Pure."""
    good: list[StagedRow] = []
    bad: list[Rejection] = []
    width = len(header)
    for line, row in rows:
        if len(row) != width:
            bad.append(Rejection(line, "row", f"has {len(row)} fields, the header has {width}"))
            continue
        try:
            record = parse_customer(dict(zip(header, row, strict=True)), region)
        except RecordErrors as e:
            bad.append(_first_rejection(line, e.errors))
            continue
        good.append(_staged(line, record))
    return good, bad


def _first_rejection(line: int, errors: list[FieldError]) -> Rejection:
    first = errors[0]
    reason = first.reason
    if len(errors) > 1:
        reason += " (also: " + "; ".join(str(e) for e in errors[1:]) + ")"
    return Rejection(line, first.field, reason)


def _read_header(reader: Iterator[list[str]]) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError("the file is empty: it needs a header row with external_id") from None
    header = [name.strip().lower() for name in header]
    if REQUIRED_COLUMN not in header:
        raise ImportFileError(f"line 1: the header has no {REQUIRED_COLUMN} column")
    seen: set[str] = set()
    for name in header:
        if not name:
            raise ImportFileError("line 1: the header has an empty column name")
        if name in seen:
            raise ImportFileError(f"line 1: the column {name!r} appears twice")
        seen.add(name)
    return header


def _batches(reader: Any, key_index: int, progress: Callable[[], None]) -> Iterator[RawBatch]:
    """Raw rows in batches; a batch never holds the same external id twice (the later row
    updates the earlier one, so they must go in as two steps)."""
    batch: RawBatch = []
    keys: set[str] = set()
    next_line = reader.line_num + 1
    for row in reader:
        line, next_line = next_line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue  # blank lines are not rows
        key = row[key_index].strip() if key_index < len(row) else ""
        if len(batch) >= BATCH_ROWS or (key and key in keys):
            yield batch
            progress()
            batch, keys = [], set()
        batch.append((line, row))
        keys.add(key)
    if batch:
        yield batch
        progress()


# --- resolving a batch against what is stored -----------------------------------------------

# Positions in a StagedRow of the identities a row claims.
_CLAIMS = (
    (1, IdentityKind.EXTERNAL),
    (6, IdentityKind.EMAIL),
    (7, IdentityKind.PHONE),
    (8, IdentityKind.TELEGRAM),
)
_LOOKUP_CHUNK = 10_000  # values per IN (...): under SQLite's and asyncpg's parameter limits

Owners = dict[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class Resolved:
    row: StagedRow
    customer_id: int | None  # None: a new customer


async def _owners(conn: AsyncConnection, rows: list[StagedRow]) -> Owners:
    """Who already holds each identity the batch claims: one indexed query per kind."""
    i = identities_table.c
    owners: Owners = {}
    for position, kind in _CLAIMS:
        values = sorted({str(row[position]) for row in rows if row[position] is not None})
        # PostgreSQL takes the whole batch as one array parameter (= ANY); a long IN list of
        # separate parameters costs it more to plan than to run. SQLite has no arrays.
        chunks = (
            [values]
            if conn.dialect.name == "postgresql"
            else [values[n : n + _LOOKUP_CHUNK] for n in range(0, len(values), _LOOKUP_CHUNK)]
        )
        for chunk in chunks:
            if not chunk:
                continue
            matches = (
                i.value == any_(literal(chunk, ARRAY(String)))
                if conn.dialect.name == "postgresql"
                else i.value.in_(chunk)
            )
            found = await conn.execute(
                select(i.value, i.customer_id).where(i.kind == kind.value, matches)
            )
            owners.update(((kind.value, value), owner) for value, owner in found)
    return owners


def resolve_batch(rows: list[StagedRow], owners: Owners) -> tuple[list[Resolved], list[Rejection]]:
    """Match rows to stored customers and refuse identity clashes. Pure; rows in line order.

    A row is refused when an e-mail, phone or Telegram id it gives belongs to another stored
    customer, or was given by an earlier accepted row of the batch for another customer (a
    batch never repeats an external id). Refused rows claim nothing, so the outcome is the
    same whatever the batch size.
    """
    accepted: list[Resolved] = []
    refused: list[Rejection] = []
    first_line: dict[tuple[str, str], int] = {}
    for row in rows:
        customer_id = owners.get((IdentityKind.EXTERNAL.value, row[1]))
        claims = [(kind.value, row[pos]) for pos, kind in _CLAIMS[1:] if row[pos] is not None]
        rejection = None
        for kind, value in claims:
            owner = owners.get((kind, value))  # type: ignore[arg-type]
            if owner is not None and owner != customer_id:
                rejection = Rejection(row[0], kind, f"{value} already belongs to customer {owner}")
                break
        for kind, value in claims if rejection is None else ():
            if (kind, value) in first_line:
                line = first_line[(kind, value)]  # type: ignore[index]
                reason = f"{value} is also given on line {line} for another customer"
                rejection = Rejection(row[0], kind, reason)
                break
        if rejection is not None:
            refused.append(rejection)
            continue
        for kind, value in claims:
            first_line[(kind, value)] = row[0]  # type: ignore[index]
        accepted.append(Resolved(row, customer_id))
    return accepted, refused


async def _allocate_ids(conn: AsyncConnection, count: int) -> list[int]:
    if count == 0:
        return []
    if conn.dialect.name == "postgresql":
        # Look the sequence up once; inside the SELECT it would be looked up for every row.
        sequence = await conn.scalar(select(func.pg_get_serial_sequence("customers", "id")))
        result = await conn.execute(
            text("SELECT nextval(CAST(:sequence AS regclass)) FROM generate_series(1, :count)"),
            {"sequence": sequence, "count": count},
        )
        return [int(value) for (value,) in result]
    # SQLite: the write lock is ours (BEGIN IMMEDIATE), so max(id) + n cannot be taken by another.
    base = int(await conn.scalar(select(func.coalesce(func.max(Customer.id), 0))) or 0)
    return list(range(base + 1, base + count + 1))


# --- the staging tables and the set-based writes ---------------------------------------------

_staging_metadata = MetaData()
staging = Table(
    "import_rows",
    _staging_metadata,
    Column("line", BigInteger, primary_key=True),
    Column("external_id", String),
    Column("name", String),
    Column("language", String),
    Column("timezone", String),
    Column("country", String),
    Column("email", String),
    Column("phone", String),
    Column("telegram", String),
    Column("revenue_cents", BigInteger),
    Column("cost_to_serve_cents", BigInteger),
    Column("potential_value_cents", BigInteger),
    Column("attributes", JsonType),
    Column("customer_id", BigInteger, nullable=False),
    Column("is_new", Boolean, nullable=False),
    prefixes=["TEMPORARY"],
)
staged_identities = Table(
    "import_identities",
    _staging_metadata,
    Column("customer_id", BigInteger, nullable=False),
    Column("kind", String, nullable=False),
    Column("value", String, nullable=False),
    prefixes=["TEMPORARY"],
)


async def _copy(conn: AsyncConnection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk-load rows into an (emptied) staging table: COPY on PostgreSQL."""
    columns = [c.name for c in table.columns]
    if conn.dialect.name == "postgresql":
        # TRUNCATE, not DELETE: temporary tables are never vacuumed, so deleted rows would pile
        # up and every later statement would scan them again.
        await conn.execute(text(f"TRUNCATE {table.name}"))
        if not rows:
            return
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(table.name, records=rows, columns=columns)
        return
    await conn.execute(table.delete())
    if not rows:
        return
    placeholders = ", ".join("?" for _ in columns)
    await conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})", list(rows)
    )


async def _insert_new_customers(conn: AsyncConnection, now: datetime) -> int:
    s = staging.c
    fresh = select(
        s.customer_id,
        literal(CustomerStatus.CUSTOMER.value),
        s.name,
        s.language,
        s.timezone,
        s.country,
        func.coalesce(s.revenue_cents, 0),
        func.coalesce(s.cost_to_serve_cents, 0),
        func.coalesce(s.potential_value_cents, 0),
        literal(Tier.STANDARD.value),
        literal("not computed yet"),
        func.coalesce(s.attributes, literal({}, JsonType)),
        literal(now, customers_table.c.created_at.type),
        literal(now, customers_table.c.updated_at.type),
    ).where(s.is_new)
    columns = [
        "id",
        "status",
        "name",
        "language",
        "timezone",
        "country",
        "revenue_cents",
        "cost_to_serve_cents",
        "potential_value_cents",
        "tier",
        "tier_reason",
        "attributes",
        "created_at",
        "updated_at",
    ]
    result = await conn.execute(customers_table.insert().from_select(columns, fresh))
    return int(result.rowcount)


async def _update_existing_customers(conn: AsyncConnection, now: datetime) -> int:
    s, c = staging.c, customers_table.c
    attributes: ColumnElement[Any]
    if conn.dialect.name == "postgresql":
        attributes = c.attributes.op("||")(func.coalesce(s.attributes, text("'{}'::jsonb")))
    else:
        attributes = func.json_patch(c.attributes, func.coalesce(s.attributes, "{}"))
    keep = func.coalesce
    result = await conn.execute(
        update(customers_table)
        .where(c.id == s.customer_id, s.is_new.is_(False))
        .values(
            status=CustomerStatus.CUSTOMER.value,
            name=keep(s.name, c.name),
            language=keep(s.language, c.language),
            timezone=keep(s.timezone, c.timezone),
            country=keep(s.country, c.country),
            revenue_cents=keep(s.revenue_cents, c.revenue_cents),
            cost_to_serve_cents=keep(s.cost_to_serve_cents, c.cost_to_serve_cents),
            potential_value_cents=keep(s.potential_value_cents, c.potential_value_cents),
            attributes=attributes,
            updated_at=now,
        )
    )
    return int(result.rowcount)


async def _insert_identities(conn: AsyncConnection, now: datetime) -> None:
    s = staged_identities.c
    # WHERE true: SQLite needs it to tell the upsert's ON CONFLICT from a join's ON.
    rows = select(
        s.customer_id,
        s.kind,
        s.value,
        literal(False),
        literal(now, identities_table.c.created_at.type),
    ).where(true())
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        identities_table
    )
    # DO NOTHING: an identity a concurrent inbound message created meanwhile stays with its
    # owner rather than failing the whole import.
    statement = insert.from_select(
        ["customer_id", "kind", "value", "verified", "created_at"], rows
    ).on_conflict_do_nothing(index_elements=["kind", "value"])
    await conn.execute(statement)


async def _add_identities(
    conn: AsyncConnection, rows: list[tuple[int, str, str]], now: datetime
) -> None:
    """Straight COPY into identities on PostgreSQL: the batch was checked against what is stored
    moments ago, so a clash means a concurrent inbound message created one of them meanwhile;
    then, and only then, the batch goes the slower way that leaves such an identity to its
    owner."""
    if conn.dialect.name == "postgresql" and rows:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        try:
            async with conn.begin_nested():
                await driver.copy_records_to_table(
                    "identities",
                    records=[(*row, False, now) for row in rows],
                    columns=["customer_id", "kind", "value", "verified", "created_at"],
                )
            return
        except IntegrityError:
            pass
    await _copy(conn, staged_identities, rows)
    await _insert_identities(conn, now)


def _new_identities(resolved: list[Resolved], owners: Owners) -> list[tuple[int, str, str]]:
    claimed = []
    for item in resolved:
        assert item.customer_id is not None
        for position, kind in _CLAIMS:
            value = item.row[position]
            if value is not None and (kind.value, value) not in owners:
                claimed.append((item.customer_id, kind.value, str(value)))
    return claimed


async def _write_batch(conn: AsyncConnection, rows: list[StagedRow], report: ImportReport) -> None:
    now = utcnow()
    owners = await _owners(conn, rows)
    accepted, refused = resolve_batch(rows, owners)
    report.rejected.extend(refused)
    new_ids = iter(await _allocate_ids(conn, sum(r.customer_id is None for r in accepted)))
    resolved = [
        Resolved(r.row, r.customer_id if r.customer_id is not None else next(new_ids))
        for r in accepted
    ]
    is_new = {r.row[0] for r in accepted if r.customer_id is None}
    await _copy(conn, staging, [(*r.row, r.customer_id, r.row[0] in is_new) for r in resolved])
    report.imported += await _insert_new_customers(conn, now)
    if len(is_new) < len(resolved):
        report.updated += await _update_existing_customers(conn, now)
    await _add_identities(conn, _new_identities(resolved, owners), now)


# --- the whole import ---------------------------------------------------------------------------


def _open_csv(path: Path) -> tuple[BinaryIO, Any]:
    try:
        raw = path.open("rb")
    except OSError as e:
        raise ImportFileError(f"cannot read {path}: {e.strerror}") from None
    text_stream = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    # strict: a quote left open must stop the import, not swallow the rest of the file.
    return raw, csv.reader(text_stream, strict=True)


def _first_undecodable_line(path: Path) -> int:
    """The decoder reads ahead in chunks, so its error does not know the line: find it."""
    with path.open("rb") as raw:
        for number, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


async def import_customers(
    session: AsyncSession,
    path: Path,
    default_region: str,
    *,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> ImportReport:
    """Import the CSV at `path` inside the caller's transaction (which the caller commits).

    `progress` receives the number of bytes read so far. Raises ImportFileError when the file
    cannot be read; the caller must then roll back (nothing is half-written).
    """
    raw, reader = _open_csv(path)
    report = ImportReport()
    conn = await session.connection()
    workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    pool: ProcessPoolExecutor | None = None
    try:
        header = _read_header(reader)
        batches = _batches(
            reader,
            header.index(REQUIRED_COLUMN),
            lambda: progress(raw.tell()) if progress else None,
        )
        await conn.run_sync(lambda sync_conn: _staging_metadata.create_all(sync_conn))
        first = next(batches, None)
        second = next(batches, None) if first is not None else None
        big = first is not None and second is not None and len(first) + len(second) > BATCH_ROWS
        if big and workers > 1:
            # Spawned, not forked: forking a process that runs an event loop and driver
            # threads can copy a held lock into the child.
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        pending = [b for b in (first, second) if b is not None]
        await _check_and_write(
            conn, header, pending, batches, default_region, pool, workers, report
        )
        # Not in a `finally`: on failure the caller rolls back, which drops the table too, and a
        # DROP in an aborted transaction would hide the real error.
        await conn.run_sync(lambda sync_conn: _staging_metadata.drop_all(sync_conn))
    except UnicodeDecodeError as e:
        line = _first_undecodable_line(path)
        raise ImportFileError(f"line {line}: the file is not UTF-8 text ({e.reason})") from None
    except csv.Error as e:
        raise ImportFileError(f"line {reader.line_num}: not valid CSV ({e})") from None
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        raw.close()
    report.rejected.sort()
    return report


async def _check_and_write(
    conn: AsyncConnection,
    header: list[str],
    first: list[RawBatch],
    rest: Iterator[RawBatch],
    region: str,
    pool: ProcessPoolExecutor | None,
    workers: int,
    report: ImportReport,
) -> None:
    """Keep the workers busy checking the next batches while this process writes the current one."""
    loop = asyncio.get_running_loop()
    in_flight: list[asyncio.Future[tuple[list[StagedRow], list[Rejection]]]] = []

    def submit(batch: RawBatch) -> None:
        if pool is None:
            future = loop.create_future()
            future.set_result(check_batch(header, batch, region))
        else:
            future = loop.run_in_executor(pool, check_batch, header, batch, region)
        in_flight.append(future)

    for batch in first:
        submit(batch)
    for batch in rest:
        submit(batch)
        while len(in_flight) > workers + 1:
            await _write_checked(conn, await in_flight.pop(0), report)
    while in_flight:
        await _write_checked(conn, await in_flight.pop(0), report)


async def _write_checked(
    conn: AsyncConnection, checked: tuple[list[StagedRow], list[Rejection]], report: ImportReport
) -> None:
    good, bad = checked
    report.rejected.extend(bad)
    await _write_batch(conn, good, report)
