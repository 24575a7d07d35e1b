"""The question an action asked and waits for an answer to: the `awaiting` slot.

An action that cannot finish without the customer (a phone number to call, a yes before
withdrawing consent) asks, and sets `awaiting`; the dialog then gives the next message that
answers it back to the same action. A real Rasa server keeps the slot in its tracker; the
embedded dialog keeps it in the conversation's flags (`dialog.selfservice`).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AWAITING_SLOT", "Awaiting"]

AWAITING_SLOT = "awaiting"


class Awaiting(StrEnum):
    # "stop marketing by e-mail? Reply YES": a yes withdraws, a plain no keeps it (opt_out.py)
    OPT_OUT_CONFIRMATION = "opt_out_confirmation"
    CALLBACK_PHONE = "callback_phone"  # "which number shall we call?"

    @property
    def action(self) -> str:
        """The action the answer goes back to."""
        if self is Awaiting.OPT_OUT_CONFIRMATION:
            return "action_opt_out"
        return "action_request_callback"

    @classmethod
    def of(cls, value: object) -> Awaiting | None:
        return cls(value) if isinstance(value, str) and value in set(cls) else None
