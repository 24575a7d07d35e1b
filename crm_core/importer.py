"""Bulk customer import from CSV, set-based, in one transaction.

How a file goes in:

1. The main process reads the CSV in batches; for a file of more than one batch, worker processes
   (one per core, up to four) check each row with the same parser the API uses
   (`records.parse_customer`: phone numbers and e-mails are CPU-bound); a smaller file is checked
   in the main process. Each checked batch is staged at once (COPY on PostgreSQL) into a
   temporary table, every row with a new customer id taken from the sequence as it is staged.
2. When the whole file is staged, a few statements resolve it against what is stored: rows that
   give an identity another external id of the file also gives, or that is stored for someone
   else, are the only ones looked at one by one (`refuse_clashes`, a pure function, in line
   order); rows of an external id already stored take its customer id; rows repeating an
   external id apply in file order.
3. Set-based statements insert the new customers, update the known ones and add the identities.
   When the file is large next to the identities table (an initial load), the identities' keys,
   index and foreign key are dropped first and built once at the end (`crm_core.bulk`; on
   PostgreSQL); so are SQLite's rank indexes on customers when it is large next to the
   customers table.

No Python loop over stored rows, and no per-batch round trip to look them up.

A bad row is skipped and reported (`line N: field: reason`); the good rows go in. A file that
cannot be read, or stops being readable half-way, writes nothing: only the temporary table was
written, and the caller rolls the transaction back.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    Integer,
    MetaData,
    String,
    Table,
    and_,
    cast,
    delete,
    exists,
    func,
    literal,
    select,
    text,
    true,
    union,
    union_all,
    update,
    values,
)
from sqlalchemy import column as sql_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from typing_extensions import override

from crm_core import bulk
from crm_core.models import (
    Customer,
    CustomerStatus,
    IdentityKind,
    Tier,
    customer_rank_indexes,
    customers_table,
    identities_table,
)
from crm_core.records import CustomerRecord, FieldError, RecordErrors, parse_customer
from crm_core.sqltypes import JsonType, utcnow

__all__ = [
    "BATCH_ROWS",
    "Claimant",
    "ImportFileError",
    "ImportReport",
    "Rejection",
    "import_customers",
    "refuse_clashes",
]

BATCH_ROWS = 20_000
REQUIRED_COLUMN = "external_id"


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


def _batches(reader: Any, progress: Callable[[], None]) -> Iterator[RawBatch]:
    """Raw rows, with their line numbers, in batches of BATCH_ROWS."""
    batch: RawBatch = []
    next_line = reader.line_num + 1
    for row in reader:
        line, next_line = next_line, reader.line_num + 1
        if not "".join(row).strip():
            continue  # blank lines are not rows
        batch.append((line, row))
        if len(batch) >= BATCH_ROWS:
            yield batch
            progress()
            batch = []
    if batch:
        yield batch
        progress()


# --- staging: every checked row goes into a temporary table first ------------------------------

_staging_metadata = MetaData()
staging = Table(
    "import_rows",
    _staging_metadata,
    Column("line", BigInteger, nullable=False),
    Column("external_id", String, nullable=False),
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
    # Who the row is about: a new id taken as the row is staged, replaced by the stored
    # customer's id when the external id turns out to be known (is_new then false).
    Column("customer_id", BigInteger, nullable=False),
    Column("is_new", Boolean, nullable=False),
    prefixes=["TEMPORARY"],
)
suspect_lines = Table(
    "import_suspects",
    _staging_metadata,
    Column("line", BigInteger, nullable=False),
    prefixes=["TEMPORARY"],
)
refused_lines = Table(
    "import_refused",
    _staging_metadata,
    Column("line", BigInteger, nullable=False),
    prefixes=["TEMPORARY"],
)
# Rows repeating an external id after its first accepted row (made only when a file does).
later_rows = Table(
    "import_later",
    _staging_metadata,
    Column("line", BigInteger, nullable=False),
    Column("first_line", BigInteger, nullable=False),
    Column("round", Integer, nullable=False),  # 2 for the second row of an external id, ...
    prefixes=["TEMPORARY"],
)

# PostgreSQL joins the staging tables by hashing them, so an index would only cost upkeep;
# SQLite joins with nested loops and needs one.
_SQLITE_STAGING_INDEXES = (f"CREATE INDEX {staging.name}_line ON {staging.name} (line)",)


async def _create_staging(conn: AsyncConnection) -> None:
    await conn.run_sync(lambda sync_conn: _staging_metadata.create_all(sync_conn))
    if conn.dialect.name == "sqlite":
        for statement in _SQLITE_STAGING_INDEXES:
            await conn.exec_driver_sql(statement)


async def _copy(conn: AsyncConnection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append rows to a staging table: COPY on PostgreSQL, one executemany on SQLite."""
    if not rows:
        return
    columns = [c.name for c in table.columns]
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(table.name, records=rows, columns=columns)
        return
    placeholders = ", ".join("?" for _ in columns)
    await conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})", list(rows)
    )


