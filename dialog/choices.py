"""Options the bot offers when torn ("Did you mean…?"), and reading the customer's pick.

An option is a string: `faq:<entry-id>` (answer from that FAQ entry) or `action:<action-name>`
(run that rasa-sdk action). Its label is what the customer reads: an FAQ entry's first question
variant in the conversation's language, an action's `choice.<action>` text from the catalogue.

A channel with buttons (the web chat) shows the labels as quick replies under the question; any
other channel (SMS, e-mail) gets them numbered in the text. Either way the answer is a message:
a number ("2", "la 2", "option 2"), or words close enough to one label ("the opening hours").
Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any

from wording import N_, translate
from wording import fold as fold_text

if TYPE_CHECKING:  # the FAQ's scientific libraries stay out of the inbound path's imports
    from dialog.faq import FaqEntry

__all__ = [
    "BUTTON_CHANNELS",
    "CHOICE_SLOT",
    "MAX_OPTIONS",
    "PendingChoice",
    "label_of",
    "option_action",
    "option_entry",
    "pick",
    "picks_offered",
    "render",
]

CHOICE_SLOT = "choice"  # the offered options, while the customer's pick is awaited
MAX_OPTIONS = 3  # more than three is a menu, not a question
BUTTON_CHANNELS = frozenset({"webchat"})  # channels that show options as quick-reply buttons
_ACTION_LABELS = {
    "action_order_status": N_("choice.action_order_status"),
    "action_request_callback": N_("choice.action_request_callback"),
    "action_update_preferences": N_("choice.action_update_preferences"),
    "action_opt_out": N_("choice.action_opt_out"),
}
# Words customers put around a number: "la 2", "option 2", "número 2.", "#2", "2)".
_NUMBER = re.compile(
    r"^(?:(?:la|el|opcion|option|numero|number|no|n|nr|num)\s*)?#?\s*(\d{1,2})\s*[.)]?$"
)
_ORDINALS = {
    "primera": 1,
    "primero": 1,
    "first": 1,
    "1st": 1,
    "segunda": 2,
    "segundo": 2,
    "second": 2,
    "2nd": 2,
    "tercera": 3,
    "tercero": 3,
    "third": 3,
    "3rd": 3,
}
_FILLER = frozenset(
    {
        *("la", "el", "los", "las", "lo", "de", "del", "a", "en", "mi", "por", "favor"),
        *("opcion", "quiero", "yo", "es", "eso", "esa", "ese", "una", "un"),
        *("the", "an", "my", "of", "to", "please", "one", "option", "want", "i", "me", "is"),
        *("that", "it"),
    }
)
# A yes, as the whole message: with one option offered, it picks that one.
_YES = frozenset(
    {
        *("si", "si gracias", "si por favor", "vale", "claro", "eso", "eso es", "exacto", "sip"),
        *("yes", "yes please", "yep", "yeah", "yup", "ok", "okay", "sure", "exactly", "correct"),
        *("that s it", "thats it", "that one", "esa", "ese", "esa misma", "correcto"),
    }
)
# How alike the customer's words and a label must be to count as picking it, and by how much
# the best must beat the next one (two labels both half-matching is not a pick).
_ALIKE = 0.6
_AHEAD = 0.15


@dataclass(frozen=True, slots=True)
class PendingChoice:
    """What the conversation keeps while the pick is awaited (in its flags' slots)."""

    options: tuple[str, ...]
    labels: tuple[str, ...]
    text: str  # the question that was asked: what the pick labels, and what an action reads
    language: str
    message_id: int | None  # the inbound message holding that question
    entities: tuple[dict[str, str], ...] = ()  # read from the question, for an action chosen

    def to_slot(self) -> dict[str, Any]:
        return {
            "options": list(self.options),
            "labels": list(self.labels),
            "text": self.text,
            "language": self.language,
            "message_id": self.message_id,
            "entities": [dict(e) for e in self.entities],
        }

    @classmethod
    def of(cls, value: object) -> PendingChoice | None:
        """The pending choice kept in a slot, or None when the slot holds none (or garbage)."""
        if not isinstance(value, Mapping):
            return None
        options, labels = value.get("options"), value.get("labels")
        if not (isinstance(options, list) and isinstance(labels, list)):
            return None
        if not options or len(options) != len(labels):
            return None
        message_id = value.get("message_id")
        entities = value.get("entities") or []
        return cls(
            options=tuple(str(o) for o in options),
            labels=tuple(str(label) for label in labels),
            text=str(value.get("text") or ""),
            language=str(value.get("language") or "en"),
            message_id=message_id if isinstance(message_id, int) else None,
            entities=tuple(e for e in entities if isinstance(e, dict)),
        )


_NOT_WORD = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """Folded (case, accents) with punctuation as single spaces: "¿La 2?" is "la 2"."""
    return _NOT_WORD.sub(" ", fold_text(text)).strip()


def option_entry(option: str) -> str | None:
    """The FAQ entry id of an `faq:<id>` option."""
    kind, _, name = option.partition(":")
    return name if kind == "faq" and name else None


def option_action(option: str) -> str | None:
    """The action name of an `action:<name>` option."""
    kind, _, name = option.partition(":")
    return name if kind == "action" and name else None


def label_of(option: str, language: str, entries: Mapping[str, FaqEntry]) -> str | None:
    """What the customer reads for an option; None when it cannot be offered (an entry no
    longer in the KB, an action with no label)."""
    entry_id = option_entry(option)
    if entry_id is not None:
        entry = entries.get(entry_id)
        if entry is None:
            return None
        for lang in (language, *sorted(entry.questions)):
            if entry.questions.get(lang):
                return entry.questions[lang][0]
        return None
    action = option_action(option)
    if action is None or action not in _ACTION_LABELS:
        return None
    return translate(language, _ACTION_LABELS[action])


def render(language: str, labels: Sequence[str], *, buttons: bool) -> str:
    """The question: alone when the channel shows the labels as buttons, else with them
    numbered and how to answer."""
    question = translate(language, "choice.question")
    if buttons:
        return question
    lines = [f"{n}. {label}" for n, label in enumerate(labels, start=1)]
    return "\n".join([question, *lines, translate(language, "choice.how_to_answer")])


def pick(text: str, labels: Sequence[str]) -> int | None:
    """Which label the message picks (its index), by number or by words; None when it picks
    none of them clearly (then the question lapses and the message is read as a new one)."""
    folded = fold(text)
    if not folded:
        return None
    if len(labels) == 1 and folded in _YES:
        return 0  # "Did you mean X?" "yes"
    number = _NUMBER.match(folded)
    if number is not None:
        n = int(number.group(1))
        return n - 1 if 1 <= n <= len(labels) else None
    words = folded.split()
    ordinal = [_ORDINALS[w] for w in words if w in _ORDINALS]
    if len(words) <= 3 and len(ordinal) == 1 and ordinal[0] <= len(labels):
        return ordinal[0] - 1
    scores = sorted(
        ((_alike(folded, fold(label)), n) for n, label in enumerate(labels)), reverse=True
    )
    best, n = scores[0]
    runner_up = scores[1][0] if len(scores) > 1 else 0.0
    return n if best >= _ALIKE and best - runner_up >= _AHEAD else None


def picks_offered(flags: Mapping[str, Any], text: str) -> bool:
    """Is `text` word for word one of the options the conversation's flags hold on offer?

    Such a message is the customer's pick, whatever its words: a web chat button sends its
    label, and an FAQ entry's label may well be "How do I unsubscribe?", which read as plain
    words would withdraw consent the customer only asked about."""
    pending = PendingChoice.of((flags.get("slots") or {}).get(CHOICE_SLOT))
    if pending is None:
        return False
    folded = fold(text)
    return bool(folded) and any(folded == fold(label) for label in pending.labels)


def _alike(answer: str, label: str) -> float:
    """How much the answer reads as the label: the whole of it spelled alike, or the answer's
    own words (not "the", "la") found in the label's."""
    whole = SequenceMatcher(None, answer, label).ratio()
    said = [w for w in answer.split() if w not in _FILLER]
    if not said:
        return whole
    offered = label.split()
    found = sum(
        1
        for w in said
        if any(
            w == o or (len(w) > 3 and SequenceMatcher(None, w, o).ratio() >= 0.8) for o in offered
        )
    )
    return max(whole, found / len(said))
