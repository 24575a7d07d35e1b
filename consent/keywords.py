"""Keywords: is an inbound text an opt-out, an opt-in, a request for help, or none of these?

`classify` is a pure function of the text and a `KeywordRules` object; it does no I/O and takes a
few microseconds (every regex is compiled once, at import or when a rules object is built). The
rules come from SMS practice; the inbound path reads every channel's messages with them.

How a text is read
------------------
The text is folded by `wording.fold`, as the bot folds it (case-folded, accents folded: "SÍ" is
"si" and full-width "ＳＴＯＰ" is "stop"), apostrophes are dropped ("don't" is "dont"), and every
run of other characters that are not letters or digits becomes one space; clause punctuation
(``. , ; : ! ? ¡ ¿ |`` and line breaks) becomes a clause break that no in-sentence phrase may
cross. Emoji and symbols are therefore ignored like punctuation: "STOP 🙏" is the keyword STOP.

1. **Single keyword** (``exact=True``). The whole message, once the surrounding whitespace,
   punctuation and emoji are stripped, is one configured keyword: "stop.", " Stop! ", "¡BAJA!".
   Opt-out (CTIA/Twilio defaults plus Spanish), opt-in (START, UNSTOP, ALTA, INICIO), help (HELP,
   INFO, AYUDA) and confirmation words (YES, Y, SI, SÍ) all work this way. A confirmation word is
   an ``OPT_IN`` with ``confirms_pending=True``: it counts only as the answer to a pending opt-in,
   which the caller knows and this module does not.
2. **Revocation in plain words** (``exact=False``), FCC order 24-18: consent may be revoked by any
   reasonable means, and the words stop, quit, end, revoke, opt out, cancel and unsubscribe count
   even inside a sentence. Sastre reads:

   * *stop*, *quit*, *revoke*, *opt out* (also "opt-out", "optout", "opted out") and *unsubscribe*
     anywhere as a word: "please stop texting me", "Unsubscribe me", "I want to opt out". This is
     deliberate even for sentences that may not be revocations ("I quit my job", "stop it"): a
     missed revocation is a violation (and, under the TCPA, a fine per message) that the customer
     cannot undo, while a false one costs one confirmation text that says how to come back
     (START). So the classifier errs towards opt-out. Only *stop* the noun and *stop by* (to
     visit) are left out, as no reasonable person reads them as a wish to stop: "where is the
     nearest bus stop?", "the next stop", "a one-stop shop", "non-stop", "a stop sign", "can I
     stop by the store?". A revocation after one still counts ("I'm at the bus stop, stop
     texting me").
   * *end* and *cancel* inside a sentence only when they are about our messages: a messaging word
     (messages, texts, SMS, alerts, notifications, subscription, e-mails, reminders, updates…)
     follows within three words in the same clause ("cancel my subscription", "end these texts",
     "cancel messages"). "cancel my order" is a self-service request, "when does the sale end?"
     and "the weekend" are not about messages at all; the bot answers those. "The end of your
     message" (end as a noun) does not count.
   * a configured opt-out word with nothing but courtesy around it: "cancel please", "baja por
     favor", "alto ya", "STOP now thanks".
   * other unmistakable phrases: "no more texts", "don't text me", "remove me from your list",
     "take me off the list", "leave me alone".
   * Spanish: "no me escriban/manden/envíen/contacten/molesten (más)" (the negative imperative, so
     "no me envían el pedido" — *they don't send me the order* — is not one), "no quiero recibir
     más mensajes", "no quiero que me escriban", "dejen de enviarme mensajes", "para de
     escribirme", "darme de baja", "me doy de baja", "quiero la baja", "dar de baja los SMS",
     "baja de la lista", "basta de mensajes", "¡basta!", "no más mensajes", "cancelar la
     suscripción", "desuscribirme". "Dar de baja mi tarjeta" (cancel a card) and "estoy de baja"
     (on sick leave) are not revocations.
   * an English word in a Spanish sentence ("stop por favor") is reported with language "es".

   A request about calls ("don't call me, text me instead") is not read as revoking texts; a
   request to stop e-mails sent by text ("cancel my e-mails") is, since it is about messages.

   A phrase the customer says they do *not* want is no revocation: "I don't want to
   unsubscribe", "Please do not stop sending me texts", "I'm not opting out", "no quiero darme
   de baja", "no quiero que dejen de enviarme mensajes", "no me den de baja". The negation must
   be in the same clause, with nothing between it and the phrase but wanting or intending
   ("want to", "going to", "quiero", "que"); in English it must be the customer's own ("I",
   "we", an imperative "please don't"), since "it won't stop texting me" and "why don't you
   stop" are complaints, and so are the Spanish indicatives "no para de escribirme" and "no me
   dan de baja". A phrase that is itself a negation ("don't text me", "no, no me escriban")
   stays one. The search goes on after a negated phrase: "I won't stop complaining until you
   stop texting me" is a revocation.
3. **Help** and **opt-in** only as the single word. "I need help with my order" is a normal
   message for the bot; "yes please" is not a confirmation (an opt-in must be unambiguous, so
   opt-in errs the other way from opt-out).
4. Anything else is ``NONE``.

A whole-message keyword is taken as it is; otherwise a revocation in plain words anywhere in the
text wins over everything else in it ("help stop" is an opt-out).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from wording import fold

__all__ = [
    "DEFAULT_RULES",
    "NO_MATCH",
    "KeywordKind",
    "KeywordMatch",
    "KeywordPermission",
    "KeywordRules",
    "Language",
    "classify",
    "default_rules",
    "permitted",
    "with_provider_reading",
]

Language = Literal["en", "es"]


class KeywordKind(StrEnum):
    """What a text asks for: to stop, to (re)start, for help, or none of these."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    """What an inbound text is, as far as keywords go.

    `keyword` is the canonical word ("STOP", "BAJA", "SI"), or for a revocation in plain words the
    phrase as the classifier read it (lower case, accents folded: "no me escriban mas").
    `exact` is True when the whole message was that single keyword. `confirms_pending` marks the
    YES/SÍ answers, which are an opt-in only where they answer a pending opt-in.
    """

    kind: KeywordKind
    keyword: str | None = None
    language: Language | None = None
    exact: bool = False
    confirms_pending: bool = False


NO_MATCH = KeywordMatch(KeywordKind.NONE)


# --- normalisation ------------------------------------------------------------------------------

_CLAUSE_ASCII = ".,;:!?|\n\r"
_CLAUSE = re.compile(r"[.,;:!?¡¿|\n\r\u2026\u2014]+")
_NON_WORD = re.compile(r"[^\w|]+")
_SPACES = re.compile(r"  +")
# ASCII text (most of it, once accents are folded) is split with one bytes.translate, not regexes.
_ASCII_WORDS = bytes(
    byte if chr(byte).isalnum() else ord("|") if chr(byte) in _CLAUSE_ASCII else ord(" ")
    for byte in range(128)
) + bytes(range(128, 256))
_EDGES = " |"


def _fold(text: str) -> str:
    """Lower case without accents or apostrophes ("don't" is "dont"); "_" is not a letter here."""
    if text.isascii():
        text = text.lower()
    else:
        text = fold(text)
        for apostrophe in "’‘ʼ":
            text = text.replace(apostrophe, "")
    return text.replace("'", "").replace("`", "").replace("_", " ")


def _words(folded: str) -> str:
    """Words separated by single spaces, clause breaks as '|' words; no space at either end."""
    if folded.isascii():
        spaced = folded.encode("ascii").translate(_ASCII_WORDS).decode("ascii")
    else:
        spaced = _NON_WORD.sub(" ", _CLAUSE.sub("|", folded))
    return _SPACES.sub(" ", spaced.replace("|", " | ")).strip(" ")


def _core(text: str) -> str:
    return _words(_fold(text)).strip(_EDGES)


# --- rules --------------------------------------------------------------------------------------

# Courtesy that may surround an opt-out word without changing its meaning.
_FILLER = (
    r"(?:please|pls|plz|plse|thanks|thank you|thx|ty|now|right now|asap|all|immediately"
    r"|por favor|porfa|porfavor|xfa|gracias|ya|ahora|ahora mismo|todo|inmediatamente)"
)
# Opt-out words that count with courtesy around them, besides the configured ones.
_EXTRA_OPT_OUT: Mapping[str, tuple[str, Language]] = {"basta": ("BASTA", "es")}


def _check_words(name: str, words: object) -> tuple[str, ...]:
    if isinstance(words, str) or not isinstance(words, tuple):
        raise TypeError(f"KeywordRules.{name} must be a tuple of words, not {words!r}")
    for word in words:
        if not isinstance(word, str) or not _core(word):
            raise ValueError(f"KeywordRules.{name}: {word!r} is not a keyword")
    return words


@dataclass(frozen=True, slots=True)
class KeywordRules:
    """The keyword lists, English and Spanish (defaults: docs/permission-marketing.md).

    Each word is matched as the whole message, case- and accent-insensitively. A word may belong to
    only one list. Revocation in plain words (FCC 24-18) is not configurable: it is the law.
    """

    opt_out: tuple[str, ...] = (
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
    )
    opt_out_es: tuple[str, ...] = ("BAJA", "CANCELAR", "PARAR", "ALTO")
    opt_in: tuple[str, ...] = ("START", "UNSTOP")
    opt_in_es: tuple[str, ...] = ("ALTA", "INICIO")
    confirm: tuple[str, ...] = ("YES", "Y")
    confirm_es: tuple[str, ...] = ("SI", "SÍ")
    help: tuple[str, ...] = ("HELP", "INFO")
    help_es: tuple[str, ...] = ("AYUDA",)
    _exact: Mapping[str, KeywordMatch] = field(init=False, repr=False, compare=False)
    _courteous_opt_out: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lists: tuple[tuple[str, KeywordKind, Language, bool], ...] = (
            ("opt_out", KeywordKind.OPT_OUT, "en", False),
            ("opt_out_es", KeywordKind.OPT_OUT, "es", False),
            ("opt_in", KeywordKind.OPT_IN, "en", False),
            ("opt_in_es", KeywordKind.OPT_IN, "es", False),
            ("confirm", KeywordKind.OPT_IN, "en", True),
            ("confirm_es", KeywordKind.OPT_IN, "es", True),
            ("help", KeywordKind.HELP, "en", False),
            ("help_es", KeywordKind.HELP, "es", False),
        )
        exact: dict[str, KeywordMatch] = {}
        owner: dict[str, str] = {}
        for name, kind, language, confirms in lists:
            for word in _check_words(name, getattr(self, name)):
                core = _core(word)
                if core in owner and owner[core] != name:
                    raise ValueError(f"KeywordRules: {word!r} is in both {owner[core]} and {name}")
                if core not in exact:  # the first spelling is the canonical one ("SI", not "SÍ")
                    exact[core] = KeywordMatch(
                        kind, word.strip().upper(), language, exact=True, confirms_pending=confirms
                    )
                    owner[core] = name
        object.__setattr__(self, "_exact", exact)
        opt_outs = [core for core, match in exact.items() if match.kind is KeywordKind.OPT_OUT]
        opt_outs += [core for core in _EXTRA_OPT_OUT if core not in exact]
        # Longest first, so that "stopall" is tried before "stop".
        alternatives = "|".join(re.escape(core) for core in sorted(opt_outs, key=len, reverse=True))
        pattern = rf"(?:{_FILLER}[ |]+)*(?P<word>{alternatives})(?:[ |]+{_FILLER})*"
        object.__setattr__(self, "_courteous_opt_out", re.compile(pattern))

    def _exact_match(self, core: str) -> KeywordMatch | None:
        """The match for a message that is exactly `core` (already normalised), if any."""
        return self._exact.get(core)

    def _courteous(self, core: str) -> KeywordMatch | None:
        """An opt-out word with only courtesy around it ("cancel please", "baja por favor")."""
        found = self._courteous_opt_out.fullmatch(core)
        if found is None:
            return None
        word = found["word"]
        known = self._exact.get(word)
        if known is not None:
            return KeywordMatch(KeywordKind.OPT_OUT, known.keyword, known.language)
        canonical, language = _EXTRA_OPT_OUT[word]
        return KeywordMatch(KeywordKind.OPT_OUT, canonical, language)


def default_rules() -> KeywordRules:
    """The default keyword lists: CTIA/Twilio defaults plus the Spanish forms."""
    return KeywordRules()


DEFAULT_RULES = default_rules()


# --- revocation in plain words ------------------------------------------------------------------


def _any(words: Iterable[str]) -> str:
    return "(?:" + "|".join(words) + ")"


# Up to three words between a verb and its object, in the same clause (clause breaks are '|').
# A preposition or conjunction ends the object ("cancel my order by text", "cancel it and text
# me"), and so does a self-service object ("cancel my order, my email is ...").
_NOT_IN_OBJECT = (
    "by|via|through|over|per|with|on|in|at|for|from|to|and|or|but|if|after|before|about|because"
    "|when|then|order|orders|appointment|booking|reservation|payment|account|card|delivery"
    "|shipment|purchase|invoice|bill|contract|plan|policy"
    "|por|en|con|sin|para|desde|y|o|e|u|pero|si|que|porque|cuando|luego|pedido|pedidos|cita"
    "|reserva|pago|cuenta|tarjeta|envio|compra|factura|contrato|poliza"
)
_GAP = rf"(?: (?!(?:{_NOT_IN_OBJECT})\b)\w+){{0,3}}? "

_MESSAGES_EN = _any(
    (
        r"messages?",
        r"msgs?",
        r"texts?",
        r"texting",
        r"txts?",
        r"sms(?:es)?",
        r"notifications?",
        r"alerts?",
        r"subscriptions?",
        r"newsletters?",
        r"e ?mails?",
        r"reminders?",
        r"updates",
        r"spam",
    )
)
_ADS_EN = _any((r"marketing", r"promotions?", r"promos?", r"offers?", r"ads", r"advertising"))
_MESSAGES_ES = _any(
    (
        r"mensajes?",
        r"mensajitos?",
        r"msjs?",
        r"sms",
        r"textos?",
        r"notificaciones?",
        r"alertas?",
        r"avisos?",
        r"suscripcion(?:es)?",
        r"boletin(?:es)?",
        r"newsletters?",
        r"correos?",
        r"e ?mails?",
        r"whatsapps?",
        r"recordatorios?",
        r"comunicaciones?",
        r"spam",
    )
)
_ADS_ES = _any((r"publicidad(?:es)?", r"promociones?", r"promos?", r"ofertas?", r"anuncios?"))
# Spanish verbs of contacting, in the negative imperative (the subjunctive): "no me escriban",
# never the indicative "no me envian" ("they don't send me ...", a complaint about an order).
_WRITE_ES_IMPERATIVE = _any(
    (
        r"escrib(?:an|as|ais)",
        r"contact(?:en|es|eis)",
        r"molest(?:en|es|eis)",
        r"spame(?:en|es|eis)",
    )
)
_SEND_ES_IMPERATIVE = _any((r"mand(?:en|es|eis)", r"envi(?:en|es|eis)"))
_WRITE_ES = _any(("escrib", "contact", "molest", "spame"))
_SEND_ES = _any(("mand", "envi"))
# "no me envien la factura" is about an invoice: sending verbs need "mas", a messaging word or
# nothing after them.
_ABOUT_MESSAGES_ES = rf"(?= ?(?:\||$)| mas\b|{_GAP}(?:{_MESSAGES_ES}|{_ADS_ES})\b)"

# "stop" the noun, not the verb: what comes before it makes it a place or a thing ("bus stop",
# "next stop", "one-stop", "non-stop"). One lookbehind per word: Python's are of fixed width.
_STOP_NOUNS = (
    "bus|pit|truck|rest|train|tram|metro|subway|shuttle|coach|last|next|first|final|nearest"
    "|closest|one|non|full"
)
# Checked once "stop" has matched, so the pattern still starts with its letters (the combined
# search tries an alternative only at words that begin with its first letter).
_STOP_AS_A_VERB = "".join(f"(?<! {noun} stop)" for noun in _STOP_NOUNS.split("|"))

# (pattern, canonical keyword or None for the matched phrase, language)
_PLAIN_WORDS: tuple[tuple[str, str | None, Language], ...] = (
    (
        rf"stop{_STOP_AS_A_VERB}(?:all)?\b(?! (?:sign|signs|light|lights)\b)"
        rf"(?! by\b(?! {_MESSAGES_EN}\b))",  # "stop by the store", not "stop by text"
        "STOP",
        "en",
    ),
    # Whatever stands before it, "stop" followed by messaging is one: "last stop texting me",
    # "will no one stop these texts?".
    (
        rf"stop(?:all)?(?: (?:texting|txting|messaging|sending|contacting|emailing|spamming)\b"
        rf"|{_GAP}{_MESSAGES_EN}\b)",
        "STOP",
        "en",
    ),
    (r"quit\b", "QUIT", "en"),
    (r"revok(?:e|ed|es|ing)\b", "REVOKE", "en"),
    (r"opt(?:s|ed|ing)? ?out\b", "OPT OUT", "en"),
    (r"unsub(?:scribe|scribed|scribes|scribing)?\b", "UNSUBSCRIBE", "en"),
    (
        rf"(?:end(?! of\b| up\b)|cancel|cancell?ed|cancell?ing|discontinue|terminate)"
        rf"{_GAP}{_MESSAGES_EN}\b",
        None,
        "en",
    ),
    (rf"no more{_GAP}(?:{_MESSAGES_EN}|{_ADS_EN})\b", None, "en"),
    (
        r"(?:dont|do not|never) (?:ever )?(?:text|txt|message|sms|contact|spam) (?:me|us)\b",
        None,
        "en",
    ),
    (
        rf"(?:remove|take) (?:me|us|my number) (?:from|off){_GAP}(?:lists?|{_MESSAGES_EN})\b",
        None,
        "en",
    ),
    (r"leave me alone\b", None, "en"),
    # Spanish
    (
        rf"no (?:me |nos )?(?:sig(?:an|as) {_WRITE_ES}\w*ndo|vuelv(?:an|as) a {_WRITE_ES}\w*"
        rf"|{_WRITE_ES_IMPERATIVE}\w*)(?: mas)?",
        None,
        "es",
    ),
    (
        rf"no (?:me|nos) (?:sig(?:an|as) {_SEND_ES}\w*ndo|vuelv(?:an|as) a {_SEND_ES}\w*"
        rf"|{_SEND_ES_IMPERATIVE}\w*){_ABOUT_MESSAGES_ES}(?: mas)?",
        None,
        "es",
    ),
    (
        rf"no (?:quiero|queremos|deseo|deseamos) (?:que me (?:sig(?:an|as) |vuelv(?:an|as) a )?"
        rf"(?:escrib|contact|molest|spame)\w*|(?:recibir|mas){_GAP}(?:{_MESSAGES_ES}|{_ADS_ES})\b)",
        None,
        "es",
    ),
    (
        rf"(?:dej|par)(?:en|a|ad|e|ar) (?:ya )?de (?:{_WRITE_ES}|{_SEND_ES})\w*",
        None,
        "es",
    ),
    (
        r"(?:dar(?:me|nos)|me doy|nos damos|den(?:me|nos)|dame|deme|dadme"
        r"|(?:me|nos) (?:den|das|des|de|da|dan|puede|pueden|podrian|podria)(?: dar)?) de baja\b",
        None,
        "es",
    ),
    (rf"dar de baja{_GAP}{_MESSAGES_ES}\b", None, "es"),
    (
        rf"(?:quiero|queremos|solicito|pido|solicitar|pedir) (?:la |mi )?baja"
        rf"(?= ?(?:\||$)|{_GAP}{_MESSAGES_ES}\b)",
        None,
        "es",
    ),
    (
        rf"baja (?:de|del) (?:(?:la|las|los|el|este|esta|estos|estas|su|sus|tu|tus|mi|mis) )?"
        rf"(?:lista|{_MESSAGES_ES})\b",
        None,
        "es",
    ),
    (rf"basta(?: ya)?(?: de| con)?{_GAP}(?:{_MESSAGES_ES}|{_ADS_ES})\b", None, "es"),
    (rf"no mas{_GAP}(?:{_MESSAGES_ES}|{_ADS_ES})\b", None, "es"),
    (
        rf"(?:cancel(?:ar|a|en|e|o)|par(?:ar|en|e)|anul(?:ar|a|en|e))"
        rf"{_GAP}{_MESSAGES_ES}\b",
        None,
        "es",
    ),
    (r"des(?:uscrib|inscrib|ubscrib|suscrib)\w*", "DESUSCRIBIR", "es"),
)

# Every pattern starts at a word. One search with a leading space finds the first place where any
# of them matches (sre skips quickly to each space and tries only the alternatives whose first
# letter fits, which named groups would defeat); the patterns one by one then say which it was.
_PLAIN_WORDS_ANY = re.compile(" (?:" + "|".join(pattern for pattern, _, _ in _PLAIN_WORDS) + ")")
_PLAIN_WORDS_EACH = tuple(
    (re.compile(pattern), canonical, language) for pattern, canonical, language in _PLAIN_WORDS
)
# Spanish around an English keyword ("stop por favor"): answer in Spanish.
_SPANISH_HINT = re.compile(
    r"\b(?:por favor|porfa|porfavor|gracias|mensajes|mas|quiero|ustedes|hola|buenas|buenos|ya no)\b"
)


# --- negation: "I don't want to unsubscribe", "no quiero darme de baja" ------------------------

# Words that may stand between a negation and the phrase it negates: wanting, intending,
# needing ("I don't *want to* unsubscribe", "no *quiero que* dejen de enviarme"). Anything
# else between them ("don't care, stop") leaves the phrase a revocation.
_BETWEEN_EN = (
    r"(?:ever|really|actually|even|want to|wanna|wish to|need to|intend to|mean to|plan to"
    r"|plan on|trying to|try to|going to|gonna|have to|like to|care to|ask(?:ing)? (?:you )?to"
    r"|want (?:you|u) to|need (?:you|u) to|be|get|being|getting)"
)
_BETWEEN_ES = (
    r"(?:quiero|queremos|quisiera|quisieramos|deseo|deseamos|pienso|pensamos|voy a|vamos a"
    r"|necesito|necesitamos|hace falta|es necesario|hay que|que|me|nos|os|te|les|le)"
)
# English: an imperative or the customer speaking of themselves ("Please don't stop", "I'm not
# unsubscribing"), never a complaint about the sender ("it won't stop texting me", "why don't you
# stop"): only these may come before the negation in its clause.
_SPEAKER_EN = (
    r"(?:i|we|please|pls|plz|so|and|but|ok|okay|oh|yes|no|really|honestly|seriously|actually"
    r"|just|i really|i just|we really|we just)"
)
_NEGATION_EN = (
    r"(?:dont|do not|never|wont|will not|would not|wouldnt|am not|im not|are not|were not"
    r"|no need to)"
)
_NEGATED = {
    "en": re.compile(rf"(?:^ | [|] | {_SPEAKER_EN} ){_NEGATION_EN}(?: {_BETWEEN_EN})* $"),
    "es": re.compile(rf" (?:no|nunca|jamas|tampoco)(?: {_BETWEEN_ES})* $"),
}
# Phrases a negation before them does not undo: those that are a negation themselves ("don't
# text me", "no me escriban": "no, no me escriban" stays one), and Spanish forms that are also
# the indicative, where "no" makes a complaint, not a wish ("no para de escribirme": it does not
# stop texting me; "no me dan de baja": they will not unsubscribe me; "no cancela los avisos").
_NOT_NEGATABLE = re.compile(
    r"(?:no|dont|do not|never|nunca|para|deja|cancela|anula"
    r"|(?:me|nos) (?:da|dan|das|puede|pueden|podria|podrian)|des\w*ben?)\b"
)


def _negated(spaced: str, start: int, language: Language) -> bool:
    """The phrase at `start` is said not to be wanted: "I don't want to unsubscribe", "please do
    not stop sending me texts", "no quiero darme de baja", "no quiero que dejen de enviarme"."""
    if _NOT_NEGATABLE.match(spaced, start):
        return False
    return _NEGATED[language].search(spaced, 0, start) is not None


