"""The `sastre` command: serve, demo, actions, migrate, tokens, tiers, imports, customers (show,
merge, export), leads. Acts that change data call `sastre.operations`, as the API does, with the
account that runs the command as the audited actor; text arguments must be UTF-8.

Only click and the standard library are imported here at start-up. Each command imports what it
needs when it runs: the web application pulls in the FAQ matcher (scikit-learn, SciPy, NumPy)
and the database layer pulls in SQLAlchemy and Alembic, and `sastre --help` or `sastre token
create` must not wait seconds for what they never use (a test keeps it so).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import sys
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import click
from typing_extensions import override

if TYPE_CHECKING:
    from crm_core.customers import MergeRefused
    from crm_core.importer import ImportReport
    from crm_core.tiers import TierRules
    from sastre.config import Settings
    from sastre.db import SessionMaker

__all__ = ["main"]

T = TypeVar("T")
log = logging.getLogger("sastre")


def _settings(ctx: click.Context) -> Settings:
    return cast("Settings", ctx.obj)


def _run(coroutine: Awaitable[T]) -> T:
    async def runner() -> T:
        return await coroutine

    return asyncio.run(runner())


async def _with_database(settings: Settings, work: Callable[[SessionMaker], Awaitable[T]]) -> T:
    from sastre.db import database
    from sastre.schema_version import is_up_to_date

    await _require_database(settings.database_url)
    if not await is_up_to_date(settings.database_url):
        await _migrate(settings.database_url)
    async with database(settings.database_url) as (_engine, sessionmaker):
        return await work(sessionmaker)


async def _migrate(url: str) -> None:
    from sastre.db import migrate

    await _require_database(url)
    await migrate(url)


async def _require_database(url: str) -> None:
    """Connect once before anything uses the database: one that cannot be reached (refused, no
    such socket or host, a wrong password, a SQLite file that cannot be opened) stops the command
    with one line naming SASTRE_DATABASE_URL, not a traceback through Alembic and the driver.
    A migration that fails once connected is a bug, and keeps its traceback."""
    import sqlite3
    from urllib.parse import unquote

    from sqlalchemy import make_url
    from sqlalchemy.exc import DBAPIError

    from sastre.db import database

    try:
        async with database(url) as (engine, _sessionmaker):
            if engine.dialect.name == "sqlite":
                # The standard library's module, in this thread: a connect that fails in
                # aiosqlite leaves its thread answering a loop that is closing (a traceback
                # after our one line).
                path = engine.url.database
                if path and path != ":memory:":
                    checked = sqlite3.connect(path)
                    try:  # a file that is no database opens; its first read says so
                        checked.execute("PRAGMA schema_version")
                    finally:
                        checked.close()
            else:
                async with engine.connect():
                    pass
    except Exception as e:  # whatever the driver raises at connect, said in one line
        log.debug("cannot connect to the database", exc_info=True)
        cause: BaseException = e.orig if isinstance(e, DBAPIError) and e.orig else e
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        # As configured (a socket's path unescaped), the password hidden.
        shown = unquote(make_url(url).render_as_string(hide_password=True))
        raise click.ClickException(
            f"SASTRE_DATABASE_URL ({shown}): cannot connect to the database: "
            f"{type(cause).__name__}{': ' + reason if reason else ''}"
        ) from None


def tier_rules(settings: Settings) -> TierRules:
    from crm_core.tiers import TierRules

    return TierRules(
        cmv_profit_share=settings.tier_cmv_profit_share,
        cmp_potential_multiple=settings.tier_cmp_potential_multiple,
        cmp_top_share=settings.tier_cmp_top_share,
    )


class Text(click.ParamType[str]):
    """Text as typed, refused if it is not Unicode.

    Python hands over a command-line argument that is not valid UTF-8 with each bad byte as a
    lone surrogate (surrogateescape); stored, it would be text no client can encode or read back.
    """

    name = "text"
    _SURROGATE = re.compile("[\ud800-\udfff]")

    @override
    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text: str = click.STRING.convert(value, param, ctx)
        if self._SURROGATE.search(text):
            try:  # the bytes as given, if they came from the command line
                given = text.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                given = text.encode("utf-8", "backslashreplace")
            self.fail(f"{given!r} is not UTF-8 text", param, ctx)
        return text


TEXT = Text()
CUSTOMER_ID = click.IntRange(1, 2**63 - 1)  # ids are 64-bit on both databases


def _cli_actor() -> str:
    """Who acts, for the audit log: the account that runs the command (not $USER, which anyone
    may set to anything)."""
    import pwd

    uid = os.geteuid()
    try:
        return f"cli:{pwd.getpwuid(uid).pw_name}"
    except KeyError:  # a container's user may have no entry in /etc/passwd
        return f"cli:uid={uid}"


@click.group()
@click.version_option(package_name="sastre")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Sastre: one customer across every channel, with permission marketing."""
    from sastre.config import ConfigError, load_settings

    try:
        ctx.obj = load_settings()
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    from sastre.logs import configure_logging

    configure_logging(ctx.obj.log_level)


