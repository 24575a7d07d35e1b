"""A local stand-in for Twilio's Messages REST API, for the real `twilio` client to talk to.

It answers `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` as Twilio documents it: HTTP
Basic auth with the account SID and auth token, a form with To, From or MessagingServiceSid,
Body and StatusCallback, and a 201 with the message resource in JSON (or Twilio's error JSON:
`{"code", "message", "more_info", "status"}`). Tests program what comes next: `fail_next`
queues errors (with a Retry-After if wanted), `delay` makes every answer slow. `report` posts a
status callback for a message it took, signed as Twilio signs them, to the StatusCallback URL
the message named. Bound to port 0: no races between test runs. `accepted` counts the messages
taken; `keep=False` only counts them (the outbox benchmark sends hundreds of thousands).
`clients` holds the client ends (address, port) of the connections requests came on, kept
with the messages.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections import deque
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any, Self
from urllib.parse import urlsplit

from aiohttp import ClientSession, web
from twilio.request_validator import RequestValidator

from crm_core.sqltypes import utcnow

__all__ = ["FakeTwilio", "Programmed", "Taken"]

API_VERSION = "2010-04-01"


@dataclass(frozen=True, slots=True)
class Programmed:
    """An error the next request gets."""

    status: int
    code: int | None
    message: str
    retry_after: str | None = None


@dataclass(frozen=True, slots=True)
class Taken:
    """A message the fake accepted."""

    sid: str
    to: str
    body: str
    sender: str | None
    messaging_service_sid: str | None
    status_callback: str | None


@dataclass
class FakeTwilio:
    account_sid: str = "AC" + "0" * 32
    auth_token: str = "fake-auth-token-0123456789abcdef"
    delay: float = 0.0
    messages: list[Taken] = field(default_factory=list)
    requests: int = 0
    accepted: int = 0
    keep: bool = True
    clients: set[tuple[str, int]] = field(default_factory=set)
    _errors: deque[Programmed] = field(default_factory=deque)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    base_url: str = ""

    def fail_next(self, *errors: Programmed) -> None:
        self._errors.extend(errors)

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_post(
            f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self._create_message
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return (user, password) == (self.account_sid, self.auth_token)

    @staticmethod
    def _error(status: int, code: int | None, message: str, **headers: str) -> web.Response:
        body: dict[str, Any] = {"code": code, "message": message, "status": status}
        if code is not None:
            body["more_info"] = f"https://www.twilio.com/docs/errors/{code}"
        return web.json_response(body, status=status, headers=headers)

    async def _create_message(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.keep and request.transport is not None:
            self.clients.add(request.transport.get_extra_info("peername")[:2])
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self._authorised(request):
            return self._error(401, 20003, "Authenticate")
        account = request.match_info["account_sid"]
        if account != self.account_sid:
            return self._error(404, 20404, f"The requested resource {request.path} was not found")
        if self._errors:
            error = self._errors.popleft()
            extra = {"Retry-After": error.retry_after} if error.retry_after else {}
            return self._error(error.status, error.code, error.message, **extra)
        form = await request.post()
        to, body = str(form.get("To", "")), str(form.get("Body", ""))
        sender = form.get("From")
        service = form.get("MessagingServiceSid")
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            return self._error(400, 21603, "A 'From' phone number is required.")
        if not body and "MediaUrl" not in form:
            return self._error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return self._error(400, 21617, "The concatenated message body exceeds 1600 chars")
        callback = form.get("StatusCallback")
        taken = Taken(
            sid=f"SM{next(self._ids):032x}",
            to=to,
            body=body,
            sender=str(sender) if sender else None,
            messaging_service_sid=str(service) if service else None,
            status_callback=str(callback) if callback else None,
        )
        self.accepted += 1
        if self.keep:
            self.messages.append(taken)
        return web.json_response(self._resource(taken, account), status=201)

    def _resource(self, taken: Taken, account: str) -> dict[str, Any]:
        now = format_datetime(utcnow(), usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{account}/Messages/{taken.sid}"
        segments = max(1, -(-len(taken.body) // 153)) if len(taken.body) > 160 else 1
        return {
            "account_sid": account,
            "api_version": API_VERSION,
            "body": taken.body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": taken.sender,
            "messaging_service_sid": taken.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(segments),
            "price": None,
            "price_unit": "USD",
            "sid": taken.sid,
            "status": "accepted" if taken.messaging_service_sid else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": taken.to,
            "uri": f"{uri}.json",
        }

    async def report(
        self, sid: str, status: str, *, error_code: int | None = None, via: str | None = None
    ) -> int:
        """Post a status callback for message `sid`, signed for the StatusCallback URL it named;
        `via` sends it to another base URL (as a proxy in front of the service would), keeping
        the path. Returns the HTTP status the service answered."""
        taken = next(m for m in self.messages if m.sid == sid)
        callback = taken.status_callback
        assert callback, "the message named no StatusCallback"
        target = callback
        if via is not None:
            parts = urlsplit(callback)
            target = via.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "From": taken.sender or "",
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": taken.to,
        }
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        signature = RequestValidator(self.auth_token).compute_signature(callback, form)
        async with (
            ClientSession() as session,
            session.post(target, data=form, headers={"X-Twilio-Signature": signature}) as answer,
        ):
            return answer.status
