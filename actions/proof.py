"""Account data only for a sender who is proven to be the customer.

On a medium where anyone can write as any address (an e-mail's From can be forged), the inbound
path tells the bot whether the channel proved the sender (`dialog.turns.Turn.sender_proven`); the
embedded dialog hands it to the actions as the `sender_proven` slot. An action that would reveal
account data (order status, the profile, the preferences link) answers an unproven sender with a
generic text instead, and notes the attempt on the customer's timeline for staff: someone may be
fishing for another customer's orders.

With a Rasa server, `dialog.rasa` sends `sender_proven` in the message's metadata, which Rasa
hands to the action server with the tracker: the actions read it there, so no Rasa rule has to
copy it into the slot. A tracker with neither (an older Rasa project) counts as proven.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from actions.deps import TrackerFacts
from crm_core.models import InteractionKind
from crm_core.timeline import add_interaction
from wording import translate

__all__ = ["PROVEN_SLOT", "generic_answer", "note_unproven", "sender_proven"]

PROVEN_SLOT = "sender_proven"


def sender_proven(facts: TrackerFacts) -> bool:
    # The embedded dialog sets the slot; a Rasa server passes on the message's metadata, which
    # Sastre wrote when it asked (`dialog.rasa`), and either saying False withholds the data.
    return (
        facts.slots.get(PROVEN_SLOT) is not False and facts.metadata.get(PROVEN_SLOT) is not False
    )


def generic_answer(language: str) -> str:
    return translate(language, "account.unproven")


async def note_unproven(
    session: AsyncSession, customer_id: int, action: str, facts: TrackerFacts
) -> None:
    """The attempt, on the timeline: which action, on which channel, with the words used."""
    channel = facts.slot("channel")
    await add_interaction(
        session,
        customer_id,
        InteractionKind.NOTE,
        f"Account data withheld from an unproven sender ({action})",
        channel=channel,
        actor="bot",
        data={"action": action, "text": facts.text[:500], "reason": "sender not proven"},
        flush=False,
    )