# --- running ------------------------------------------------------------------------------------


def _listen(settings: Settings) -> tuple[Settings, Listening]:
    """Take the ports before anything else: the HTTP one, and the SMTP listener's when
    SASTRE_SMTP_LISTEN is set. A second start, or a port in use, must change nothing (one line,
    exit 1). With SASTRE_PORT=0 the settings returned name the port the system picked."""
    from channels.email.smtp_in import parse_listen
    from sastre.listeners import (
        SMTP_LISTENER,
        PortUnavailable,
        bind_listener,
        bind_listeners,
        bound_port,
    )

    smtp: socket.socket | None = None
    try:
        listeners = bind_listeners(settings.host, settings.port)
        if settings.smtp_listen is not None:
            try:
                smtp = bind_listener(*parse_listen(settings.smtp_listen), SMTP_LISTENER)
            except PortUnavailable:
                for listener in listeners:
                    listener.close()
                raise
    except PortUnavailable as e:
        raise click.ClickException(str(e)) from None
    if settings.port == 0:
        settings = settings.model_copy(update={"port": bound_port(listeners)})
    return settings, Listening(listeners, smtp)


class Listening(NamedTuple):
    """The sockets serve and demo took first: HTTP, and the SMTP listener's when it is on."""

    http: list[socket.socket]
    smtp: socket.socket | None


def _serve(settings: Settings, listening: Listening, banner: str = "") -> None:
    """Run the web service, and beside it the outbox's worker in its own process, kept running
    (SASTRE_SERVE_WORKER=0 leaves it to `sastre worker` processes): serve and demo alike."""
    from sastre.app import create_app
    from sastre.email_listener import SMTP_SOCKET
    from sastre.web.server import run_app
    from sastre.worker.wake_pipe import WakePipe

    worker = None
    wakes = WakePipe()  # every commit that queued wakes the worker at once, Redis or not
    if settings.serve_worker:
        from functools import partial

        from dialog.outbox import listen
        from sastre.worker.process import spawn_worker
        from sastre.worker.supervisor import WorkerSupervisor

        worker = WorkerSupervisor(partial(spawn_worker, settings, wakes=wakes))
        listen(wakes.wake)  # for the life of this process

    log.info("settings: %s", settings.masked())

    def announce(message: Any) -> None:
        click.echo(_listening_line(settings, listening.http))
        if banner:
            click.echo(banner)

    # run_app turns SIGTERM and SIGINT into a graceful shutdown that runs every cleanup context;
    # its server answers a malformed request (a 20 KB header) in JSON, without echoing it.
    app = create_app(settings, worker=worker)
    app[SMTP_SOCKET] = listening.smtp
    try:
        run_app(app, sock=listening.http, announce=announce)
    finally:
        wakes.close()
    click.echo("Sastre stopped.")


def _listening_line(settings: Settings, listeners: list[socket.socket]) -> str:
    """Where the service listens, then the public URL when that is somewhere else (a proxy's
    address is not where to look when the service does not answer)."""
    from sastre.listeners import listening_urls

    where = listening_urls(listeners)
    public = settings.public_url.rstrip("/")
    also = f"public URL {public}; " if public and public not in where else ""
    redis = "on" if settings.redis_url else "off"
    return (
        f"Sastre listening on {' and '.join(where)} "
        f"({also}database: {settings.masked()['database_url']}, redis: {redis})"
    )


