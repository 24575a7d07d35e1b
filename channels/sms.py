"""SMS out through Twilio Programmable Messaging: `TwilioSms`, a `Sender`.

It speaks to the Messages resource through the `twilio` library's own async client
(`AsyncTwilioHttpClient`, one aiohttp session for the adapter's life), with the REST base URL a
setting (tests point it at a local fake). Every message asks Twilio to post its delivery states
to our status callback. A long text is sent whole: Twilio splits it into segments and the handset
joins them again (up to 1,600 characters; past that Twilio refuses it with 21617, permanently).

Speed: one HTTP keep-alive connection per send in flight (`connections`, the worker's
concurrency), so no send waits for a connection nor opens one; and the form is encoded once,
here, as the bytes aiohttp would have made of it (its FormData machinery costs more than the
rest of the request).

Twilio's errors become `DeliveryFailed` here (`failure_for`): 429 and 5xx may succeed later (a
429's Retry-After is kept), a 4xx names something wrong with this message or this account and
will not; a few codes say so whatever the status (21610: the number sent STOP). A refusal of our
account (20003, wrong credentials; 20005, the account not active) is retried: every message would
fail alike, and each goes once the account is put right. A network error
or no answer within `timeout` is retryable too: the message may have gone out, so the worker
records the attempt as in flight (see the outbox's delivery notes).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlencode

import aiohttp
from twilio.base import values
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels.base import ChannelName, DeliveryFailed, OutboundMessage

__all__ = [
    "ACCOUNT_CODES",
    "DEFAULT_API_BASE",
    "OPTED_OUT_CODES",
    "PERMANENT_CODES",
    "RETRYABLE_CODES",
    "UNDELIVERABLE_CODES",
    "TwilioSms",
    "failure_for",
    "retry_after_seconds",
]

DEFAULT_API_BASE: Final = "https://api.twilio.com"
DEFAULT_TIMEOUT: Final = 15.0
DEFAULT_CONNECTIONS: Final = 64
_FORM: Final = "application/x-www-form-urlencoded"

# Codes that settle the question whatever the HTTP status says
# (https://www.twilio.com/docs/api/errors).
PERMANENT_CODES: Final = frozenset(
    {
        21211,  # invalid 'To' number
        21408,  # sending to that region is not enabled on the account
        21606,  # the 'From' number cannot send SMS
        21610,  # the recipient sent STOP: Twilio blocks every message until START
        21612,  # no route between 'From' and 'To'
        21614,  # 'To' is not a mobile number
        21617,  # body longer than 1,600 characters
        21660,  # 'From' does not belong to the account
        30004,  # message blocked by the carrier
        30005,  # unknown handset
        30006,  # landline or unreachable carrier
        30007,  # filtered as spam by the carrier
    }
)
RETRYABLE_CODES: Final = frozenset(
    {
        14107,  # the account's send rate was exceeded
        20429,  # too many requests
        # The 'From' number's queue holds more than its hours of messages (a 400): it drains,
        # as in 30001, the same overflow reported by a status callback.
        21611,
        30001,  # queue overflow
        30022,  # US A2P 10DLC throughput exceeded
    }
)
# Refusals of our account, not of the message: wrong credentials (a rotated auth token not yet
# set here), an account suspended. Every message would fail alike, and each succeeds once the
# account is put right: they are retried with the worker's backoff, as the SMTP server's refusal
# of our login is (`channels.email.send`), instead of the whole backlog failing for good.
ACCOUNT_CODES: Final = frozenset(
    {
        20003,  # authentication error: the account SID or auth token is wrong
        20005,  # the account is not active (suspended, closed)
    }
)


# What a delivery error says about the number itself (a status callback's ErrorCode, or a
# refusal at sending). 21610: the number sent STOP to Twilio, which now blocks every message:
# our ledger must say so too. 30003 (unreachable handset), 30005 (unknown handset), 30006
# (landline or unreachable carrier): the contact policy must stop choosing SMS for it.
OPTED_OUT_CODES: Final = frozenset({"21610"})
UNDELIVERABLE_CODES: Final = frozenset({"30003", "30005", "30006"})


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None if absent
    or unreadable. A date in the past is zero."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdecimal():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def failure_for(
    status: int, code: int | None, reason: str, *, retry_after: float | None = None
) -> DeliveryFailed:
    """What a refusal by Twilio means for the outbox: whether trying again may help."""
    if code in PERMANENT_CODES:
        retryable = False
    elif code in RETRYABLE_CODES or status == 429 or status >= 500:
        retryable = True
    elif code in ACCOUNT_CODES or (code is None and status == 401):
        retryable = True  # our account, not this message: it goes once the account is right
    else:
        # Anything else at 4xx is about this message (a malformed request, a number Twilio
        # will not take): sending it again changes nothing.
        retryable = False
    return DeliveryFailed(
        f"Twilio refused the message ({status}{f', error {code}' if code else ''}): {reason}",
        retryable=retryable,
        code=str(code) if code is not None else str(status),
        retry_after=retry_after if retryable else None,
    )


@dataclass(slots=True)
class _Seen:
    """The headers of the last answer Twilio gave within one send (for Retry-After)."""

    headers: Mapping[str, str] | None = None


# The send in progress, per task: the library's exceptions drop the answer's headers, so the
# HTTP client notes them here on the way through.
_SEEN: contextvars.ContextVar[_Seen | None] = contextvars.ContextVar("twilio_seen", default=None)


class _NotingHttpClient:
    """The library's async HTTP client, noting each answer's headers for the send awaiting it.

    It also writes the Basic credentials as a header itself (the library hands them to aiohttp
    as a `BasicAuth`, which aiohttp now deprecates), once, and the form as its encoded bytes:
    what aiohttp would send for the library's dict, without building a FormData for it."""

    is_async = True

    def __init__(self, inner: AsyncTwilioHttpClient) -> None:
        self._inner = inner
        self._authorization: tuple[tuple[str, str], str] | None = None

    def _basic(self, auth: tuple[str, str]) -> str:
        if self._authorization is None or self._authorization[0] != auth:
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            self._authorization = (auth, f"Basic {credentials}")
        return self._authorization[1]

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        data: Mapping[str, object] | None = None,
        **kwargs: Any,
    ) -> Response:
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = self._basic(auth)
        body: Any = data
        if isinstance(data, Mapping):
            body = urlencode(list(data.items()), doseq=True).encode()
            headers["Content-Type"] = _FORM
        response: Response = await self._inner.request(
            method, url, headers=headers, data=body, **kwargs
        )
        seen = _SEEN.get()
        if seen is not None:
            seen.headers = dict(response.headers or {})
        return response

    async def close(self) -> None:
        await self._inner.close()


