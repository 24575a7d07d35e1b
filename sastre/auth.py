"""Staff API tokens and what each role may do.

Tokens are random 256-bit strings shown once; only their SHA-256 is stored. A slow password hash
would add nothing here: a token has full entropy and cannot be guessed from a dictionary.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models import Base
from crm_core.sqltypes import IdType, utcnow

__all__ = [
    "Permission",
    "Role",
    "Staff",
    "StaffToken",
    "allowed",
    "authenticate",
    "create_token",
    "list_tokens",
    "revoke_token",
]

TOKEN_PREFIX = "sst_"


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"
    MARKETER = "marketer"


class Permission(StrEnum):
    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_WRITE = "customers:write"
    CUSTOMERS_MERGE = "customers:merge"
    CUSTOMERS_FORCE_MERGE = "customers:force-merge"
    TIMELINE_WRITE = "timeline:write"
    CONSENT_WRITE = "consent:write"
    # The proof behind a consent (IP address, user agent, the customer's words): to settle a
    # dispute, not to plan a campaign; without it, consent reads show what and how, not who.
    CONSENT_EVIDENCE = "consent:evidence"
    CUSTOMERS_EXPORT = "customers:export"
    FAQ_WRITE = "faq:write"  # what the bot tells every customer: not for every agent


_GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.SUPERVISOR: frozenset(
        {
            Permission.CUSTOMERS_READ,
            Permission.CUSTOMERS_WRITE,
            Permission.CUSTOMERS_MERGE,
            Permission.TIMELINE_WRITE,
            Permission.CONSENT_WRITE,
            Permission.CONSENT_EVIDENCE,
            Permission.CUSTOMERS_EXPORT,
            Permission.FAQ_WRITE,
        }
    ),
    Role.AGENT: frozenset(
        {
            Permission.CUSTOMERS_READ,
            Permission.CUSTOMERS_WRITE,
            Permission.TIMELINE_WRITE,
            Permission.CONSENT_WRITE,
            Permission.CONSENT_EVIDENCE,
        }
    ),
    Role.MARKETER: frozenset({Permission.CUSTOMERS_READ}),
}


def allowed(role: Role, permission: Permission) -> bool:
    return permission in _GRANTS[role]


class StaffToken(Base):
    __tablename__ = "staff_tokens"
    __table_args__ = (
        CheckConstraint(f"role IN ({', '.join(repr(r.value) for r in Role)})", name="role"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


@dataclass(frozen=True, slots=True)
class Staff:
    """The authenticated caller of the staff API."""

    token_id: int
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(session: AsyncSession, role: Role, name: str) -> str:
    """Store a new token for `name` with `role`; return the token itself (shown once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(StaffToken(name=name, role=role.value, token_hash=_hash(token)))
    await session.flush()
    return token


async def authenticate(session: AsyncSession, token: str) -> Staff | None:
    # Our tokens are ASCII; a header with other bytes (read as surrogates) is nobody's.
    if not token.startswith(TOKEN_PREFIX) or not token.isascii():
        return None
    row = await session.scalar(
        select(StaffToken).where(
            StaffToken.token_hash == _hash(token), StaffToken.revoked_at.is_(None)
        )
    )
    if row is None:
        return None
    return Staff(token_id=row.id, name=row.name, role=Role(row.role))


async def list_tokens(session: AsyncSession) -> list[StaffToken]:
    return list(await session.scalars(select(StaffToken).order_by(StaffToken.id)))


async def revoke_token(session: AsyncSession, token_id: int) -> bool:
    row = await session.get(StaffToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True