@cli.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Apply migrations and run the service."""
    settings, listening = _listen(_settings(ctx))
    _run(_migrate(settings.database_url))
    _serve(settings, listening)


_STOPS = (signal.SIGTERM, signal.SIGINT)


@cli.command("worker")
@click.pass_context
def worker_command(ctx: click.Context) -> None:
    """Send the outbox's messages until stopped (run as many as wanted on PostgreSQL)."""
    from sastre.worker.process import worker_main

    settings = _settings(ctx)
    # Asked to stop while migrating: the migration ends first (cut short, it would be undone
    # at best), then the worker does not start. Before, the signal killed the process.
    asked: list[int] = []
    previous = {number: signal.signal(number, lambda n, _: asked.append(n)) for number in _STOPS}
    try:
        _run(_migrate(settings.database_url))
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if not asked:
        worker_main(settings, ready=lambda: click.echo("Sastre worker started."))
    click.echo("Sastre worker stopped.")


@cli.command("migrate")
@click.pass_context
def migrate_command(ctx: click.Context) -> None:
    """Apply every database migration."""
    settings = _settings(ctx)
    _run(_migrate(settings.database_url))
    click.echo("database is up to date")


@cli.command()
@click.option(
    "--customers",
    # Checked before anything starts: a wrong count would otherwise fail only after the database
    # was created and migrated. Past 100,000 the demo's plan alone would not fit in memory.
    type=click.IntRange(1, 100_000),
    default=300,
    show_default=True,
    help="How many demo customers.",
)
@click.pass_context
def demo(ctx: click.Context, customers: int) -> None:
    """Load the demo data set (idempotent) and run the service."""
    from sastre.auth import Role, create_token
    from sastre.demo import load_demo_data

    settings, listening = _listen(_settings(ctx))

    async def load(sessionmaker: SessionMaker) -> tuple[str, str]:
        async with sessionmaker.begin() as session:
            summary = await load_demo_data(
                session,
                default_region=settings.default_region,
                customers=customers,
                topics=settings.topic_list,
            )
            token = await create_token(session, Role.ADMIN, "demo-admin")
        return token, (
            f"demo data: {summary.created} customers created ({summary.consent_events} consent "
            f"events), {summary.updated} updated"
        )

    token, loaded = _run(_with_database(settings, load))
    _serve(settings, listening, _demo_banner(_browser_url(settings), token, loaded))


def _browser_url(settings: Settings) -> str:
    """Where a browser on this machine reaches the service: a wildcard address is not one."""
    if settings.public_url or settings.host not in ("0.0.0.0", "::"):
        return settings.external_url
    return f"http://127.0.0.1:{settings.port}"


def _demo_banner(url: str, token: str, loaded: str) -> str:
    return "\n".join(
        [
            loaded,
            "",
            f"  Open the staff console at {url}/ and sign in with this admin token",
            "  (paste it where the console asks for the staff API token):",
            "",
            f"    {token}",
            "",
            f"  Staff API:      {url}/api/  (send the header  Authorization: Bearer <token>)",
            f"  Web chat demo:  {url}/chat",
            f"  Health:         {url}/healthz",
            f"  Try:  curl -H 'Authorization: Bearer {token}' '{url}/api/customers/1'",
            "",
            "Press Ctrl+C to stop.",
        ]
    )


@cli.command("actions")
@click.option("--host", default="127.0.0.1", show_default=True, type=TEXT)
@click.option(
    "--port",
    default=5055,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0: any free one.",
)
@click.pass_context
def actions_command(ctx: click.Context, host: str, port: int) -> None:
    """Serve the custom actions to a real Rasa server (rasa-sdk's action server)."""
    from actions.deps import ActionDeps
    from actions.runner import serve as serve_actions
    from sastre.db import database
    from sastre.listeners import PortUnavailable, Service, bind_listener, listening_urls

    settings = _settings(ctx)
    # As serve and demo do: the port is taken before the database is touched, and the very socket
    # is handed to rasa-sdk's server (Sanic serves a socket it is given), so a second start
    # changes nothing and no other process can take the port in between.
    try:
        listener = bind_listener(host, port, Service("the action server", "--host", "--port"))
    except PortUnavailable as e:
        raise click.ClickException(str(e)) from None

    @asynccontextmanager
    async def resources() -> AsyncIterator[ActionDeps]:
        async with database(settings.database_url) as (_, sessionmaker):
            yield ActionDeps(
                sessionmaker=sessionmaker,
                default_region=settings.default_region,
                default_timezone=settings.default_timezone,
                public_url=settings.external_url,
                secret=settings.secret(),
                brand=settings.brand_name,
            )

    _run(_migrate(settings.database_url))
    url = f"{listening_urls([listener])[0]}/webhook"
    # Said once the server answers and a SIGTERM would stop it cleanly, not before.
    serve_actions(
        resources=resources,
        sock=listener,
        ready=lambda: click.echo(f"Sastre actions listening on {url}"),
    )


