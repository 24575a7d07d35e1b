"""Issue #2: how fast do a million customers go in, and how fast are their tiers recomputed?

    .venv/bin/python -m bench.import_tiers [--rows N] [--db sqlite,postgresql] [--postgres-url URL]
    make bench ARGS="--rows 200000 --db postgresql --phases"

Generates N realistic customer rows as a CSV file (valid, unique phone numbers and e-mails, several
countries with matching time zones and languages, a skewed value distribution), then for each
database, on a fresh, migrated database:

1. times `crm_core.importer.import_customers` on the file in one transaction (on the fresh
   database it is an initial load: on PostgreSQL the identities' keys are built once at the end);
2. times `crm_core.tiers.recompute_tiers` in its own transaction and prints the tier counts (the
   first recompute: every customer gets a reason, and about a quarter a new tier), then times a
   second one, as a nightly recompute runs when little has changed (here nothing: it still
   classifies everyone, and writes nothing);
3. measures the ceiling: the same rows bulk-inserted raw into a bare table with no indexes and no
   checking (COPY on PostgreSQL, executemany on SQLite), to show how far the import is from what
   the database can take at all.

Targets from the issue, per 1,000,000 rows (scaled linearly for other sizes): the import in at
most 60 s on PostgreSQL, the tier recompute in at most 10 s.

`--phases` additionally times every SQL statement of the first tier recompute, each step of the
importer (by wrapping its module-level functions for the run; nothing is changed on disk) and one
batch of row checking in this process, to show where the time goes: reading the CSV and staging
the checked rows happen while the file is read (the rest of that time is waiting for the
checkers), the other steps after it. This is a script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import inspect
import itertools
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.customers import generate_customers
from crm_core import importer
from crm_core.importer import BATCH_ROWS, ImportReport, check_batch, import_customers
from crm_core.models import Tier
from crm_core.tiers import TierRules, recompute_tiers, tier_counts
from sastre.db import SessionMaker, database, migrate

__all__ = ["bench_database", "main"]

MILLION = 1_000_000
IMPORT_TARGET_S = 60.0  # per million rows, PostgreSQL (issue #2)
TIERS_TARGET_S = 10.0  # per million rows (issue #2)
DEFAULT_REGION = "US"


def _read_rows(path: Path, limit: int | None = None) -> tuple[list[str], list[tuple[str, ...]]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [tuple(row) for row in itertools.islice(reader, limit)]


def _sample_rejections(path: Path, sample: int) -> tuple[int, list[str]]:
    """Check the first rows with the importer's own checker: the generator must make valid rows."""
    header, rows = _read_rows(path, sample)
    good, bad = check_batch(
        [name.lower() for name in header],
        [(line, list(row)) for line, row in enumerate(rows, start=2)],
        DEFAULT_REGION,
    )
    return len(good), [str(rejection) for rejection in bad[:5]]


# --- phase timing (--phases) --------------------------------------------------------------------


@contextlib.contextmanager
def _timed_statements(engine: AsyncEngine, timed: list[tuple[str, float]]) -> Iterator[None]:
    """Record (statement, seconds) for every statement the engine runs during the block."""
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        timed.append((" ".join(statement.split()), time.perf_counter() - started.pop()))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        event.remove(engine.sync_engine, "after_cursor_execute", after)


def _print_statements(name: str, timed: list[tuple[str, float]], total: float) -> None:
    _say(name, "recompute statements over 1% of it (seconds, share; the rest: commit and DDL):")
    for statement, seconds in timed:
        if seconds >= total / 100:
            _say(name, f"  {seconds:8.2f} s {seconds / total:6.1%}  {statement[:90]}")


# The importer's own coroutines that are not steps but drive them (their time is the steps').
_DRIVERS = frozenset({"import_customers", "_check_and_stage", "_stage_checked", "_write_staged"})
# Pure-Python steps the main process runs, timed when the importer has them.
_SYNC_STEPS = ("refuse_clashes",)