class _NewIds:
    """Customer ids for rows as they are staged, in file order.

    PostgreSQL: from the customers' sequence (a row that turns out to update a stored customer
    leaves its number unused; sequences have gaps by design). SQLite: after the highest id,
    which stays ours: the import holds the write lock (BEGIN IMMEDIATE).
    """

    def __init__(self) -> None:
        self._sequence: str | None = None
        self._next: int | None = None

    async def take(self, conn: AsyncConnection, count: int) -> Sequence[int]:
        if conn.dialect.name == "postgresql":
            if self._sequence is None:
                # Looked up once; inside the SELECT it would be looked up for every row.
                found = await conn.scalar(select(func.pg_get_serial_sequence("customers", "id")))
                self._sequence = str(found)
            taken = await conn.execute(
                select(func.nextval(cast(literal(self._sequence), REGCLASS))).select_from(
                    func.generate_series(1, count)
                )
            )
            return [int(value) for (value,) in taken]
        if self._next is None:
            highest = await conn.scalar(select(func.coalesce(func.max(Customer.id), 0)))
            self._next = int(highest or 0) + 1
        first, self._next = self._next, self._next + count
        return range(first, first + count)


async def _stage(conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
    await _copy(conn, staging, rows)


# --- refusing identity clashes ------------------------------------------------------------------

# The identity kinds a row may claim besides its external id, with their staging columns.
_CLAIMS = (
    (IdentityKind.EMAIL, staging.c.email),
    (IdentityKind.PHONE, staging.c.phone),
    (IdentityKind.TELEGRAM, staging.c.telegram),
)


@dataclass(frozen=True, slots=True)
class Claimant:
    """A row that claims an identity someone else also claims or holds."""

    line: int
    external_id: str
    customer_id: int | None  # who the external id is stored as; None: not stored yet
    claims: tuple[tuple[str, str, int | None], ...]  # (kind, value, stored owner or None)


def refuse_clashes(claimants: Iterable[Claimant]) -> list[Rejection]:
    """The rows to refuse, reading the claimants in line order. Pure.

    A row is refused when an e-mail, phone or Telegram id it gives belongs to another stored
    customer, or was given by an earlier accepted row of the file for another customer (another
    external id). Refused rows claim nothing, so a later row may take what they gave.
    """
    refused: list[Rejection] = []
    first: dict[tuple[str, str], tuple[int, str]] = {}
    for row in claimants:
        rejection = None
        for kind, value, owner in row.claims:
            if owner is not None and owner != row.customer_id:
                rejection = Rejection(
                    row.line, kind, f"{value} already belongs to customer {owner}"
                )
                break
        for kind, value, _ in row.claims if rejection is None else ():
            line, external_id = first.get((kind, value), (0, row.external_id))
            if external_id != row.external_id:
                reason = f"{value} is also given on line {line} for another customer"
                rejection = Rejection(row.line, kind, reason)
                break
        if rejection is not None:
            refused.append(rejection)
            continue
        for kind, value, _ in row.claims:
            first.setdefault((kind, value), (row.line, row.external_id))
    return refused


def _owner(kind: str, value: ColumnElement[Any], name: str) -> Any:
    """An alias of identities joined to the stored holder of (kind, value)."""
    holder = identities_table.alias(name)
    return holder, and_(holder.c.kind == kind, holder.c.value == value)


async def _contested(conn: AsyncConnection) -> list[Claimant]:
    """The staged rows that clash, or may: every row giving an identity that another external id
    of the file also gives, or that is stored for another customer. Everything else is accepted
    whatever the order, so only these few go through `refuse_clashes`."""
    s = staging.c
    external, on_external = _owner(IdentityKind.EXTERNAL.value, s.external_id, "e")
    suspects: list[Any] = []
    for kind, column in _CLAIMS:
        # Given on several rows (perhaps all of one external id: `refuse_clashes` tells).
        other = staging.alias("o")
        shared = (
            select(other.c[column.name])
            .where(other.c[column.name].is_not(None))
            .group_by(other.c[column.name])
            .having(func.count() > 1)
        )
        suspects.append(select(s.line).where(column.in_(shared)))
        # Stored for someone else than the row's external id.
        held, on_held = _owner(kind.value, column, "h")
        suspects.append(
            select(s.line)
            .join(held, on_held)
            .outerjoin(external, on_external)
            .where(
                column.is_not(None),
                external.c.customer_id.is_(None) | (external.c.customer_id != held.c.customer_id),
            )
        )
    found = await conn.execute(suspect_lines.insert().from_select(["line"], union(*suspects)))
    if not found.rowcount:
        return []
    owners = [_owner(kind.value, column, f"o_{kind.value}") for kind, column in _CLAIMS]
    source: Any = staging.join(suspect_lines, suspect_lines.c.line == s.line).outerjoin(
        external, on_external
    )
    for holder, on_holder in owners:
        source = source.outerjoin(holder, on_holder)
    query = (
        select(
            s.line,
            s.external_id,
            external.c.customer_id,
            *(
                c
                for (_, column), (holder, _) in zip(_CLAIMS, owners, strict=True)
                for c in (column, holder.c.customer_id)
            ),
        )
        .select_from(source)
        .order_by(s.line)
    )
    claimants = []
    for line, external_id, customer_id, *claimed in await conn.execute(query):
        claims = tuple(
            (kind.value, claimed[2 * n], claimed[2 * n + 1])
            for n, (kind, _) in enumerate(_CLAIMS)
            if claimed[2 * n] is not None
        )
        claimants.append(Claimant(line, external_id, customer_id, claims))
    return claimants


async def _drop_refused(conn: AsyncConnection, refused: list[Rejection]) -> None:
    if not refused:
        return
    await _copy(conn, refused_lines, [(rejection.line,) for rejection in refused])
    await conn.execute(delete(staging).where(staging.c.line.in_(select(refused_lines.c.line))))


# --- writing what was accepted ------------------------------------------------------------------


async def _claim_stored_customers(conn: AsyncConnection) -> int:
    """Rows whose external id is stored update that customer: take its id. Returns how many."""
    e = identities_table.c
    result = await conn.execute(
        update(staging)
        .where(e.kind == IdentityKind.EXTERNAL.value, e.value == staging.c.external_id)
        .values(customer_id=e.customer_id, is_new=False)
    )
    return int(result.rowcount)


async def _number_later_rows(conn: AsyncConnection) -> bool:
    """Find the rows repeating an external id of an earlier row; they take its customer id.
    Returns whether there are any."""
    s = staging.c
    repeated = select(s.external_id).group_by(s.external_id).having(func.count() > 1)
    numbered = (
        select(
            s.line,
            func.min(s.line).over(partition_by=s.external_id).label("first_line"),
            func.row_number().over(partition_by=s.external_id, order_by=s.line).label("round"),
        )
        .where(s.external_id.in_(repeated))
        .subquery("numbered")
    )
    n = numbered.c
    found = await conn.execute(
        later_rows.insert().from_select(
            ["line", "first_line", "round"],
            select(n.line, n.first_line, n.round).where(n.round > 1),
        )
    )
    if not found.rowcount:
        return False
    first = staging.alias("first")
    await conn.execute(
        update(staging)
        .where(
            staging.c.line == later_rows.c.line,
            first.c.line == later_rows.c.first_line,
        )
        .values(customer_id=first.c.customer_id)
    )
    return True


def _first_rows(repeats: bool) -> ColumnElement[bool]:
    """Rows that are the first (accepted) row of their external id."""
    if not repeats:
        return true()
    return staging.c.line.not_in(select(later_rows.c.line))


async def _insert_new_customers(conn: AsyncConnection, now: datetime, repeats: bool) -> int:
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
        func.coalesce(s.attributes, literal({}, JsonType)),
        literal(now, customers_table.c.created_at.type),
        literal(now, customers_table.c.updated_at.type),
    ).where(s.is_new, _first_rows(repeats))
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
        "attributes",
        "created_at",
        "updated_at",
    ]
    result = await conn.execute(customers_table.insert().from_select(columns, fresh))
    return int(result.rowcount)