# --- tokens -------------------------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Staff API tokens."""


# The roles of sastre.auth.Role, spelled out so that `--help` needs no database code; a test
# keeps the two lists equal.
ROLES = ("admin", "supervisor", "agent", "marketer")
TOKEN_NAME_LENGTH = 200  # the column's


def _breaks_a_line(text: str) -> bool:
    """Control characters (a terminal's escapes among them) and line or paragraph separators;
    the spaces and joiners of people's names pass."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


@token.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", required=True, type=TEXT, help="Who or what uses the token.")
@click.pass_context
def token_create(ctx: click.Context, role: str, name: str) -> None:
    """Create a token; it is printed once, alone on the last line."""
    from sastre.auth import Role, create_token

    if not name.strip():
        raise click.BadParameter("must not be empty", param_hint="--name")
    if len(name.strip()) > TOKEN_NAME_LENGTH:
        raise click.BadParameter(
            f"must be at most {TOKEN_NAME_LENGTH} characters", param_hint="--name"
        )
    if _breaks_a_line(name.strip()):  # `token list` prints a line per token
        raise click.BadParameter(
            "must not hold control characters or line breaks", param_hint="--name"
        )

    async def work(sessionmaker: SessionMaker) -> str:
        async with sessionmaker.begin() as session:
            return await create_token(session, Role(role), name.strip())

    secret = _run(_with_database(_settings(ctx), work))
    click.echo(f"created a {role} token for {name.strip()} (shown once, keep it safe):")
    click.echo(secret)


@token.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """List tokens (never the secrets)."""
    from sastre.auth import list_tokens

    async def work(sessionmaker: SessionMaker) -> list[str]:
        async with sessionmaker() as session:
            return [
                f"{t.id}\t{t.role}\t{t.name}\t{'revoked' if t.revoked_at else 'active'}"
                for t in await list_tokens(session)
            ]

    for line in _run(_with_database(_settings(ctx), work)):
        click.echo(line)


@token.command("revoke")
@click.argument("token_id", type=CUSTOMER_ID)  # an id as the databases hold them
@click.pass_context
def token_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke a token by its id (see `sastre token list`)."""
    from sastre.auth import revoke_token

    async def work(sessionmaker: SessionMaker) -> bool:
        async with sessionmaker.begin() as session:
            return await revoke_token(session, token_id)

    if not _run(_with_database(_settings(ctx), work)):
        raise click.ClickException(f"no active token with id {token_id}")
    click.echo(f"token {token_id} revoked")


# --- tiers --------------------------------------------------------------------------------------


@cli.group()
def tiers() -> None:
    """Value tiers (CMV, CMP, STANDARD, BZ)."""


@tiers.command("recompute")
@click.pass_context
def tiers_recompute(ctx: click.Context) -> None:
    """Recompute every customer's tier and print the count per tier."""
    from crm_core.tiers import recompute_tiers, tier_counts

    settings = _settings(ctx)

    async def work(sessionmaker: SessionMaker) -> tuple[int, dict[str, int]]:
        async with sessionmaker.begin() as session:
            changed = await recompute_tiers(session, tier_rules(settings))
        async with sessionmaker() as session:
            return changed, {tier.value: n for tier, n in (await tier_counts(session)).items()}

    changed, counts = _run(_with_database(settings, work))
    for tier, count in counts.items():
        click.echo(f"{tier:<9} {count}")
    click.echo(f"{changed} customers changed tier or reason")


# --- import -------------------------------------------------------------------------------------


@cli.group("import")
def import_group() -> None:
    """Bulk imports."""


@import_group.command("customers")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Checking processes.")
@click.pass_context
def import_customers_command(ctx: click.Context, file: Path, workers: int | None) -> None:
    """Import or update customers from a CSV file with an external_id column.

    Bad rows are skipped and reported as `line N: field: reason`; the rest are imported.
    """
    from crm_core.importer import ImportFileError, import_customers

    settings = _settings(ctx)
    show_progress = sys.stderr.isatty()
    total = file.stat().st_size if file.exists() else 0

    async def work(sessionmaker: SessionMaker) -> ImportReport:
        with click.progressbar(
            length=total, label="importing", file=sys.stderr, hidden=not show_progress
        ) as bar:
            done = 0

            def progress(position: int) -> None:
                nonlocal done
                bar.update(position - done)
                done = position

            async with sessionmaker.begin() as session:
                return await import_customers(
                    session, file, settings.default_region, progress=progress, workers=workers
                )

    try:
        report = _run(_with_database(settings, work))
    except ImportFileError as e:
        raise click.ClickException(f"{file}: {e} (nothing was imported)") from None
    for rejection in report.rejected:
        click.echo(str(rejection), err=True)
    click.echo(report.summary)


