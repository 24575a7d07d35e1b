"""The inbound path: every channel's messages go through `InboundProcessor.handle`, and only it.

    dedupe (channel, provider id) → resolve the customer → keywords (STOP/START/HELP: compliance
    replies, never the bot) → the conversation → self-service or hand-off → replies stored on the
    timeline and handed back to the channel

All of it is one transaction: the message, its effects and its replies are committed together
before the channel acknowledges anything. The same message delivered twice, or twice at the same
moment, is stored once and answered once: a unique index on (channel, provider id) decides.

A bot outside the database (a `RemoteBot`, e.g. a Rasa server) is the exception: the messages it
must answer are stored first, each awaiting it in a row of `awaiting_bot`; it is asked with no
transaction open; its answers are written in a second transaction that deletes those rows, to
the customer's open conversation as it is by then (a person holding it: nothing is sent; the
customer merged meanwhile: the survivor's, `TurnSteps.catch_up`). Should
the process stop in between, the channel never acknowledged the message: its redelivery finds it
still awaiting, and it is asked again rather than dropped as a duplicate.

Messages that arrive together are written together (group commit): while one batch is in the
database the next one queues, and a batch costs the same handful of statements whether it holds
one message or thirty-two: BEGIN, one query for every sender's customer, open conversation and
STOP-in-force, one INSERT ... ON CONFLICT DO NOTHING for the inbound messages (the rows that come
back are the new ones; the others are duplicates), one for the replies, one for the timeline, one
UPDATE for the intents, COMMIT. First messages, keywords and hand-offs take longer, rarer paths
inside the same transaction.

The parts, each in its own module:

* `processor`: the batcher (group commit) and the asking of a remote bot;
* `steps`: what one turn does in its transaction (conversation, keywords, the bot's decision);
* `sql`: the prebuilt statements and the functions that run them (the PostgreSQL row lock);
* `work`: a message waiting for its batch, and its turn being decided.

The turn types and the bot ports are `dialog.turns`; the hand-off is `dialog.handoff`; which
medium is which identity and consent channel, and how much text the bot reads, `dialog.media`.
"""

from dialog.inbound.processor import BOT_TIMEOUT, MAX_BATCH, InboundProcessor

__all__ = ["BOT_TIMEOUT", "MAX_BATCH", "InboundProcessor"]
