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
    # "Did you mean…?": the options offered are in the `choice` slot (dialog.choices); the pick
    # runs the option chosen, and nothing else goes back to an action.
    CHOICE = "choice"

    @property
    def action(self) -> str:
        """The action the answer goes back to."""
        if self is Awaiting.OPT_OUT_CONFIRMATION:
            return "action_opt_out"
        if self is Awaiting.CALLBACK_PHONE:
            return "action_request_callback"
        raise ValueError("a choice goes to the option picked, not back to one action")

    @classmethod
    def of(cls, value: object) -> Awaiting | None:
        return cls(value) if isinstance(value, str) and value in set(cls) else None