# --- customers ----------------------------------------------------------------------------------

Wanted = int | tuple[str, str]  # a customer id, or an identity (kind, value) to look up


class CustomerQuery(click.ParamType[Wanted]):
    """`42` is an id; `kind:value` names the kind; otherwise an e-mail or a phone is guessed."""

    name = "query"

    @override
    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Wanted:
        if not isinstance(value, str):  # already converted (a default, or a test's own value)
            return cast("Wanted", value)
        from crm_core.models import IdentityKind

        query = TEXT.convert(value, param, ctx)
        if re.fullmatch("[0-9]+", query):
            if int(query) > CUSTOMER_ID.max:  # type: ignore[operator]
                self.fail(f"{query} is not a customer id: ids are below 2**63", param, ctx)
            return int(query)
        kind, sep, rest = query.partition(":")
        if sep and kind in {k.value for k in IdentityKind}:
            return kind, rest
        if kind == "external_id" and sep:
            return IdentityKind.EXTERNAL.value, rest
        if "@" in query:
            return IdentityKind.EMAIL.value, query
        if query.startswith("+"):
            return IdentityKind.PHONE.value, query
        return IdentityKind.EXTERNAL.value, query


QUERY = CustomerQuery()
QUERY_HELP = (
    "QUERY is an id (42), an e-mail, a +phone, or kind:value (telegram:12345, external:C-1)."
)


async def _customer_id(sessionmaker: SessionMaker, wanted: Wanted, region: str) -> int:
    """The id of the live customer QUERY names (an id is followed to its merge survivor)."""
    from crm_core.customers import find_customer, get_customer

    async with sessionmaker() as session:
        if isinstance(wanted, int):
            return (await get_customer(session, wanted)).id
        return (await find_customer(session, *wanted, region)).id


@cli.group()
def customer() -> None:
    """Customers."""


@customer.command("show", epilog=QUERY_HELP)
@click.argument("query", type=QUERY)
@click.pass_context
def customer_show(ctx: click.Context, query: Wanted) -> None:
    """Print the 360 view of a customer as JSON."""
    from crm_core.customers import CustomerNotFound, customer_view
    from crm_core.identities import InvalidIdentity

    settings = _settings(ctx)

    async def work(sessionmaker: SessionMaker) -> dict[str, Any]:
        found = await _customer_id(sessionmaker, query, settings.default_region)
        async with sessionmaker() as session:
            return await customer_view(session, found)

    try:
        view = _run(_with_database(settings, work))
    except (CustomerNotFound, InvalidIdentity) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(view, indent=2, ensure_ascii=False))


@customer.command("merge")
@click.argument("survivor", type=CUSTOMER_ID)
@click.argument("other", type=CUSTOMER_ID)
@click.option(
    "--force",
    is_flag=True,
    help="Merge even though both hold different verified identities of one kind (a person's "
    "decision, recorded as forced).",
)
@click.pass_context
def customer_merge(ctx: click.Context, survivor: int, other: int, force: bool) -> None:
    """Merge customer OTHER into customer SURVIVOR (both ids).

    Everything OTHER holds (identities, timeline, consent, conversations, ...) becomes SURVIVOR's;
    OTHER's id keeps leading to SURVIVOR. Recorded in the audit log as done by this account.
    """
    from crm_core.customers import CustomerNotFound, MergeRefused
    from sastre.operations import do_merge_customers

    async def work(sessionmaker: SessionMaker) -> dict[str, Any]:
        return await do_merge_customers(
            sessionmaker, survivor, other, actor=_cli_actor(), force=force
        )

    try:
        view = _run(_with_database(_settings(ctx), work))
    except CustomerNotFound as e:
        raise click.ClickException(str(e)) from None
    except MergeRefused as e:
        raise click.ClickException(_merge_refusal(e)) from None
    identities = len(view["identities"])
    click.echo(
        f"merged customer {other} into {survivor}{' (forced)' if force else ''}: "
        f"{view['name'] or 'no name'}, {identities} identit{'y' if identities == 1 else 'ies'}, "
        f"tier {view['tier']}"
    )


