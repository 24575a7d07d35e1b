"""The durable outbox: every outbound message not answered on a live socket is first a row here,
written in the transaction that caused it; workers (`sastre.worker`) send the rows.

* `states`: the delivery states and the rule that they never move backwards;
* `models`: the `outbox`, `delivery_attempts` and `delivery_reports` (reports parked until
  their message's provider id is saved) tables;
* `queue`: queueing, the workers' claims and results, the providers' reports (`record_delivery`).
"""

from dialog.outbox.models import DeliveryAttempt, OutboxEntry, ParkedReport, Purpose
from dialog.outbox.queue import (
    PARKED_FOR,
    Admit,
    Claimed,
    Result,
    Wait,
    announce,
    claim,
    depth,
    enqueue,
    listen,
    next_due,
    outbox_row,
    record_delivery,
    release,
    settle,
    through_outbox,
)
from dialog.outbox.states import PENDING, TERMINAL, DeliveryState, advance

__all__ = [
    "PARKED_FOR",
    "PENDING",
    "TERMINAL",
    "Admit",
    "Claimed",
    "DeliveryAttempt",
    "DeliveryState",
    "OutboxEntry",
    "ParkedReport",
    "Purpose",
    "Result",
    "Wait",
    "advance",
    "announce",
    "claim",
    "depth",
    "enqueue",
    "listen",
    "next_due",
    "outbox_row",
    "record_delivery",
    "release",
    "settle",
    "through_outbox",
]
