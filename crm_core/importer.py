"""Bulk customer import from CSV, set-based, in one transaction.

How a file goes in:

1. The main process reads the CSV in batches; worker processes check each row with the same parser
   the API uses (`records.parse_customer`: phonenumbers and email-validator are CPU-bound, so
   they get every core).
2. Each checked batch is bulk-loaded into a temporary staging table (COPY on PostgreSQL).
3. A handful of set-based statements resolve external ids to customers, refuse rows whose e-mail,
   phone or Telegram id belongs to someone else, allocate ids, insert and update customers and
   add identities. No Python loop over stored rows.

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
    and_,
    false,
    func,
    literal,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
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


# --- the staging table and the set-based steps --------------------------------------------------

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
    Column("customer_id", BigInteger),
    Column("is_new", Boolean, nullable=False, server_default=false()),
    Column("reject_field", String),
    Column("reject_owner", BigInteger),
    Column("reject_line", BigInteger),
    prefixes=["TEMPORARY"],
)
_STAGED_COLUMNS = [c.name for c in staging.columns][:13]


async def _load_batch(conn: AsyncConnection, rows: list[StagedRow]) -> None:
    await conn.execute(staging.delete())
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table("import_rows", records=rows, columns=_STAGED_COLUMNS)
        return
    placeholders = ", ".join("?" for _ in _STAGED_COLUMNS)
    await conn.exec_driver_sql(
        f"INSERT INTO import_rows ({', '.join(_STAGED_COLUMNS)}) VALUES ({placeholders})", rows
    )


async def _match_existing(conn: AsyncConnection) -> None:
    s, i = staging.c, identities_table.c
    owner = (
        select(i.customer_id)
        .where(i.kind == IdentityKind.EXTERNAL.value, i.value == s.external_id)
        .scalar_subquery()
    )
    await conn.execute(update(staging).values(customer_id=owner))


async def _refuse_taken_identities(conn: AsyncConnection) -> None:
    s, i = staging.c, identities_table.c
    for kind in _IDENTITY_FIELDS:
        column = s[kind.value]
        await conn.execute(
            update(staging)
            .where(
                i.kind == kind.value,
                i.value == column,
                or_(s.customer_id.is_(None), i.customer_id != s.customer_id),
                s.reject_field.is_(None),
            )
            .values(reject_field=kind.value, reject_owner=i.customer_id)
        )


async def _refuse_repeated_identities(conn: AsyncConnection) -> None:
    """Two accepted rows of one batch giving the same e-mail (phone, Telegram id) belong to
    different customers (a batch never repeats an external id): the first line keeps it, the
    later ones are refused, exactly as if each row had come in a batch of its own."""
    s = staging.c
    for kind in _IDENTITY_FIELDS:
        column = s[kind.value]
        first = (
            select(column.label("value"), func.min(s.line).label("line"))
            .where(s.reject_field.is_(None), column.isnot(None))
            .group_by(column)
            .having(func.count() > 1)
            .subquery(f"first_{kind.value}")
        )
        await conn.execute(
            update(staging)
            .where(column == first.c.value, s.line > first.c.line, s.reject_field.is_(None))
            .values(reject_field=kind.value, reject_line=first.c.line)
        )


async def _allocate_ids(conn: AsyncConnection) -> None:
    s = staging.c
    wanted = and_(s.customer_id.is_(None), s.reject_field.is_(None))
    if conn.dialect.name == "postgresql":
        next_id = func.nextval(func.pg_get_serial_sequence("customers", "id"))
        await conn.execute(update(staging).where(wanted).values(customer_id=next_id, is_new=True))
        return
    # SQLite: the write lock is ours (BEGIN IMMEDIATE), so max(id) + n cannot be taken by another.
    base = await conn.scalar(select(func.coalesce(func.max(Customer.id), 0)))
    numbered = (
        select(s.line, func.row_number().over(order_by=s.line).label("n")).where(wanted).subquery()
    )
    await conn.execute(
        update(staging)
        .where(s.line == numbered.c.line)
        .values(customer_id=literal(base) + numbered.c.n, is_new=True)
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
    ).where(s.is_new, s.reject_field.is_(None))
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
        .where(c.id == s.customer_id, s.is_new.is_(False), s.reject_field.is_(None))
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
    s = staging.c
    accepted = s.reject_field.is_(None)
    parts = [
        select(s.customer_id, literal(IdentityKind.EXTERNAL.value), s.external_id).where(
            accepted, s.is_new
        )
    ]
    parts += [
        select(s.customer_id, literal(kind.value), s[kind.value]).where(
            accepted, s[kind.value].isnot(None)
        )
        for kind in _IDENTITY_FIELDS
    ]
    claimed = union_all(*parts).subquery("claimed")
    # WHERE true: SQLite needs it to tell the upsert's ON CONFLICT from a join's ON.
    rows = select(
        claimed.c[0],
        claimed.c[1],
        claimed.c[2],
        literal(False),
        literal(now, identities_table.c.created_at.type),
    ).where(true())
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        identities_table
    )
    statement = insert.from_select(
        ["customer_id", "kind", "value", "verified", "created_at"], rows
    ).on_conflict_do_nothing(index_elements=["kind", "value"])
    await conn.execute(statement)


async def _rejections(conn: AsyncConnection) -> list[Rejection]:
    s = staging.c
    rows = await conn.execute(
        select(
            s.line, s.reject_field, s.email, s.phone, s.telegram, s.reject_owner, s.reject_line
        ).where(s.reject_field.isnot(None))
    )
    found = []
    for line, kind, email, phone, telegram, owner, first_line in rows:
        value = {"email": email, "phone": phone, "telegram": telegram}[kind]
        reason = (
            f"{value} already belongs to customer {owner}"
            if owner is not None
            else f"{value} is also given on line {first_line} for another customer"
        )
        found.append(Rejection(line, kind, reason))
    return found


async def _write_batch(conn: AsyncConnection, rows: list[StagedRow], report: ImportReport) -> None:
    now = utcnow()
    await _load_batch(conn, rows)
    await _match_existing(conn)
    await _refuse_taken_identities(conn)
    await _refuse_repeated_identities(conn)
    await _allocate_ids(conn)
    report.imported += await _insert_new_customers(conn, now)
    report.updated += await _update_existing_customers(conn, now)
    await _insert_identities(conn, now)
    report.rejected.extend(await _rejections(conn))


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
        await conn.run_sync(lambda sync_conn: staging.create(sync_conn))
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
        await conn.run_sync(lambda sync_conn: staging.drop(sync_conn))
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