async def _update_customers(conn: AsyncConnection, rows: Any, now: datetime) -> int:
    """Apply staged rows (a subquery with the staging columns) to the stored customers: a value
    given replaces the stored one, an empty one keeps it."""
    s, c = rows.c, customers_table.c
    attributes: ColumnElement[Any]
    if conn.dialect.name == "postgresql":
        attributes = c.attributes.op("||")(func.coalesce(s.attributes, text("'{}'::jsonb")))
    else:
        attributes = func.json_patch(c.attributes, func.coalesce(s.attributes, "{}"))
    keep = func.coalesce
    result = await conn.execute(
        update(customers_table)
        .where(c.id == s.customer_id)
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
        ),
        execution_options={"synchronize_session": False},
    )
    return int(result.rowcount)


async def _update_existing_customers(conn: AsyncConnection, now: datetime, repeats: bool) -> int:
    """The first row of every external id already stored."""
    rows = select(staging).where(staging.c.is_new.is_(False), _first_rows(repeats))
    return await _update_customers(conn, rows.subquery("known"), now)


async def _apply_later_rows(conn: AsyncConnection, now: datetime) -> int:
    """Rows repeating an external id update it in file order: all second rows, then all third
    rows, ... (a set-based step can give a customer one new version only)."""
    updated = 0
    last = int(await conn.scalar(select(func.max(later_rows.c.round))) or 1)
    for round_ in range(2, last + 1):
        rows = (
            select(staging)
            .join(later_rows, later_rows.c.line == staging.c.line)
            .where(later_rows.c.round == round_)
            .subquery("later")
        )
        updated += await _update_customers(conn, rows, now)
    return updated