def _phrase_at(spaced: str, start: int) -> tuple[re.Match[str], str | None, Language]:
    """Which plain-words pattern the combined search found at `start` (the first that fits)."""
    for pattern, canonical, language in _PLAIN_WORDS_EACH:
        phrase = pattern.match(spaced, start)
        if phrase is not None:
            return phrase, canonical, language
    raise AssertionError("unreachable: the combined pattern matched")


def _plain_words(words: str) -> KeywordMatch | None:
    """The first revocation in plain words that no negation before it undoes."""
    spaced = " " + words
    found = _PLAIN_WORDS_ANY.search(spaced)
    while found is not None:
        start = found.start() + 1
        phrase, canonical, language = _phrase_at(spaced, start)
        if not _negated(spaced, start, language):
            if language == "en" and _SPANISH_HINT.search(words):
                language = "es"
            return KeywordMatch(KeywordKind.OPT_OUT, canonical or phrase.group(), language)
        found = _PLAIN_WORDS_ANY.search(spaced, start)
    return None


# --- the classifier -----------------------------------------------------------------------------


def classify(text: str, rules: KeywordRules = DEFAULT_RULES) -> KeywordMatch:
    """What `text` is: an opt-out, an opt-in (or a YES answering a pending one), help, or none.

    A single keyword wins first; otherwise any revocation in plain words is an opt-out; otherwise
    the text is `NONE`. Never raises, whatever the text.
    """
    words = _words(_fold(text))
    core = words.strip(_EDGES)
    if not core:
        return NO_MATCH
    exact = rules._exact_match(core)
    if exact is not None:
        return exact
    return _plain_words(words) or rules._courteous(core) or NO_MATCH


