"""One table turns every domain error into its HTTP answer; handlers do not catch them."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from consent.ledger import InvalidTopic, NothingToConfirm
from consent.preferences import InvalidPreferences
from consent.tokens import BadToken
from crm_core.customers import (
    CustomerNotFound,
    IdentityConflict,
    MergeConflict,
    MergeRefused,
    upsert_customer,
)
from crm_core.identities import InvalidIdentity
from crm_core.records import FieldError, RecordErrors, parse_customer
from dialog.faq import FaqEntryInvalid, FaqProblem
from sastre.appkeys import ENGINE
from sastre.auth import Role
from sastre.db import SessionMaker
from sastre.web.errors import BUSY_RETRY_AFTER, DOMAIN_ERRORS, ApiError, api_error_for
from tests.sastre.conftest import Client
from tests.support.busy_database import impatient, lock_held

Headers = Callable[[Role], dict[str, str]]

DOMAIN_PACKAGES = ("crm_core", "consent", "dialog", "channels", "sastre.operations")
# Domain errors no HTTP request can cause, each with the reason.
NOT_FROM_HTTP = {
    "crm_core.importer.ImportFileError",  # a whole CSV file is unreadable: the CLI says so
    "dialog.faq.FaqFileError",  # a knowledge-base file is unreadable: the CLI says so
    "dialog.rasa.RasaUnavailable",  # the bot is down: the inbound path hands the turn off
    "channels.base.DeliveryFailed",  # a provider refused a send: the worker records it
    "channels.webchat.ProtocolError",  # a bad chat frame: an error frame on the socket
    "channels.email.smtp_in.Refused",  # a message the SMTP listener answers with a 5xx
    "channels.email.smtp_in.TryLater",  # a message the SMTP listener answers with a 4xx
}


def domain_exceptions() -> list[type[Exception]]:
    found = []
    for name in DOMAIN_PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            module = importlib.import_module(info.name)
            found += [
                cls
                for cls in vars(module).values()
                if inspect.isclass(cls)
                and issubclass(cls, Exception)
                and cls.__module__ == module.__name__
            ]
    return found


@pytest.mark.parametrize("kind", domain_exceptions(), ids=lambda k: k.__qualname__)
def test_every_domain_error_has_an_http_answer(kind: type[Exception]) -> None:
    # A new domain error is one line in DOMAIN_ERRORS (or here, with the reason no request can
    # cause it); otherwise a request that raises it is a 500.
    name = f"{kind.__module__}.{kind.__qualname__}"
    assert name in NOT_FROM_HTTP or any(base in DOMAIN_ERRORS for base in kind.__mro__), name


@pytest.mark.parametrize(
    ("exc", "status", "error", "detail"),
    [
        (CustomerNotFound("no customer 7"), 404, "no customer 7", None),
        (
            InvalidIdentity("email", "no @"),
            400,
            "invalid email",
            {"field": "email", "reason": "no @"},
        ),
        (
            RecordErrors([FieldError("revenue", "is implausibly large")]),
            400,
            "invalid customer",
            [{"field": "revenue", "reason": "is implausibly large"}],
        ),
        (
            IdentityConflict("email", "a@b.es", 3),
            409,
            "identity belongs to another customer",
            {"kind": "email", "value": "a@b.es", "customer_id": 3},
        ),
        (
            MergeRefused("both have a phone", [MergeConflict("phone", (("+1",), ("+2",)))]),
            409,
            "merge refused: both have a phone",
            {"conflicts": [{"kind": "phone", "survivor": ["+1"], "other": ["+2"]}]},
        ),
        (NothingToConfirm("nothing pending"), 409, "nothing pending", None),
        (
            InvalidTopic("must be short"),
            400,
            "invalid request body",
            [{"field": "topic", "reason": "must be short"}],
        ),
        (
            InvalidPreferences("language", "must be a two-letter code like es"),
            400,
            "invalid preferences",
            [{"field": "language", "reason": "must be a two-letter code like es"}],
        ),
        (BadToken("this link is not valid"), 400, "invalid link", "this link is not valid"),
        (
            FaqEntryInvalid([FaqProblem("answers.en", "is empty")]),
            400,
            "invalid FAQ entry",
            [{"field": "answers.en", "reason": "is empty"}],
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "",
)
def test_each_domain_error_gets_its_answer(
    exc: Exception, status: int, error: str, detail: object
) -> None:
    answer = api_error_for(exc)
    assert answer is not None
    assert (answer.status, answer.error, answer.detail) == (status, error, detail)


def test_a_subclass_gets_its_ancestor_s_answer() -> None:
    class CustomerGone(CustomerNotFound):
        pass

    answer = api_error_for(CustomerGone("no customer 9"))
    assert answer is not None
    assert answer.status == 404


def test_an_api_error_is_its_own_answer() -> None:
    error = ApiError(418, "teapot")
    assert api_error_for(error) is error


@pytest.mark.parametrize("exc", [ValueError("topic"), LookupError("x"), RuntimeError("bug")])
def test_an_exception_nobody_expected_has_no_answer(exc: Exception) -> None:
    # A bare ValueError is a bug to fix, not a 400 to guess a field for.
    assert api_error_for(exc) is None


# Modules whose handlers answer in JSON and so leave domain errors to the table. public.py
# (HTML pages for customers) and chat.py (a socket protocol) render their own refusals.
JSON_HANDLER_MODULES = (
    "faq.py",
    "customers.py",
    "consent.py",
    "console.py",
    "messages.py",
    "twilio.py",
    "email.py",
)


@pytest.mark.parametrize("module", JSON_HANDLER_MODULES)
def test_json_handlers_do_not_catch_domain_errors(module: str) -> None:
    source = (Path(__file__).parents[2] / "sastre" / "web" / module).read_text(encoding="utf-8")
    mapped = {kind.__name__ for kind in DOMAIN_ERRORS} | {"ValueError", "LookupError"}
    caught = {
        name.id
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ExceptHandler) and node.type is not None
        for name in ast.walk(node.type)
        if isinstance(name, ast.Name)
    }
    assert caught.isdisjoint(mapped), caught & mapped


async def test_an_invalid_faq_entry_is_answered_by_the_table(client: Client, auth: Headers) -> None:
    body = {"questions": {"en": ["How?"]}, "answers": {"en": ""}}
    response = await client.put("/api/faq/shipping", json=body, headers=auth(Role.ADMIN))
    assert response.status == 400
    answer = await response.json()
    assert answer["error"] == "invalid FAQ entry"
    assert {problem["field"] for problem in answer["detail"]} >= {"answers.en"}


async def test_a_malformed_consent_topic_is_answered_by_the_table(
    client: Client, auth: Headers, sessionmaker: SessionMaker
) -> None:
    # Once a bare ValueError, caught by its handler and blamed on "topic" whatever it was.
    async with sessionmaker.begin() as session:
        customer, _ = await upsert_customer(session, parse_customer({"external_id": "T-1"}, "US"))
    body = {
        "channel": "email",
        "purpose": "marketing",
        "topic": "new arrivals!",
        "action": "revoke",
        "source": "agent",
    }
    response = await client.post(
        f"/api/customers/{customer.id}/consent", json=body, headers=auth(Role.ADMIN)
    )
    assert response.status == 400
    assert (await response.json())["detail"] == [
        {"field": "topic", "reason": "must be up to 64 letters, digits, '-' or '_'"}
    ]


async def _a_customer(sessionmaker: SessionMaker) -> int:
    async with sessionmaker.begin() as session:
        customer, _ = await upsert_customer(session, parse_customer({"external_id": "B-1"}, "US"))
    return customer.id


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/customers/{id}/interactions", {"kind": "note", "summary": "called"}),
        ("GET", "/api/customers/{id}/export", None),
    ],
)
async def test_a_busy_database_is_a_503_to_retry_not_a_500(
    client: Client,
    auth: Headers,
    sessionmaker: SessionMaker,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    # A large import holds the write lock longer than the busy timeout: what needs it waits,
    # then is told to come back, with one warning line and no traceback.
    customer_id = await _a_customer(sessionmaker)
    await impatient(client.app[ENGINE])
    async with lock_held(database_url, ["interactions", "audit_log"]):
        response = await client.request(
            method, path.format(id=customer_id), json=body, headers=auth(Role.ADMIN)
        )
    assert response.status == 503
    assert response.headers["Retry-After"] == str(BUSY_RETRY_AFTER)
    assert (await response.json())["error"] == "the database is busy; try again"
    warnings = [r for r in caplog.records if r.name == "sastre.web.errors"]
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert warnings[0].exc_info is None


def test_other_database_errors_stay_bugs() -> None:
    error = DBAPIError("INSERT ...", {}, sqlite3.OperationalError("no such table: x"))
    assert api_error_for(error) is None
