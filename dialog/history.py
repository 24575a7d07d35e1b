"""What a channel shows a returning sender: the messages of their open conversation.

The web chat sends it on every (re)connect, so a reload or a dropped connection resumes the
conversation where it was.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName
from crm_core.customers import CustomerNotFound, find_customer
from crm_core.identities import InvalidIdentity
from dialog.media import medium
from dialog.models import Conversation, Message, is_open

__all__ = ["open_conversation", "transcript"]


async def open_conversation(
    session: AsyncSession, channel: ChannelName, address: str, *, region: str = "US"
) -> Conversation | None:
    """The open conversation of the customer holding this address, if any."""
    try:
        customer = await find_customer(session, medium(channel).identity, address, region)
    except (CustomerNotFound, InvalidIdentity):
        return None
    conversation: Conversation | None = await session.scalar(
        select(Conversation).where(
            Conversation.customer_id == customer.id,
            is_open(Conversation.state),
        )
    )
    return conversation


async def transcript(
    session: AsyncSession,
    channel: ChannelName,
    address: str,
    limit: int = 50,
    *,
    region: str = "US",
) -> list[Message]:
    """The latest `limit` messages of that customer's open conversation, oldest first; empty for
    a new visitor or once the conversation is resolved (the next message starts a new one)."""
    conversation = await open_conversation(session, channel, address, region=region)
    if conversation is None:
        return []
    rows = await session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation.id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(list(rows)))
