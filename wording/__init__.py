"""What customers read, and how their words are read: the message catalogue and text folding.

A leaf package: it imports no other Sastre package, so consent, dialog, actions and the web
layer may all use it.
"""

from wording.catalogue import (
    FALLBACK_LANGUAGE,
    N_,
    UnknownMessage,
    available_languages,
    message_ids,
    pick_language,
    translate,
    translations,
)
from wording.folding import fold

__all__ = [
    "FALLBACK_LANGUAGE",
    "N_",
    "UnknownMessage",
    "available_languages",
    "fold",
    "message_ids",
    "pick_language",
    "translate",
    "translations",
]