class TwilioSms:
    """Sends SMS through Twilio's REST API; create it inside the running event loop and close it
    (`async with`, or `close()`) when the process stops.

    `sender` is the 'From' number (E.164, a short code or an alphanumeric sender id);
    `messaging_service_sid` lets a Messaging Service choose it instead (it wins when both are
    given). `status_callback` is where Twilio posts delivery states, unless a message names its
    own. `connections`: the most HTTP connections kept open to Twilio, one per send in flight
    (the worker's concurrency)."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        sender: str | None = None,
        messaging_service_sid: str | None = None,
        status_callback: str | None = None,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = DEFAULT_TIMEOUT,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        if not sender and not messaging_service_sid:
            raise ValueError("a 'From' number or a Messaging Service SID is needed")
        if timeout <= 0:
            raise ValueError("the timeout must be positive")
        if connections < 1:
            raise ValueError("at least one connection is needed")
        inner = AsyncTwilioHttpClient(pool_connections=False)
        # The library's own session would cap the pool at aiohttp's default (100 connections,
        # whatever the concurrency): ours holds one per send in flight, kept alive.
        inner.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
            # Twilio's API sets no cookies: a real jar would only spend CPU checking each answer.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._http = _NotingHttpClient(inner)
        self._connections = connections
        client = Client(account_sid, auth_token, http_client=self._http)
        # The base URL says everything about where requests go: the library would otherwise
        # rewrite its host from TWILIO_EDGE / TWILIO_REGION in the environment.
        client.edge = None
        client.region = None
        client.api.base_url = api_base.rstrip("/")
        self._messages = client.api.v2010.accounts(account_sid).messages
        self._sender = sender
        self._service = messaging_service_sid
        self._status_callback = status_callback
        self._timeout = timeout

    @property
    def connections(self) -> int:
        """The most HTTP connections it keeps open to Twilio at once."""
        return self._connections

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.close()

    async def send(self, message: OutboundMessage) -> str:
        """Hand the message to Twilio; its Message SID, or DeliveryFailed."""
        if message.channel is not ChannelName.SMS:
            raise DeliveryFailed(f"Twilio sends SMS, not {message.channel}", retryable=False)
        if not message.text:
            raise DeliveryFailed("an SMS needs a text", retryable=False, code="21602")
        callback = message.status_callback or self._status_callback
        seen = _Seen()
        token = _SEEN.set(seen)
        try:
            async with asyncio.timeout(self._timeout):
                created = await self._messages.create_async(
                    to=message.address,
                    body=message.text,
                    from_=values.unset if self._service else self._sender,
                    messaging_service_sid=self._service or values.unset,
                    status_callback=callback or values.unset,
                )
        except TwilioRestException as e:
            raise self._refused(e.status, e.code, e.msg, seen) from e
        except TwilioServiceException as e:
            raise self._refused(e.status, e.code, e.detail or e.title, seen) from e
        except TimeoutError as e:
            raise DeliveryFailed(
                f"Twilio did not answer within {self._timeout:g} s", retryable=True
            ) from e
        except aiohttp.ClientError as e:
            raise DeliveryFailed(f"could not reach Twilio: {e}", retryable=True) from e
        finally:
            _SEEN.reset(token)
        sid = getattr(created, "sid", None)
        if not isinstance(sid, str) or not sid:
            raise DeliveryFailed("Twilio's answer held no message SID", retryable=False)
        return sid

    @staticmethod
    def _refused(status: int, code: Any, reason: Any, seen: _Seen) -> DeliveryFailed:
        headers = {k.lower(): v for k, v in (seen.headers or {}).items()}
        number = code if isinstance(code, int) else None
        if number == status:  # the library fills in the HTTP status when the body had no code
            number = None
        return failure_for(
            status,
            number,
            str(reason or "no reason given"),
            retry_after=retry_after_seconds(headers.get("retry-after")),
        )
