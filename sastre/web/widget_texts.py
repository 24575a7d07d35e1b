"""The web chat widget's own words (launcher, labels, status lines, warnings), from the catalogue.

The widget (static/widget.js) is plain JavaScript with no build step, embedded on other sites:
it cannot read the `.po` files, so the server hands it these messages as one JSON document
(GET /chat/texts, in `sastre.web.chat`) before it shows anything. They are templates: the widget
fills `{count}`, `{limit}` and `{seconds}` itself, as the visitor types or the connection drops,
so they are sent unformatted. The ids are listed here with `N_` so that `pybabel extract` finds
them and the catalogue's test holds them to every language like any other message.
"""

from __future__ import annotations

from typing import Any, Final

from channels.webchat import MAX_TEXT
from wording import N_, UnknownMessage, message_ids, pick_language, translations

__all__ = ["PREFIX", "WIDGET_MESSAGES", "widget_texts"]

PREFIX: Final = "widget."
WIDGET_MESSAGES: Final = (
    N_("widget.author.agent"),
    N_("widget.author.bot"),
    N_("widget.author.customer"),
    N_("widget.choices"),
    N_("widget.close"),
    N_("widget.counter"),
    N_("widget.empty"),
    N_("widget.label"),
    N_("widget.launcher"),
    N_("widget.log"),
    N_("widget.placeholder"),
    N_("widget.send"),
    N_("widget.state.failed"),
    N_("widget.state.pending"),
    N_("widget.status.connected"),
    N_("widget.status.connecting"),
    N_("widget.status.offline"),
    N_("widget.title"),
    N_("widget.too_long"),
)


def widget_texts(requested: str | None, default: str | None) -> dict[str, Any]:
    """The widget's document for a visitor who asked for `requested`: the language chosen by the
    catalogue's one fallback rule (that language, else the deployment's `default`, else
    English), the longest message the chat takes (the widget refuses a longer one before
    sending it, with `widget.too_long`), and every `widget.*` message without its prefix."""
    language = pick_language(requested, default)
    catalogue = translations(language, default)
    known = message_ids()
    texts: dict[str, str] = {}
    for msgid in WIDGET_MESSAGES:
        if msgid not in known:
            raise UnknownMessage(msgid)
        texts[msgid.removeprefix(PREFIX)] = catalogue.gettext(msgid)
    return {"language": language, "limit": MAX_TEXT, "texts": texts}