def _claimed_identities(conn: AsyncConnection, *, new: bool, repeats: bool) -> Any:
    """(customer_id, kind, value) of the identities the accepted rows of new (or of stored)
    customers give: each row's e-mail, phone and Telegram id, and a new customer's external id."""
    s = staging.c
    parts: list[Any] = []
    if new:
        parts.append(
            select(
                s.customer_id,
                literal(IdentityKind.EXTERNAL.value).label("kind"),
                s.external_id.label("value"),
            ).where(s.is_new, _first_rows(repeats))
        )
    if conn.dialect.name == "postgresql":
        # One pass over the rows, each turned into its claims (LATERAL VALUES).
        claim = (
            values(sql_column("kind", String), sql_column("value", String), name="claim")
            .data([(literal(kind.value), column) for kind, column in _CLAIMS])
            .lateral()
        )
        parts.append(
            select(s.customer_id, claim.c.kind, claim.c.value)
            .select_from(staging.join(claim, true()))
            .where(s.is_new.is_(new), claim.c.value.is_not(None))
        )
    else:
        parts.extend(
            select(s.customer_id, literal(kind.value), column).where(
                s.is_new.is_(new), column.is_not(None)
            )
            for kind, column in _CLAIMS
        )
    # UNION drops the same identity given again by a later row of the same external id.
    return (union(*parts) if repeats else union_all(*parts)).subquery("claimed")


async def _insert_identities(
    conn: AsyncConnection, now: datetime, *, new: bool, repeats: bool, indexed: bool
) -> None:
    """Add the identities the accepted rows give to new (or to stored) customers.

    A new customer's identities cannot be stored yet: any that was would have made its row
    clash (and be refused). A stored customer's may be, by that customer: those are left out.
    """
    claimed = _claimed_identities(conn, new=new, repeats=repeats)
    customer_id, kind, value = claimed.c
    i = identities_table.c
    rows = select(
        customer_id,
        kind,
        value,
        literal(False),
        literal(now, identities_table.c.created_at.type),
    ).where(  # a WHERE also tells SQLite the upsert's ON CONFLICT from a join's ON
        true() if new else ~exists().where(i.kind == kind, i.value == value)
    )
    columns = ["customer_id", "kind", "value", "verified", "created_at"]
    if not indexed:
        # The table is ours alone and its keys are built afterwards (`crm_core.bulk`): a plain
        # insert, in any order.
        await conn.execute(identities_table.insert().from_select(columns, rows))
        return
    # In index order: the unique B-tree then fills page after page instead of at random.
    rows = rows.order_by(kind, value)
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        identities_table
    )
    # DO NOTHING: an identity a concurrent inbound message created meanwhile stays with its
    # owner rather than failing the whole import.
    await conn.execute(
        insert.from_select(columns, rows).on_conflict_do_nothing(index_elements=["kind", "value"])
    )


# --- bulk loads ---------------------------------------------------------------------------------


