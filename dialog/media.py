"""One vocabulary for the media customers reach us on.

Each medium says, in one entry, what the three packages call it and how its text is bounded:

* its `ChannelName` (channels), the `IdentityKind` its senders are known by (crm_core) and the
  consent `Channel` its messages are sent under (consent);
* `max_text`: the longest message a customer may send on it, or None when any length is stored
  whole (an e-mail is what it is: refusing it would lose it). A medium with a limit checks it
  at its edge and tells the customer why (the web chat shows the reason in the widget);
* `bot_text`: how much of a message the bot is given (its start). The message itself is
  stored whole whatever its length;
* `writes`: whether customers write to us on it. Call-backs (voice) are ours to place, so a phone
  number that writes to us writes by SMS;
* `claimable`: whether anyone can write as any address (an e-mail's From can be forged): there a
  sender the channel did not prove gets no account data (`dialog.turns.Turn.sender_proven`).

The maps between the three vocabularies in `dialog` read this registry; consent keeps its own
(which identity makes a channel reachable: it may not import `dialog`), and a test holds it to
this one. A new medium (an adapter in `channels/`) registers here; `tests/dialog/test_media.py`
fails until every name of the three vocabularies is accounted for. `channels` may not see
crm_core or consent, which is why the registry lives in `dialog`, the first package that may
see all three.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from channels import webchat
from channels.base import ChannelName, InboundMessage
from consent.types import Channel
from crm_core.models import IdentityKind

__all__ = [
    "NOT_MEDIA",
    "Medium",
    "bot_part",
    "bot_reads",
    "by_consent_channel",
    "media",
    "medium",
    "register",
    "writing_channels",
]


@dataclass(frozen=True, slots=True)
class Medium:
    name: ChannelName
    identity: IdentityKind
    consent: Channel
    max_text: int | None  # the longest message a customer may send; None: any, stored whole
    bot_text: int  # how many characters of a message the bot is given (its start)
    writes: bool = True  # customers write to us on it (voice: we call them)
    # The longest message we may send on it (the provider refuses longer ones); None: any.
    max_send: int | None = None
    # Anyone can write as any address on it (an e-mail's From): a sender the channel did not
    # prove (InboundMessage.verified) is answered, but not with account data.
    claimable: bool = False

    def __post_init__(self) -> None:
        if self.bot_text < 1:
            raise ValueError(f"{self.name}: the bot must be given some of the text")
        if self.max_text is not None and self.max_text < 1:
            raise ValueError(f"{self.name}: a text limit must be positive")


# Identities nobody writes from: another system's id for the customer.
NOT_MEDIA: frozenset[IdentityKind] = frozenset({IdentityKind.EXTERNAL})

_MEDIA: dict[ChannelName, Medium] = {}


def register(entry: Medium) -> Medium:
    """Add a medium. Names are unique; so is the medium a kind of identity writes on."""
    if entry.name in _MEDIA:
        raise ValueError(f"the medium {entry.name} is registered already")
    if entry.writes:
        for other in _MEDIA.values():
            if other.writes and other.identity is entry.identity:
                raise ValueError(f"{entry.identity} writes on {other.name} already")
    _MEDIA[entry.name] = entry
    return entry


def medium(name: ChannelName | str) -> Medium:
    """The medium of that name; KeyError for a name nobody registered."""
    return _MEDIA[ChannelName(name)]


def media() -> Iterator[Medium]:
    return iter(tuple(_MEDIA.values()))


def by_consent_channel(channel: Channel) -> Medium:
    for entry in _MEDIA.values():
        if entry.consent is channel:
            return entry
    raise KeyError(channel)


def writing_channels() -> Mapping[IdentityKind, Channel]:
    """The consent channel each kind of identity writes on (a phone number writes by SMS)."""
    return MappingProxyType({m.identity: m.consent for m in _MEDIA.values() if m.writes})


def bot_part(name: ChannelName | str, text: str) -> str:
    """What the bot is given of a message on that medium: its start, at most `bot_text` long."""
    return text[: medium(name).bot_text]


def bot_reads(message: InboundMessage) -> str:
    """What the bot reads of an inbound message: its bot text (an e-mail's newest reply, without
    the quoted thread) or else its text, cut to the medium's `bot_part`."""
    text = message.text if message.bot_text is None else message.bot_text
    return bot_part(message.channel, text)


# Providers take an SMS body of up to 1,600 characters (ten segments); a longer text, joined
# from several, is stored whole and a person reads the rest.
register(Medium(ChannelName.SMS, IdentityKind.PHONE, Channel.SMS, None, 1600, max_send=1600))
# An e-mail's question is at its start; the quoted thread below it is for a person.
register(Medium(ChannelName.EMAIL, IdentityKind.EMAIL, Channel.EMAIL, None, 4000, claimable=True))
# Telegram itself bounds a message at 4,096 characters.
register(
    Medium(ChannelName.TELEGRAM, IdentityKind.TELEGRAM, Channel.TELEGRAM, None, 4096, max_send=4096)
)
# The widget refuses longer messages with a reason shown to the visitor (channels.webchat).
register(
    Medium(
        ChannelName.WEBCHAT,
        IdentityKind.WEBCHAT,
        Channel.WEBCHAT,
        webchat.MAX_TEXT,
        webchat.MAX_TEXT,
    )
)
# Call-backs: we place the call to the customer's phone; the bot reads a transcript's start.
register(Medium(ChannelName.VOICE, IdentityKind.PHONE, Channel.VOICE, None, 4000, writes=False))
