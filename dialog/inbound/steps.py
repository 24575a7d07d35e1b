"""What one message's turn does inside its transaction, before and after the bot: the customer
and their conversation, keywords and silence, and the bot's decision applied."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from channels.base import ChannelName, InboundMessage
from consent.keywords import NO_MATCH, KeywordKind, KeywordMatch, classify, with_provider_reading
from consent.replies import Brand, apply_keyword, reply_language, service_revoked
from crm_core.customers import Lead, create_leads, get_customer, resolve
from crm_core.models import Customer, InteractionKind
from dialog.choices import picks_offered
from dialog.handoff import HELD_BY_A_PERSON, hand_off, retention_flags
from dialog.inbound import sql
from dialog.inbound.work import Context, Pending, Work, keyword_plan
from dialog.media import bot_reads
from dialog.models import ConversationState
from dialog.turns import BotTurn, ConversationFacts, CustomerFacts, Turn

__all__ = ["TurnSteps"]


@dataclass(frozen=True, slots=True)
class TurnSteps:
    """The steps of a turn, with the defaults for what a customer has not told us."""

    region: str
    language: str
    timezone: str
    brand: Brand

    async def resolve(self, session: AsyncSession, pending: Pending) -> Context:
        """A first message (or a merged tombstone's identity): find or create the customer."""
        message = pending.message
        customer, _ = await resolve(
            session,
            pending.kind,
            pending.sender,
            self.region,
            verified=message.verified,
            language=message.language_hint,
        )
        context = await sql.load_context(session, customer.id, message.channel.value)
        assert context is not None  # resolve has just found or created them
        return context

    async def create_leads(
        self, session: AsyncSession, first: Sequence[Pending]
    ) -> dict[tuple[str, str], Context]:
        """Messages from addresses no customer holds: a lead for each, created together (a
        burst of first messages costs two statements, not a few each). Their contexts by
        (kind, address): just created, so no conversation and no consent recorded yet."""
        leads = [
            Lead(
                pending.kind.value,
                pending.sender,
                verified=pending.message.verified,
                language=pending.message.language_hint,
            )
            for pending in first
        ]
        created = await create_leads(session, leads)
        return {
            key: Context(
                CustomerFacts(
                    id=row.id,
                    name=row.name,
                    language=row.language,
                    timezone=row.timezone,
                    tier=row.tier,
                    attributes=row.attributes or {},
                ),
                conversation=None,
                revoked=False,
            )
            for key, row in created.items()
        }

    def opening(self, context: Context, message: InboundMessage) -> ConversationFacts:
        """The conversation a customer with none open starts with (its id 0 until opened)."""
        customer = context.customer
        return ConversationFacts(
            id=0,
            state=ConversationState.BOT.value,
            channel=message.channel.value,
            address=message.address,
            language=customer.language or self.language,
            failed_turns=0,
            flags=retention_flags(customer),
        )

    async def store(self, session: AsyncSession, works: Sequence[Work]) -> None:
        """Store the works' messages; a work holding an opening (a conversation of id 0) gets
        its conversation opened with it (on PostgreSQL in the same statement). A customer
        whose conversation another process opened meanwhile is skipped by that INSERT, joins
        that conversation (`conversation`) and has their message stored in it."""
        missed = await sql.store_inbound(session, works)
        if not missed:
            return
        for work in missed:
            context = Context(work.customer, None, work.revoked)
            work.conversation = await self.conversation(session, context, work.message)
        await sql.store_inbound(session, missed)

    async def conversation(
        self, session: AsyncSession, context: Context, message: InboundMessage
    ) -> ConversationFacts:
        """The customer's open conversation, or a new one.

        The partial unique index allows one open conversation per customer; two first messages
        racing for it (from two processes) both end up in the same one."""
        for _ in range(2):
            if context.conversation is not None:
                return context.conversation
            opening = self.opening(context, message)
            try:
                async with session.begin_nested():
                    opened = await sql.open_conversation(session, context.customer.id, opening)
            except IntegrityError:
                channel = message.channel.value
                reloaded = await sql.load_context(session, context.customer.id, channel)
                assert reloaded is not None
                context.conversation = reloaded.conversation
                continue
            return replace(opening, id=opened)
        raise RuntimeError("could not open a conversation")  # pragma: no cover

    async def prepare(self, session: AsyncSession, work: Work) -> Turn | None:
        """Keywords and silence; the turn to put to the bot, if it is the bot's to answer."""
        message, conversation = work.message, work.conversation
        if conversation.channel != message.channel.value or conversation.address != message.address:
            work.conversation_changes.update(channel=message.channel.value, address=message.address)
            work.conversation = replace(
                conversation, channel=message.channel.value, address=message.address
            )
        if not work.resumed:  # a message asked again is on the timeline already
            work.note(
                InteractionKind.MESSAGE_IN,
                message.text,
                "customer",
                message_id=work.inbound_id,
                conversation_id=conversation.id,
                **({"in_reply_to": work.answers} if work.answers is not None else {}),
                # The provider's extras, for staff: an e-mail's proof of sender, what was
                # malformed, why it is not answered, its attachments.
                **({"provider": dict(message.metadata)} if message.metadata else {}),
                **({"attachments": list(message.attachments)} if message.attachments else {}),
            )
        if message.auto:
            # An auto-reply or bulk mail: stored and on the timeline, never answered (two
            # autoresponders answering each other would never stop). An SMS sender nothing
            # answers (a number the tables do not know) may still text STOP: heard, unanswered.
            if message.channel is ChannelName.SMS:
                await self._unanswered_stop(session, work)
            return None
        channel = work.pending.medium.consent
        # A short answer ("no", "ok") reads as either language: the one this conversation is held
        # in breaks the tie, since the bot keeps it to the language the customer writes in. The
        # customer's own comes next (a conversation this message opened holds only that), then
        # the browser's: a web chat lead took its browser's language, which may not be theirs.
        language = (
            (None if work.opened else conversation.language)
            or work.customer.language
            or message.language_hint
            or self.language
        )
        # Keywords and the bot read the same bounded start of the message; all of it is stored.
        text = bot_reads(message)
        said, keyword = _keyword(message, text)
        if not keyword.exact and picks_offered(work.conversation.flags, text):
            keyword = NO_MATCH  # an option the bot offered, picked: not a revocation in words
        if keyword.kind is not KeywordKind.NONE:
            # The reply is in the customer's language, or the one this conversation is held in;
            # only a first message from someone unknown is answered in the keyword's own.
            known = work.customer.language or message.language_hint
            outcome = await apply_keyword(
                session,
                work.customer.id,
                channel,
                keyword,
                language=known or (None if work.opened else conversation.language),
                default_language=self.language,
                brand=self.brand,
                evidence={"message_id": message.provider_id, "text": text},
                # An e-mail nothing vouches for may withdraw consent, never give it.
                sender_proven=message.verified or not work.pending.medium.claimable,
            )
            if outcome.handled:
                work.intent = "keyword"
                work.plan = keyword_plan(keyword.kind)
                # A provider that acted on the keyword has answered it too (Twilio's Advanced
                # Opt-Out sends the responses configured there, and after STOP refuses our
                # sends to the number): a reply of ours would be a second one, or refused.
                answered = said is not None
                work.replies = [outcome.reply] if outcome.reply and not answered else []
                if known is None and work.opened:
                    await self._keep_language(session, work, keyword)
                return None
            work.revoked = await service_revoked(session, work.customer.id, channel)
        if work.revoked or conversation.state in HELD_BY_A_PERSON:
            # STOP in force here: store what they wrote, send nothing until START. A person
            # holding the conversation: the bot stays silent.
            return None
        return Turn(
            customer=work.customer,
            conversation=work.conversation,
            text=text,
            language=language,
            timezone=work.customer.timezone or self.timezone,
            received_at=work.now,
            sender_proven=message.verified or not work.pending.medium.claimable,
            attachments=len(message.attachments),
            message_id=work.inbound_id,
        )

    async def _unanswered_stop(self, session: AsyncSession, work: Work) -> None:
        """STOP from a sender the bot does not answer is recorded all the same (STOP means stop,
        whoever says it), with no confirmation. Only the keyword itself (or the provider's
        reading of it): this sender's plain words are nobody's to interpret."""
        message = work.message
        text = bot_reads(message)
        _, keyword = _keyword(message, text)
        if keyword.kind is not KeywordKind.OPT_OUT or not keyword.exact:
            return
        outcome = await apply_keyword(
            session,
            work.customer.id,
            work.pending.medium.consent,
            keyword,
            language=None,
            default_language=self.language,
            brand=self.brand,
            evidence={"message_id": message.provider_id, "text": text},
            sender_proven=True,  # a number's STOP is the number's: the carrier vouches
        )
        if outcome.handled:
            work.intent = "keyword"
            work.plan = keyword_plan(keyword.kind)

    async def _keep_language(
        self, session: AsyncSession, work: Work, keyword: KeywordMatch
    ) -> None:
        """A keyword opened the conversation of someone whose language is unknown: it was answered
        in the keyword's language, and so is what follows ("AYUDA" then "BAJA": both Spanish,
        the second telling them to reply ALTA). The customer's language is set too, unless the
        keyword is one of the carriers' English words, which people text in every language."""
        language = reply_language(keyword, known=None, default=self.language)
        if language != work.conversation.language:
            work.conversation_changes["language"] = language
            work.conversation = replace(work.conversation, language=language)
        if keyword.language is None or (keyword.exact and keyword.language == "en"):
            return
        await session.execute(
            update(Customer)
            .where(Customer.id == work.customer.id, Customer.language.is_(None))
            .values(language=language)
        )
        work.customer = replace(work.customer, language=language)

    async def catch_up(self, session: AsyncSession, work: Work, held: sql.Held | None) -> bool:
        """Bring a turn whose answer was decided outside the transaction up to what is stored
        now; returns whether the bot may answer it (no person holds it, no STOP in force).

        Usually the conversation is still open and still the customer's (`held`, locked on
        PostgreSQL): its state now is what the answer applies to. Otherwise it was resolved or
        merged meanwhile: the customer's record merged into another (the conversation moved to
        the survivor, or was closed into the survivor's open one), or the other record merged
        into theirs with the other's conversation kept. The answer is for the person, so it
        goes to the open conversation of the record that lives on, under that record."""
        if (
            held is not None
            and held.customer_id == work.customer.id
            and held.conversation.state != ConversationState.RESOLVED.value
        ):
            work.conversation = held.conversation
            return work.conversation.state not in HELD_BY_A_PERSON
        live = await get_customer(session, work.customer.id)
        # The survivor's open conversation, locked on PostgreSQL like `held`; a merge needs
        # that lock to move it, so it stays the survivor's until this transaction ends.
        context = await sql.load_context(session, live.id, work.pending.medium.consent.value)
        assert context is not None  # get_customer has just found them
        work.customer = context.customer
        if context.conversation is None:
            # Nothing is open: a person resolved it. The answer goes to it as it is.
            if held is not None:
                work.conversation = held.conversation
            return not context.revoked
        work.conversation = context.conversation
        # The survivor may have sent STOP here: what they write is stored, nothing is sent.
        return not context.revoked and work.conversation.state not in HELD_BY_A_PERSON

    async def apply(self, session: AsyncSession, work: Work, decided: BotTurn) -> None:
        """What the bot decided becomes this message's replies and effects."""
        conversation = work.conversation
        work.intent, work.confidence = decided.intent, decided.confidence
        work.plan, work.choices = decided.plan, decided.choices
        work.replies = list(decided.replies)
        failed_turns = 0 if decided.understood else conversation.failed_turns + 1
        if failed_turns != conversation.failed_turns:
            work.conversation_changes["failed_turns"] = failed_turns
        if decided.language and decided.language != conversation.language:
            work.conversation_changes["language"] = decided.language
        if decided.flags is not None and decided.flags != conversation.flags:
            work.conversation_changes["flags"] = decided.flags
            work.conversation = replace(conversation, flags=decided.flags)
        if decided.complaint:
            work.note(
                InteractionKind.COMPLAINT, work.message.text, "customer", message_id=work.inbound_id
            )
        if decided.handoff:
            work.handed_off = True
            await sql.write_timeline(session, work)  # the card in the hand-off shows this message
            work.conversation_changes.update(
                await hand_off(
                    session,
                    customer=work.customer,
                    conversation=work.conversation,
                    reason=decided.handoff,
                    now=work.now,
                    message_id=work.inbound_id,
                    intent=work.intent,
                )
            )


def stops(message: InboundMessage) -> bool:
    """Whether the message is an opt-out (a STOP, a revocation in plain words, or the provider's
    reading of one): it acts when it comes, not behind the bot's answer to the customer's
    previous turn (which would be queued, and could be sent, before the opt-out is recorded)."""
    _, keyword = _keyword(message, bot_reads(message))
    return keyword.kind is KeywordKind.OPT_OUT


def _keyword(message: InboundMessage, text: str) -> tuple[str | None, KeywordMatch]:
    """The keyword the provider read in the message, if any (Twilio's OptOutType: it has acted
    on it already), and the keyword the text is, the provider's reading first."""
    said = message.metadata.get("keyword")
    return said, with_provider_reading(classify(text), said, text)