@contextlib.contextmanager
def _timed_importer_phases(seconds: dict[str, float]) -> Iterator[list[str]]:
    """Wrap the importer's module-level steps with timers for the duration of the block.

    Yields the names it could not find (the importer may have been reorganised since).
    """
    saved: dict[str, Any] = {}
    missing: list[str] = []

    def timed_async(name: str, step: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await step(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - start

        return timed

    def timed_sync(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - start

        return timed

    def timed_batches(step: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            batches = step(*args, **kwargs)
            while True:
                start = time.perf_counter()
                batch = next(batches, None)
                seconds["_batches (read CSV)"] += time.perf_counter() - start
                if batch is None:
                    return
                yield batch

        return timed

    # Every module-level coroutine of the importer is a write step (found, not listed, so the
    # breakdown follows the importer as it changes); the CSV reader and sync steps by name.
    for name, step in list(vars(importer).items()):
        if (
            inspect.iscoroutinefunction(step)
            and step.__module__ == importer.__name__
            and name not in _DRIVERS
        ):
            saved[name] = step
            setattr(importer, name, timed_async(name, step))
    for name in ("_batches", *_SYNC_STEPS):
        step = getattr(importer, name, None)
        if step is None:
            if name == "_batches":
                missing.append(name)
            continue
        saved[name] = step
        setattr(
            importer, name, timed_batches(step) if name == "_batches" else timed_sync(name, step)
        )
    try:
        yield missing
    finally:
        for name, step in saved.items():
            setattr(importer, name, step)


def _check_rate(path: Path) -> tuple[int, float]:
    """Rows per second one process checks (`check_batch` on one full batch, in this process)."""
    header, rows = _read_rows(path, BATCH_ROWS)
    raw = [(line, list(row)) for line, row in enumerate(rows, start=2)]
    start = time.perf_counter()
    check_batch([name.lower() for name in header], raw, DEFAULT_REGION)
    return len(raw), time.perf_counter() - start


# --- measuring one database ---------------------------------------------------------------------


@dataclass(slots=True)
class DbResult:
    name: str
    version: str
    rows: int
    file_bytes: int
    migrate_s: float = 0.0
    import_s: float = 0.0
    report: ImportReport = field(default_factory=ImportReport)
    tiers_s: float = 0.0
    changed: int = 0
    again_s: float = 0.0
    changed_again: int = 0
    counts: dict[Tier, int] = field(default_factory=dict)
    read_s: float = 0.0
    ceiling_s: float = 0.0
    phases: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    statements: list[tuple[str, float]] = field(default_factory=list)

    @property
    def import_rate(self) -> float:
        return self.rows / self.import_s if self.import_s else 0.0

    @property
    def tiers_rate(self) -> float:
        return self.rows / self.tiers_s if self.tiers_s else 0.0

    @property
    def ceiling_rate(self) -> float:
        return self.rows / self.ceiling_s if self.ceiling_s else 0.0


def _say(label: str, message: str) -> None:
    print(f"[{label}] {message}", flush=True)


def _verdict(seconds: float, target: float) -> str:
    return "PASS" if seconds <= target else "MISS"


class _Progress:
    """Prints to stderr at every tenth of the file, so a long run shows it is alive."""

    def __init__(self, label: str, size: int) -> None:
        self.label, self.size = label, max(size, 1)
        self.start = time.perf_counter()
        self.next_tenth = 1

    def __call__(self, done: int) -> None:
        tenth = done * 10 // self.size
        if tenth >= self.next_tenth:
            self.next_tenth = tenth + 1
            elapsed = time.perf_counter() - self.start
            print(f"  [{self.label}] read {tenth * 10}% at {elapsed:.1f} s", file=sys.stderr)


async def _server_version(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return str(await conn.scalar(text("SHOW server_version")))
        return "SQLite " + str(await conn.scalar(text("SELECT sqlite_version()")))


async def _ceiling(
    engine: AsyncEngine, header: Sequence[str], rows: list[tuple[str, ...]]
) -> float:
    """Seconds to bulk-insert `rows` raw into a bare table (no indexes, no checks), committed."""
    table = "bench_ceiling"
    columns = ", ".join(f"{name} TEXT" for name in header)
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        await conn.exec_driver_sql(f"CREATE TABLE {table} ({columns})")
    start = time.perf_counter()
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.copy_records_to_table(table, records=rows, columns=list(header))
        else:
            placeholders = ", ".join("?" for _ in header)
            await conn.exec_driver_sql(
                f"INSERT INTO {table} ({', '.join(header)}) VALUES ({placeholders})", rows
            )
    elapsed = time.perf_counter() - start
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"DROP TABLE {table}")
    return elapsed


async def _timed_import(
    sessionmaker: SessionMaker, path: Path, result: DbResult, phases: bool
) -> list[str]:
    progress = _Progress(result.name, result.file_bytes)
    missing: list[str] = []
    with contextlib.ExitStack() as stack:
        if phases:
            missing = stack.enter_context(_timed_importer_phases(result.phases))
        start = time.perf_counter()
        async with sessionmaker.begin() as session:
            result.report = await import_customers(session, path, DEFAULT_REGION, progress=progress)
        result.import_s = time.perf_counter() - start
    return missing


async def bench_database(
    name: str, url: str, path: Path, file_bytes: int, rows: int, *, phases: bool, ceiling: bool
) -> DbResult:
    start = time.perf_counter()
    await migrate(url)
    migrate_s = time.perf_counter() - start
    async with database(url) as (engine, sessionmaker):
        version = await _server_version(engine)
        result = DbResult(name, version, rows, file_bytes, migrate_s=migrate_s)
        _say(name, f"{result.version}; migrated in {migrate_s:.1f} s; {_load()}")

        missing = await _timed_import(sessionmaker, path, result, phases)
        report = result.report
        target = IMPORT_TARGET_S * rows / MILLION
        verdict = f"target <= {target:.3g} s: {_verdict(result.import_s, target)}"
        if name != "postgresql":
            verdict = f"(the target is for PostgreSQL; here {verdict})"
        _say(
            name,
            f"import  {rows:>11,} rows {result.import_s:8.1f} s {result.import_rate:>10,.0f} rows/s"
            f"   {verdict}   ({report.summary})",
        )
        for rejection in report.rejected[:5]:
            _say(name, f"  rejected: {rejection}")
        if phases:
            _print_phases(name, result, missing)

        with contextlib.ExitStack() as timing:
            if phases:
                timing.enter_context(_timed_statements(engine, result.statements))
            start = time.perf_counter()
            async with sessionmaker.begin() as session:
                result.changed = await recompute_tiers(session, TierRules())
            result.tiers_s = time.perf_counter() - start
        target = TIERS_TARGET_S * rows / MILLION
        _say(
            name,
            f"tiers   {rows:>11,} rows {result.tiers_s:8.1f} s {result.tiers_rate:>10,.0f} rows/s"
            f"   target <= {target:.3g} s: {_verdict(result.tiers_s, target)}"
            f"   ({result.changed:,} changed)",
        )
        async with sessionmaker() as session:
            result.counts = await tier_counts(session)
        _say(name, "tier counts: " + ", ".join(f"{t} {n:,}" for t, n in result.counts.items()))
        if phases:
            _print_statements(name, result.statements, result.tiers_s)
        start = time.perf_counter()
        async with sessionmaker.begin() as session:
            result.changed_again = await recompute_tiers(session, TierRules())
        result.again_s = time.perf_counter() - start
        _say(
            name,
            f"again   {rows:>11,} rows {result.again_s:8.1f} s "
            f"{rows / result.again_s:>10,.0f} rows/s   a second recompute, nothing changed"
            f"   ({result.changed_again:,} changed)",
        )

        if ceiling:
            start = time.perf_counter()
            header, parsed = _read_rows(path)
            result.read_s = time.perf_counter() - start
            result.ceiling_s = await _ceiling(engine, header, parsed)
            del parsed
            how = "COPY (asyncpg)" if name == "postgresql" else "executemany"
            _say(
                name,
                f"ceiling {rows:>11,} rows {result.ceiling_s:8.1f} s "
                f"{result.ceiling_rate:>10,.0f} rows/s   raw {how} into a bare table "
                f"(reading the CSV into tuples took {result.read_s:.1f} s more)",
            )
            _say(
                name,
                f"import vs ceiling: {result.import_rate:,.0f} vs {result.ceiling_rate:,.0f} rows/s"
                f" = {result.import_rate / result.ceiling_rate:.1%} of the ceiling"
                f" ({result.ceiling_rate / result.import_rate:.1f}x slower)",
            )
    return result


def _print_phases(name: str, result: DbResult, missing: list[str]) -> None:
    total = result.import_s
    accounted = sum(result.phases.values())
    _say(name, "import phases in the main process (seconds, share of the import):")
    for phase, seconds in sorted(result.phases.items(), key=lambda item: -item[1]):
        _say(name, f"  {phase:<30} {seconds:8.2f} s {seconds / total:6.1%}")
    rest = total - accounted
    _say(
        name,
        f"  {'rest (waiting for the checkers)':<30} {rest:8.2f} s {rest / total:6.1%}",
    )
    if missing:
        _say(name, f"  (not found in crm_core.importer, not timed: {', '.join(missing)})")


# --- the run ------------------------------------------------------------------------------------


def _machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " (" + line.split(":", 1)[1].strip() + ")"
                break
    return (
        f"{os.cpu_count()} CPUs{model}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}, {_load()}"
    )


def _load() -> str:
    """Other work on the machine skews every figure: say how busy it was."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _summary(results: list[DbResult], rows: int) -> None:
    print(f"\nsummary, {rows:,} rows, targets per issue #2 scaled to this size:")
    print(
        f"  {'database':<11}{'import s':>9}{'rows/s':>10}{'ceiling/s':>11}{'ratio':>7}"
        f"{'tiers s':>9}{'rows/s':>10}  import<=60s/M  tiers<=10s/M"
    )
    for r in results:
        import_verdict = _verdict(r.import_s, IMPORT_TARGET_S * rows / MILLION)
        if r.name != "postgresql":
            import_verdict = f"({import_verdict})"
        ratio = f"{r.import_rate / r.ceiling_rate:.1%}" if r.ceiling_s else "-"
        print(
            f"  {r.name:<11}{r.import_s:>9.1f}{r.import_rate:>10,.0f}{r.ceiling_rate:>11,.0f}"
            f"{ratio:>7}{r.tiers_s:>9.1f}{r.tiers_rate:>10,.0f}  {import_verdict:<13}  "
            f"{_verdict(r.tiers_s, TIERS_TARGET_S * rows / MILLION)}"
        )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.import_tiers", description=__doc__)
    parser.add_argument("--rows", type=int, default=MILLION, help="customers to generate")
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated databases")
    parser.add_argument(
        "--postgres-url", help="postgresql+asyncpg URL of an EMPTY database (default: throwaway)"
    )
    parser.add_argument("--seed", type=int, default=2, help="random seed for the generated rows")
    parser.add_argument(
        "--workdir", type=Path, help="keep the CSV and the SQLite file here (default: a temp dir)"
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="time the importer's steps and the recompute's statements",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the raw-insert ceiling")
    args = parser.parse_args(argv)
    args.dbs = [name.strip() for name in args.db.split(",") if name.strip()]
    for name in args.dbs:
        if name not in ("sqlite", "postgresql"):
            parser.error(f"unknown database {name!r}: use sqlite and/or postgresql")
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    rows: int = args.rows
    print(f"machine: {_machine()}", flush=True)
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            workdir: Path = args.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sastre-bench-")))
        path = workdir / f"customers-{rows}.csv"
        start = time.perf_counter()
        generate_customers(path, rows, args.seed)
        elapsed = time.perf_counter() - start
        file_bytes = path.stat().st_size
        print(
            f"generated {rows:,} rows ({file_bytes / 2**20:,.1f} MiB) in {elapsed:.1f} s "
            f"({rows / elapsed:,.0f} rows/s): {path}",
            flush=True,
        )
        good, bad = _sample_rejections(path, min(rows, 2_000))
        checked = good + len(bad)
        print(f"importer's checker on the first {checked:,} rows: {len(bad)} rejected", flush=True)
        for reason in bad:
            print(f"  {reason}")
        if args.phases:
            checked, seconds = _check_rate(path)
            print(
                f"check_batch in one process: {checked:,} rows in {seconds:.2f} s = "
                f"{checked / seconds:,.0f} rows/s per core "
                f"(the importer uses {min(os.cpu_count() or 1, 4)} worker processes)",
                flush=True,
            )
        results: list[DbResult] = []
        for name in args.dbs:
            print(flush=True)
            with contextlib.ExitStack() as server:
                if name == "sqlite":
                    url = f"sqlite+aiosqlite:///{workdir / 'bench.sqlite3'}"
                    for leftover in workdir.glob("bench.sqlite3*"):
                        leftover.unlink()
                elif args.postgres_url:
                    url = args.postgres_url
                else:
                    # Imported here: test support is needed only for a throwaway server.
                    from tests.support.servers import postgres_server

                    url = server.enter_context(postgres_server())
                run = bench_database(
                    name,
                    url,
                    path,
                    file_bytes,
                    rows,
                    phases=args.phases,
                    ceiling=not args.no_ceiling,
                )
                results.append(asyncio.run(run))
        _summary(results, rows)


if __name__ == "__main__":
    main()