def _merge_refusal(refused: MergeRefused) -> str:
    lines = [f"merge refused: {refused.reason}"]
    for conflict in refused.conflicts:
        survivor, other = (", ".join(values) for values in conflict.values)
        lines.append(f"  {conflict.kind}: SURVIVOR holds {survivor}; OTHER holds {other}")
    if refused.conflicts:
        lines.append("  if they are one person all the same, merge again with --force")
    return "\n".join(lines)


@customer.command("export", epilog=QUERY_HELP)
@click.argument("query", type=QUERY)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    help="Write to this file (a new one readable by this account only), not standard output.",
)
@click.option("--force", is_flag=True, help="Overwrite the --output file if it exists.")
@click.pass_context
def customer_export(ctx: click.Context, query: Wanted, output: Path | None, *, force: bool) -> None:
    """Print everything Sastre holds about a person as JSON (a GDPR access request).

    Records merged into the customer are included; the export is recorded in the audit log as
    done by this account.
    """
    from crm_core.customers import CustomerNotFound
    from crm_core.identities import InvalidIdentity
    from sastre.operations import do_export_customer

    settings = _settings(ctx)
    # Checked before the export, which the audit log records: a refusal exports nothing.
    if output is not None and not force and os.path.lexists(output):
        raise click.ClickException(_exists(output))

    async def work(sessionmaker: SessionMaker) -> dict[str, Any]:
        # An id goes to the act as given: it follows a merge itself and records what was asked.
        found = (
            query
            if isinstance(query, int)
            else await _customer_id(sessionmaker, query, settings.default_region)
        )
        return await do_export_customer(sessionmaker, found, actor=_cli_actor())

    try:
        document = _run(_with_database(settings, work))
    except (CustomerNotFound, InvalidIdentity) as e:
        raise click.ClickException(str(e)) from None
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if output is None:
        click.echo(text)
        return
    # Everything about a person: the file is made readable by this account alone, an existing
    # one only with --force (O_EXCL: not even one created while the export ran).
    replace = os.O_TRUNC if force else os.O_EXCL
    try:
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | replace, 0o600)
    except FileExistsError:
        raise click.ClickException(_exists(output)) from None
    except OSError as e:
        raise click.ClickException(f"{click.format_filename(output)}: {e.strerror}") from None
    with open(descriptor, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)  # a file overwritten keeps its mode otherwise
        file.write(text + "\n")
    click.echo(f"exported customer {document['customer_id']} to {click.format_filename(output)}")


def _exists(output: Path) -> str:
    return f"{click.format_filename(output)} already exists; use --force to overwrite it"


# --- leads --------------------------------------------------------------------------------------


def _age(text: str) -> timedelta:
    """ "30d", "12h" or "2w" as a duration of at least an hour."""
    match = re.fullmatch(r"\s*([1-9][0-9]{0,4})\s*([hdw])\s*", text)
    if match is None:
        raise ValueError(f"{text!r}: write a whole number and a unit, such as 30d, 12h or 2w")
    return int(match[1]) * _AGE_UNITS[match[2]]


_AGE_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


@cli.group()
def leads() -> None:
    """Leads made by inbound contacts (the web chat)."""


@leads.command("purge")
@click.option(
    "--older-than",
    type=_age,
    default=None,
    help="Purge leads idle at least this long: 30d, 12h or 2w "
    "[default: SASTRE_WEBCHAT_LEAD_RETENTION_DAYS, 30 days].",
)
@click.pass_context
def leads_purge(ctx: click.Context, older_than: timedelta | None) -> None:
    """Delete web chat leads that gave nothing but their cookie and wrote nothing for a while.

    A lead with an e-mail, a phone, an external id, a verified sign-in, a consent statement, a
    staff note or a conversation waiting for a person is kept (see sastre.operations.purge)."""
    from sastre.operations.purge import do_purge_idle_leads

    settings = _settings(ctx)
    idle = older_than or timedelta(days=settings.webchat_lead_retention_days)

    async def work(sessionmaker: SessionMaker) -> list[int]:
        return await do_purge_idle_leads(sessionmaker, idle, actor=_cli_actor())

    purged = _run(_with_database(settings, work))
    hours = int(idle.total_seconds() // 3600)
    age = f"{hours // 24} days" if hours % 24 == 0 else f"{hours} hours"
    click.echo(f"purged {len(purged)} web chat leads idle for {age} or longer")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli(prog_name="sastre")