MAX_PROVIDER_KEYWORD = 40  # kept as evidence: a provider's keyword is one word


def with_provider_reading(match: KeywordMatch, said: str | None, text: str) -> KeywordMatch:
    """Our reading of `text`, unless the provider read another keyword in it (`said`, a
    `KeywordKind` value, e.g. from Twilio's OptOutType): then the provider's.

    The provider has acted on its reading already (Twilio blocks a number after its STOP, and
    may know keywords an account added that we do not), so the ledger must agree with what will
    happen. Agreeing readings keep ours, which knows more (the language, a YES answering a
    pending opt-in); a value we do not know changes nothing."""
    try:
        kind = KeywordKind(said) if said else KeywordKind.NONE
    except ValueError:
        return match
    if kind is KeywordKind.NONE or kind is match.kind:
        return match
    word = _core(text).upper()[:MAX_PROVIDER_KEYWORD] or None
    return KeywordMatch(kind, word, exact=True)


# --- who may act on a keyword -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeywordPermission:
    allowed: bool
    reason: str


def permitted(match: KeywordMatch, *, sender_proven: bool) -> KeywordPermission:
    """May this keyword act, given whether the sender is proven to own the address it came from?

    On a channel where anyone can write as anyone (an e-mail's From), an unproven sender may
    withdraw consent but never give it: a revocation by any reasonable means must be honoured
    at once (FCC 24-18; GDPR art. 7(3)), and a forged one costs the customer one message saying
    how to come back, while a forged START or YES would put words in the customer's mouth and a
    ledger entry that reads as their own consent. HELP changes nothing and is always answered."""
    if match.kind is not KeywordKind.OPT_IN:
        return KeywordPermission(True, f"{match.kind.value} needs no proof of sender")
    if sender_proven:
        return KeywordPermission(True, "the sender is proven to own the address")
    return KeywordPermission(
        False, "an unproven sender may withdraw consent, never give, restore or confirm it"
    )