async def _large_for_customers(conn: AsyncConnection, staged: int) -> bool:
    """Whether the file is large next to the customers table (fewer customers stored than rows
    staged): then SQLite's rank indexes are dropped and built once at the end. Entries added one
    at a time at random places cost several times the one sort of a build, and leave the index
    scattered over half-full pages that every tier recompute reads."""
    if conn.dialect.name != "sqlite":
        return False
    return await bulk.is_smaller_than(conn, customers_table, staged)


async def _large_for_identities(conn: AsyncConnection, staged: int) -> bool:
    """Whether the file is large next to the identities table (fewer identities stored than rows
    staged: an initial load, or one that more than doubles it): then the identities' keys and
    indexes are set aside and built once at the end (`crm_core.bulk`)."""
    if conn.dialect.name != "postgresql":
        return False
    return await bulk.is_smaller_than(conn, identities_table, staged)


async def _write_staged(conn: AsyncConnection, staged: int, report: ImportReport) -> None:
    """Resolve and write every staged row with a few set-based statements."""
    if conn.dialect.name == "postgresql":
        # Big joins, sorts and hashes over the whole file: memory, not temporary files; no JIT
        # (compiling costs more than it saves on these plans); and statistics on the staged rows
        # (temporary tables are never analysed automatically) for sound join plans.
        await conn.execute(text("SET LOCAL work_mem = '256MB'"))
        await conn.execute(text("SET LOCAL jit = off"))
        await conn.execute(text(f"ANALYZE {staging.name}"))
    now = utcnow()
    rebuild_ranks = await _large_for_customers(conn, staged)
    if rebuild_ranks:
        await bulk.drop_indexes(conn, customer_rank_indexes)
    # Set aside before anything is read: nobody can then add an identity the import duplicates.
    large = await _large_for_identities(conn, staged)
    if large:
        await bulk.set_aside(conn, identities_table, keys=True)
    refused = refuse_clashes(await _contested(conn))
    report.rejected.extend(refused)
    await _drop_refused(conn, refused)
    known = await _claim_stored_customers(conn)
    repeats = await _number_later_rows(conn)
    report.imported += await _insert_new_customers(conn, now, repeats)
    if known:
        report.updated += await _update_existing_customers(conn, now, repeats)
    if repeats:
        report.updated += await _apply_later_rows(conn, now)
    if known < staged - len(refused):
        await _insert_identities(conn, now, new=True, repeats=repeats, indexed=not large)
    if known:
        await _insert_identities(conn, now, new=False, repeats=repeats, indexed=not large)
    if large:
        await bulk.restore(conn, identities_table, keys=True)
    if rebuild_ranks:
        await bulk.build_indexes(conn, customer_rank_indexes)


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
        batches = _batches(reader, lambda: progress(raw.tell()) if progress else None)
        await _create_staging(conn)
        first = next(batches, None)
        second = next(batches, None) if first is not None else None
        big = first is not None and second is not None and len(first) + len(second) > BATCH_ROWS
        if big and workers > 1:
            # Spawned, not forked: forking a process that runs an event loop and driver
            # threads can copy a held lock into the child.
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        pending = [b for b in (first, second) if b is not None]
        staged = await _check_and_stage(
            conn, header, pending, batches, default_region, pool, workers, report
        )
        if pool is not None:
            pool.shutdown()  # every row is checked: give the cores to the database
            pool = None
        if staged:
            await _write_staged(conn, staged, report)
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


async def _check_and_stage(
    conn: AsyncConnection,
    header: list[str],
    first: list[RawBatch],
    rest: Iterator[RawBatch],
    region: str,
    pool: ProcessPoolExecutor | None,
    workers: int,
    report: ImportReport,
) -> int:
    """Keep the workers busy checking the next batches while this process stages the checked
    ones; returns how many rows were staged."""
    loop = asyncio.get_running_loop()
    in_flight: list[asyncio.Future[tuple[list[StagedRow], list[Rejection]]]] = []
    staged = 0
    ids = _NewIds()

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
            staged += await _stage_checked(conn, await in_flight.pop(0), ids, report)
    while in_flight:
        staged += await _stage_checked(conn, await in_flight.pop(0), ids, report)
    return staged


async def _stage_checked(
    conn: AsyncConnection,
    checked: tuple[list[StagedRow], list[Rejection]],
    ids: _NewIds,
    report: ImportReport,
) -> int:
    good, bad = checked
    report.rejected.extend(bad)
    if good:
        new_ids = await ids.take(conn, len(good))
        await _stage(
            conn, [(*row, new_id, True) for row, new_id in zip(good, new_ids, strict=True)]
        )
    return len(good)
