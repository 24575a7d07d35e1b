"""Embedded language understanding: the intent, language and entities of one customer message.

No server and no model download: an `EmbeddedUnderstander` trains itself in a fraction of a second
from the examples shipped in ``dialog/data/nlu.yaml`` (or from the pairs it is given), and then
reads a message in about a tenth of a millisecond.

Intent
------
A logistic regression (scikit-learn, multinomial) over two TF-IDF views of the folded text, joined
in a `FeatureUnion`: character n-grams of 2 to 5 inside word boundaries, which forgive typos
("pedidio", "thnks"), inflections and missing accents without a stemmer or a stop-word list, and
word unigrams and bigrams, which carry the phrases ("talk to", "darme de baja"). The text is
folded first: lower case, accents removed ("llámenme" is "llamenme"), apostrophes dropped ("don't"
is "dont"), every run of digits one ``0`` (an order number or a time is a number, whatever its
value), letters repeated three times or more cut to two ("holaaaa" is "holaa"), and ``¿``/``?``
kept as a token because a question reads differently from a statement. Character n-grams seen in
only one example are dropped (noise, and a third of the training time), and the solver is
newton-cg (lbfgs needs ten times longer on this many features for the same optimum). The
confidence is the classifier's probability of the chosen intent; gibberish shares few n-grams
with the examples and gets a flat, low distribution.

scikit-learn trains the model but does not run it. Its ``transform``/``predict_proba`` validate
their input and build sparse matrices on every call, several hundred microseconds for one short
message. `_Scorer` computes the same numbers (term counts, sublinear tf, idf, l2 norm per view, a
dot product with the coefficients and a softmax) from the fitted vocabularies and weights in tens
of microseconds; a test checks it against ``EmbeddedUnderstander.pipeline.predict_proba``.

Language
--------
Spanish or English, by a small scorer (`detect_language`): function words and frequent customer
words of each language, Spanish-only characters (ñ, ¿, ¡, accented vowels) and English
contractions; a word on neither list leans by its letter trigrams, counted over the Spanish and
English examples of the shipped training file ("operadora" and "penoso" look Spanish, "delivered"
and "whatever" English). Short texts work because the words that make them ("hola", "gracias",
"mi", "hi", "thanks", "my") are on the lists. When the evidence is even (a bare order number,
"ok"), the customer's stored language (the hint) decides, and without one `DEFAULT_LANGUAGE`.

Entities
--------
*Order numbers*: 3 to 12 digits, optionally after a 1 to 3 letter prefix, following an order word
("pedido", "orden", "order", "compra", "package", "tracking"...) and filler ("nº", "number", "is",
"#", ":"), or following ``#``, or standing alone as letters-dash-digits ("A-10234"). Normalised to
upper-case letters, a dash and the digits ("order a10234" is ``A-10234``) or the digits alone
("#10234" is ``10234``). An amount ("pedido de 150 euros") is not an order number.

*Dates and times* are found with regular expressions over the folded text and resolved in the
customer's time zone relative to `now`. Most messages carry no date, so a cheap regex over the
folded text (a digit, a day or time word) gates all of this; ``dateparser.search.search_dates`` is
both slow and noisy on chat text, so it is not used. Each phrase goes to what reads it best:

* dateparser parses calendar dates ("15 de marzo", "March 15th", "15/03", with the day/month order
  of the message's language), preferring future dates. Its answer depends only on the phrase, the
  language and the customer's local date, so it is cached, and the time zone is applied by us.
* clock times ("a las 10", "after 5pm", "9:30", "a las 4 de la tarde", "a las diez y media"),
  day words ("hoy", "mañana", "pasado mañana", "el lunes", "next Friday", "la semana que viene",
  "ayer", "el lunes pasado", "last week"), parts of the day ("por la tarde", "tomorrow morning",
  "tonight") and offsets ("en 2 horas", "in 30 minutes", "dentro de 3 días", "hace 3 días") are
  closed word classes, read by tables. dateparser 1.5 gets these wrong in Spanish: "a las 10" is
  the 10th of the month, "mañana a las 10" keeps the current clock time, and "el lunes", "pasado
  mañana" and "el lunes por la tarde" do not parse at all.

A day, a part of the day and a clock time next to each other make one entity ("el lunes por la
tarde a las 4"). The value is the earliest moment the customer named, as an ISO 8601 datetime
with the offset of their time zone: a day alone is its midnight, a part of the day its start
(morning 09:00, noon 12:00, afternoon 15:00, evening 18:00, night 20:00), "after 5pm" is 17:00,
and "entre las 3 y las 5" gives two entities on the same day, 15:00 and 17:00. A clock time
without a day is its next occurrence; an hour from 1 to 7 with no am/pm or part of the day is in
the afternoon ("a las 5" is 17:00: nobody asks a shop to call at 5 in the morning). A weekday is
the next one, a week from today if it is today (as dateparser's ``PREFER_DATES_FROM='future'``);
"el lunes pasado" and "last Monday" the previous one.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dateparser
import numpy as np
import yaml  # type: ignore[import-untyped]
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
from typing_extensions import override

from dialog.ngrams import WordColumns, tfidf_rows
from dialog.readahead import ReadAhead
from wording import fold

__all__ = [
    "DEFAULT_LANGUAGE",
    "INTENTS",
    "LANGUAGES",
    "EmbeddedUnderstander",
    "Entity",
    "Reading",
    "TextRead",
    "TextReader",
    "Understander",
    "Understanding",
    "detect_language",
    "extract_entities",
    "load_training",
    "understand_all",
]

INTENTS: Final = (
    "greet",
    "faq",
    "order_status",
    "request_callback",
    "change_preferences",
    "opt_out",
    "human",
    "complaint",
    "thanks",
    "goodbye",
)
LANGUAGES: Final = ("es", "en")
DEFAULT_LANGUAGE: Final = "en"  # as the actions' fallback; only for texts with no evidence
MAX_CHARS: Final = 2000  # what is read of a message: an e-mail's quoted history adds nothing


@dataclass(frozen=True, slots=True)
class Entity:
    kind: str  # "datetime" | "order_number"
    value: str  # ISO 8601 aware datetime, or the normalised order number ("A-10234", "10234")
    text: str  # the words it came from, as the customer wrote them


@dataclass(frozen=True, slots=True)
class Understanding:
    text: str
    intent: str
    confidence: float  # the classifier's probability of `intent`, in [0, 1]
    language: str  # "es" | "en"
    entities: tuple[Entity, ...]
    ranking: tuple[tuple[str, float], ...]  # the top three intents with their probabilities


class Reading(NamedTuple):
    """One message to read, with what places its dates and breaks a tie between languages
    (the arguments of `Understander.understand`)."""

    text: str
    timezone: str = "UTC"
    now: datetime | None = None
    language_hint: str | None = None


@runtime_checkable
class ReadsMany(Protocol):
    """An `Understander` that reads a batch of messages at once (cheaper than one by one)."""

    def understand_all(self, readings: Sequence[Reading]) -> list[Understanding]: ...


def understand_all(understander: Understander, readings: Sequence[Reading]) -> list[Understanding]:
    """Each message read as `understander.understand` reads it; in one go when it can."""
    if isinstance(understander, ReadsMany):
        return understander.understand_all(readings)
    return [
        understander.understand(
            r.text, timezone=r.timezone, now=r.now, language_hint=r.language_hint
        )
        for r in readings
    ]


class Understander(Protocol):
    def understand(
        self,
        text: str,
        *,
        timezone: str = "UTC",
        now: datetime | None = None,
        language_hint: str | None = None,
    ) -> Understanding: ...


# --------------------------------------------------------------------------------------------
# Folding
# --------------------------------------------------------------------------------------------

_APOSTROPHES = re.compile("['’‘`´]")
_QUESTION = re.compile("[?¿]+")
_DIGITS = re.compile(r"\d+")
_NOT_WORD = re.compile(r"[^\w?]+|_+")
_REPEATS = re.compile(r"(\w)\1{2,}")


def _fold(text: str) -> str:
    """Lower case without accents: what the customer meant, however it was typed."""
    return fold(text)


def _normalise(text: str) -> str:
    """The text the classifier and the language scorer read (see the module docstring)."""
    folded = _APOSTROPHES.sub("", _fold(text[:MAX_CHARS]))
    folded = _QUESTION.sub(" ? ", folded)
    folded = _DIGITS.sub("0", folded)
    folded = _REPEATS.sub(r"\1\1", folded)
    return " ".join(_NOT_WORD.sub(" ", folded).split())


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    return _fold(char).replace("’", "'")


def _fold_mapped(text: str) -> tuple[str, list[int]]:
    """The folded text and, for each of its characters, the index of the original character.

    Folding can change lengths ("ǅ" or a decomposed accent), so entity spans found in the folded
    text are mapped back to the words the customer wrote.
    """
    out: list[str] = []
    where: list[int] = []
    for i, char in enumerate(text):
        folded = _fold_char(char) if not char.isascii() or char.isupper() else char
        out.append(folded)
        where.extend([i] * len(folded))
    where.append(len(text))
    return "".join(out), where


# --------------------------------------------------------------------------------------------
# Language
# --------------------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ES_WORDS = _words(
    """
    de la que el en y los las del se por con una un unos unas su sus para es al lo como mas pero
    le les ya este esta estos estas ese esa eso esto porque entre cuando muy sin sobre tambien
    hasta hay donde quien desde todo toda todos nos ni otro otra otros mi mis tu tus te ti yo
    vosotros vosotras nosotros os mio mia nuestro nuestra vuestro vuestra vuestros vuestras soy
    eres somos son estoy estais estan esta estamos he has ha hemos habeis han era fue sido tengo
    tiene tienen teneis tenemos quiero quiere quieren queria quisiera necesito puedo puede pueden
    podeis podria podrian hola ola buenas buenos dia dias tarde tardes noche noches adios chao chau
    hasta luego gracias grasias muchas muchos mucho mil pedido pedidos envio envios compra paquete
    llamar llamada llamame llamadme llamen llamenme manana hoy ayer ahora aqui favor porfa vale si
    claro tienda horario precio devolucion devoluciones queja reclamacion agente persona humano
    ayuda menos bien mal nada algo alguien nadie cuanto cuanta cuantos cual cuales que q k xq pq
    hablar quiero recibir mensajes correo ofertas publicidad baja dejad dejen dejar mandar mandeis
    mandarme enviar enviarme escribir escribirme cambiar prefiero llega llego llegado ha sigue
    todavia aun tambien senor senora usted ustedes vosotros gracias genial perfecto estupendo
    semana lunes martes miercoles jueves viernes sabado domingo talla tallas garantia pago pagar
    tarjeta abris abren cierran donde esta estado mio saludos vez veces otra solo el ella
    """
)
_EN_WORDS = _words(
    """
    the an and of to in on at for with from by about is are was were be been being am i im you
    youre he she it its we they them their theirs his her this that these those what whats where
    wheres when why how who which can cant could would will wont should do does did dont doesnt
    didnt not yes please pls plz thanks thank thx ty hi hello hey bye goodbye order orders shipping
    delivery store shop call back want need talk speak person agent human help get have has had
    just so some any more stop send sending message messages text texts phone number size return
    returns refund there here up out if all now today tomorrow week weekend morning afternoon
    evening night time day days great perfect nice good bad awful terrible my your our us
    myself anyone someone somebody nobody nothing everything else still yet arrived arrive when
    ive id ill youve thats theres isnt arent wasnt havent hasnt wouldnt couldnt shouldnt lets
    package parcel tracking track sent ship shipped open close hours much many long cost pay
    card payment receive get got like love hate very really too also only instead rather than
    then again soon later see take care thank you u ur r cheers mate guys folks enable disable
    notifications notification settings update change offers deals
    """
)
_ES_CHARS = re.compile("[ñ¿¡áéíóúü]")
_EN_CONTRACTION = re.compile(r"\w['’](?:s|t|m|re|ll|ve|d)\b")
_DOUBLES = re.compile(r"(\w)\1+")


def _trigrams(word: str) -> list[str]:
    padded = f" {word} "
    return [padded[i : i + 3] for i in range(len(padded) - 2)]


@lru_cache(maxsize=1)
def _trigram_odds() -> Mapping[str, float]:
    """log P(trigram | es) - log P(trigram | en) over the words of the shipped examples.

    Add-one smoothed. Reads the spelling of a word the lists do not hold: "transferencia",
    "operadora" look Spanish, "shipping", "whatever" English.
    """
    counts: dict[str, Counter[str]] = {language: Counter() for language in LANGUAGES}
    for text, _, language in _examples(_shipped_training()):
        if language in counts:
            for word in _normalise(text).split():
                counts[language].update(_trigrams(word))
    seen = set(counts["es"]) | set(counts["en"])
    es_total = sum(counts["es"].values()) + len(seen)
    en_total = sum(counts["en"].values()) + len(seen)
    return {
        gram: math.log((counts["es"][gram] + 1) / es_total)
        - math.log((counts["en"][gram] + 1) / en_total)
        for gram in seen
    }


def _language_hint(hint: str | None) -> str | None:
    if hint:
        code = hint[:2].lower()
        if code in LANGUAGES:
            return code
    return None


def _language_scores(text: str, normalised: str) -> tuple[float, float]:
    lowered = text[:MAX_CHARS].lower()
    spanish = float(min(3, len(_ES_CHARS.findall(lowered))))
    english = float(min(3, len(_EN_CONTRACTION.findall(lowered))))
    odds: Mapping[str, float] | None = None
    for word in normalised.split():
        in_es, in_en = word in _ES_WORDS, word in _EN_WORDS
        if not (in_es or in_en) and _DOUBLES.search(word):
            single = _DOUBLES.sub(r"\1", word)  # "graciass", "buenass", "thankss"
            in_es, in_en = single in _ES_WORDS, single in _EN_WORDS
        if in_es or in_en:
            spanish += in_es
            english += in_en
        elif len(word) > 2 and word.isalpha():
            odds = odds or _trigram_odds()
            grams = _trigrams(word)
            lean = sum(odds.get(gram, 0.0) for gram in grams) / len(grams)
            if lean > 0.25:
                spanish += 0.75 * min(1.0, lean)
            elif lean < -0.25:
                english += 0.75 * min(1.0, -lean)
    return spanish, english


def _decide_language(spanish: float, english: float, hint: str | None) -> str:
    if abs(spanish - english) < 0.5:
        return _language_hint(hint) or DEFAULT_LANGUAGE
    return "es" if spanish > english else "en"


def detect_language(text: str, hint: str | None = None) -> str:
    """``"es"`` or ``"en"``; `hint` (the customer's stored language) breaks ties."""
    return _decide_language(*_language_scores(text, _normalise(text)), hint)


# --------------------------------------------------------------------------------------------
# Order numbers
# --------------------------------------------------------------------------------------------

_ORDER = re.compile(
    r"""
    (?:
        \b(?:pedidos?|orden(?:es)?|order|compra|envio|paquete|package|parcel|shipment|tracking
           |seguimiento|referencia|ref|factura|invoice)\b
        (?:[\s:#.]*(?:n[o°]?\b|nro\b|nr\b|num\b|numero\b|number\b|es\b|is\b|el\b|:|\#))*
        [\s:#.]*
      | \#\s*
    )
    (?P<id>[a-z]{1,3}-?\d{3,12}|\d{3,12})
    (?![\w/])
    (?![.,:]\d)
    (?!\s*(?:€|\$|eur\b|euros?\b|usd\b|dolares\b|dollars?\b|%))
    | \b(?P<bare>[a-z]{1,3}-\d{4,12})\b(?![/])
    """,
    re.VERBOSE,
)
_ORDER_PARTS = re.compile(r"([a-z]*)-?(\d+)")


def _order_number(raw: str) -> str:
    parts = _ORDER_PARTS.fullmatch(raw)
    if parts is None:  # pragma: no cover - the pattern only lets these shapes through
        return raw.upper()
    letters, digits = parts.groups()
    return f"{letters.upper()}-{digits}" if letters else digits


# --------------------------------------------------------------------------------------------
# Dates and times
# --------------------------------------------------------------------------------------------

_NUMBER_WORDS: Mapping[str, int] = {
    "un": 1, "una": 1, "uno": 1, "a": 1, "an": 1, "one": 1,
    "dos": 2, "two": 2, "tres": 3, "three": 3, "cuatro": 4, "four": 4, "cinco": 5, "five": 5,
    "seis": 6, "six": 6, "siete": 7, "seven": 7, "ocho": 8, "eight": 8, "nueve": 9, "nine": 9,
    "diez": 10, "ten": 10, "once": 11, "eleven": 11, "doce": 12, "twelve": 12,
    "quince": 15, "fifteen": 15, "veinte": 20, "twenty": 20, "treinta": 30, "thirty": 30,
    "cuarenta": 40, "forty": 40,
}  # fmt: skip
_WEEKDAYS: Mapping[str, int] = {
    "lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5,
    "domingo": 6, "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4,
    "saturday": 5, "sunday": 6,
}  # fmt: skip
# name: (start hour, end hour) of the part of the day, as a shop reads it
_PARTS: Mapping[str, tuple[int, int]] = {
    "morning": (9, 12),
    "noon": (12, 13),
    "afternoon": (15, 18),
    "evening": (18, 21),
    "night": (20, 24),
    "midnight": (0, 1),
    "small_hours": (1, 6),
}
_PART_WORDS: Mapping[str, str] = {
    "manana": "morning", "mananas": "morning", "morning": "morning", "mornings": "morning",
    "mediodia": "noon", "medio dia": "noon", "noon": "noon", "midday": "noon",
    "tarde": "afternoon", "tardes": "afternoon", "afternoon": "afternoon",
    "afternoons": "afternoon", "despues de comer": "afternoon", "after lunch": "afternoon",
    "evening": "evening", "evenings": "evening", "noche": "night", "noches": "night",
    "night": "night", "nights": "night", "tonight": "night", "medianoche": "midnight",
    "midnight": "midnight", "madrugada": "small_hours",
}  # fmt: skip
_PM_PARTS = frozenset({"afternoon", "evening", "night"})

_HOUR_WORDS = (
    r"una|dos|tres|cuatro|cinco|seis|siete|ocho|nueve|diez|once|doce"
    r"|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
)
_COUNT = r"\d{1,3}|un|una|uno|an?|one|" + "|".join(
    w for w in _NUMBER_WORDS if len(w) > 2 and w not in {"una", "uno", "one"}
)
_MONTHS_ES = (
    r"enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre"
    r"|noviembre|diciembre"
)
_MONTHS_EN = (
    r"january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec"
)
_WEEKDAY_NAMES = "|".join(_WEEKDAYS)
# what a number followed by one of these counts: never a clock time ("after 2 days")
_UNITS = (
    r"days?|weeks?|months?|years?|minutes?|mins?|hours?|hrs?|items?|units?|pieces?|pairs?"
    r"|euros?|dollars?|pounds?|times|people|dias|semanas|meses|anos|minutos|horas|veces"
    r"|unidades|articulos|productos|piezas|pares|personas|x"
)
_DATE_PATTERNS = {
    # offsets: "en 2 horas", "dentro de media hora", "in 30 minutes", "in an hour"
    "offset": rf"""
        (?:(?:en|dentro\s+de)\s+(?:unos?\s+|unas\s+)?|in\s+(?:about\s+|around\s+)?)
        (?:(?P<off_half>media\s+hora|half\s+an\s+hour)
          |(?P<off_n>{_COUNT})\s+(?P<off_unit>minutos?|mins?|minutes?|horas?|hours?|hrs?
                                 |dias|dia|days?|semanas?|weeks?)\b)""",
    # offsets into the past: "hace 3 días", "two days ago"
    "ago": rf"""
        (?:hace\s+(?P<ago_n>{_COUNT})\s+(?P<ago_unit>minutos?|horas?|dias|dia|semanas?)
          |(?P<ago_n2>{_COUNT})\s+(?P<ago_unit2>minutes?|mins?|hours?|hrs?|days?|weeks?)\s+ago)\b""",
    # calendar dates for dateparser
    "calendar": rf"""
        (?:(?:el\s+)?(?:dia\s+)?\d{{1,2}}\s+de\s+(?:{_MONTHS_ES})(?:\s+(?:de|del)\s+\d{{4}})?
          |(?:on\s+)?(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS_EN})\b\.?
              (?:,?\s+\d{{4}})?
          |(?:on\s+)?(?:{_MONTHS_EN})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s+\d{{4}})?
          |(?:el\s+)?\b\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?\b)""",
    # parts of the day, with "today" for "esta tarde", "this evening", "tonight"
    "part": r"""
        (?:(?P<part_today>esta|this)\s+(?P<part_a>manana|tarde|noche|morning|afternoon|evening)
          |(?P<part_tonight>tonight)
          |(?:por|en|a|de|durante|hacia)\s+la\s+(?P<part_b>manana|tarde|noche|madrugada)
          |(?:por|en|durante)\s+las\s+(?P<part_c>mananas|tardes|noches)
          |de\s+(?P<part_d>tarde|noche|madrugada)
          |in\s+the\s+(?P<part_e>morning|afternoon|evening)s?
          |(?:at|during\s+the|on)\s+(?P<part_f>nights?|mornings|afternoons|evenings)
          |(?:a|al|sobre\s+el|hacia\s+el|at|around)?\s*(?P<part_g>mediodia|medio\s+dia|noon
                |midday|medianoche|midnight)
          |(?P<part_h>despues\s+de\s+comer|after\s+lunch))\b""",
    # day words
    "day": rf"""
        (?:(?:el\s+)?(?P<day_past_wd>{_WEEKDAY_NAMES})\s+pasado|last\s+(?P<day_last_wd>{_WEEKDAY_NAMES})
          |(?P<day_last_week>(?:la\s+)?semana\s+pasada|last\s+week)
          |(?P<day_rel>pasado\s+manana|day\s+after\s+tomorrow|hoy|today|tomorrow|tomorow
                      |tommorow|tommorrow|tmrw|tmr|(?<!la\s)(?<!esta\s)manana|anteayer
                      |antes\s+de\s+ayer|day\s+before\s+yesterday|ayer|yesterday)
          |(?:(?:el|este|el\s+proximo|proximo|el\s+siguiente|this|next|on|this\s+coming
                |coming|on\s+next)\s+)?(?P<day_wd>{_WEEKDAY_NAMES})(?:\s+(?:que\s+viene|proximo))?
          |(?P<day_week>(?:la\s+)?(?:semana\s+que\s+viene|proxima\s+semana|semana\s+proxima
                |siguiente\s+semana)|next\s+week)
          |(?P<day_weekend>(?:este|el)\s+(?:fin\s+de\s+semana|finde)|(?:this|the|next)\s+weekend))
        (?:\s+(?P<day_part>morning|afternoon|evening|night))?\b""",
    # clock times: "a las 10", "after 5pm", "9:30", "a las 4 de la tarde", "half past six"
    "time": rf"""
        (?P<t_pre>(?:(?:a\s+eso\s+de|despues\s+de|a\s+partir\s+de|antes\s+de|desde|hasta|hacia
                  |sobre|entre|para|de|y)\s+)?(?:a\s+)?las?\s+
          |(?:at|after|before|around|by|from|until|till|between|and|to)\s+(?:around\s+)?)?
        (?P<t_frac_pre>(?:half|quarter)\s+(?:past|to)\s+)?
        (?P<t_h>\d{{1,2}}|{_HOUR_WORDS})
        (?:(?P<t_sep>:|\.|h)(?P<t_m>\d{{2}}))?
        (?:\s*(?P<t_ampm>a\.?\s?m\b\.?|p\.?\s?m\b\.?|hrs\b|hs\b|h\b))?
        (?:\s+(?P<t_frac>y\s+media|y\s+cuarto|menos\s+cuarto|en\s+punto|o\s?'?\s?clock))?
        (?:\s+(?P<t_part>de\s+la\s+(?:manana|tarde|noche|madrugada)|del\s+mediodia
             |in\s+the\s+(?:morning|afternoon|evening)|at\s+night|tonight))?
        (?![\w:/'])
        (?!\s+(?:(?:and|to|y|a|-)\s+\d{{1,3}}\s+)?(?:{_UNITS})\b)""",
}
_DATES = re.compile(
    "|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _DATE_PATTERNS.items()),
    re.VERBOSE,
)
# The gate: without one of these there is no date or time to look for.
_DATE_CUE = re.compile(
    rf"""\d|\b(?:{_WEEKDAY_NAMES}|hoy|manana|today|tonight|tomorrow|tomorow|tommorow|tommorrow
         |tmrw|tmr|semana|finde|week|weekend|mediodia|medio\s+dia|medianoche|madrugada|noon
         |ayer|anteayer|yesterday|ago|hace
         |midday|midnight|comer|lunch|tarde|tardes|noche|noches|morning|mornings|afternoon
         |afternoons|evening|evenings|night|nights|hora|horas|hour|hours|minutos|minutes
         |{_MONTHS_ES}|(?:las?|at)\s+(?:{_HOUR_WORDS}))\b""",
    re.VERBOSE,
)
_GAP = re.compile(r"[\s,.\-]*(?:(?:on|el|at|a|en|por|de)\b[\s,]*)?")
_LINK = re.compile(r"[\s,]*(?:y|o|and|or|to|a|-|hasta|until|till)?[\s,]*")
_WEAK_PREFIX = re.compile(r"(?:and|to)\s+(?:around\s+)?")
_SPANISH_PREFIX = re.compile(r"\blas?\s")
_LA_PREFIX = re.compile(r"(?:a\s+)?la\s+")
_CALENDAR_LEAD = re.compile(r"^(?:el\s+(?:dia\s+)?|dia\s+|on\s+(?:the\s+)?|the\s+)")


@dataclass(frozen=True, slots=True)
class _Found:
    """One date or time piece as the text alone gives it: what `_moments` reads of a match of
    `_DATES`, kept as plain values so a reading done in another process can carry it."""

    kind: str  # the pattern's group that matched: "offset", "ago", "calendar", "part", "day"...
    start: int
    end: int
    text: str
    groups: Mapping[str, str]  # the named groups that matched

    @classmethod
    def of(cls, match: re.Match[str]) -> _Found:
        groups = {name: value for name, value in match.groupdict().items() if value is not None}
        return cls(match.lastgroup or "", match.start(), match.end(), match.group(), groups)

    def __getitem__(self, name: str) -> str | None:
        return self.groups.get(name)

    def part(self, name: str) -> str:
        """A group the pattern always fills when this kind of piece matches."""
        return self.groups[name]


class TextScan(NamedTuple):
    """The entities a text holds as far as the text alone tells: its order numbers, and its date
    pieces still to be placed in the customer's time zone and day (`_entities`)."""

    folded: str
    where: list[int]  # for each folded character, the original's index (`_fold_mapped`)
    orders: tuple[tuple[int, Entity], ...]  # (where it starts in `folded`, the order number)
    dates: tuple[_Found, ...]


@dataclass(slots=True)
class _Moment:
    """One date phrase being assembled: what the customer said, slot by slot."""

    start: int
    end: int
    day: date | None = None
    exact: datetime | None = None
    part: str | None = None
    today: bool = False
    clock: tuple[int, int] | None = None  # hour as written, minutes
    meridiem: str | None = None  # "am" | "pm" when written

    def takes(self, slot: str) -> bool:
        """Whether a neighbouring piece of kind `slot` may still join this phrase."""
        if self.exact is not None:
            return False
        if slot == "day":
            return self.day is None and not self.today
        if slot == "part":
            return self.part is None
        return self.clock is None

    def merge(self, piece: _Moment) -> None:
        self.end = piece.end
        self.day = piece.day or self.day
        self.today = self.today or piece.today
        self.part = self.part or piece.part
        if piece.clock is not None:
            self.clock, self.meridiem = piece.clock, piece.meridiem


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return UTC  # a bad stored zone must not break the inbound path


@lru_cache(maxsize=2048)
def _calendar_date(phrase: str, language: str, today: date) -> date | None:
    """dateparser's reading of a calendar date; cached, as it depends only on its arguments."""
    phrase = _CALENDAR_LEAD.sub("", phrase)
    base = datetime(today.year, today.month, today.day) - timedelta(hours=12)
    other = "en" if language == "es" else "es"
    try:
        parsed = dateparser.parse(
            phrase,
            languages=[language, other],
            settings={
                "PREFER_DATES_FROM": "future",
                "RELATIVE_BASE": base,  # yesterday noon, so that today's date is not "the past"
                "DATE_ORDER": "DMY" if language == "es" else "MDY",
                "REQUIRE_PARTS": ["day", "month"],
                "RETURN_AS_TIMEZONE_AWARE": False,
            },
        )
    except (ValueError, OverflowError):  # "31 de febrero", year 0
        return None
    return parsed.date() if isinstance(parsed, datetime) else None


def _count(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBER_WORDS.get(word, 1)


def _offset(match: _Found) -> timedelta:
    if match["off_half"]:
        return timedelta(minutes=30)
    return _duration(match.part("off_n"), match.part("off_unit"))


def _ago(match: _Found) -> timedelta:
    if match["ago_n"]:
        return -_duration(match.part("ago_n"), match.part("ago_unit"))
    return -_duration(match.part("ago_n2"), match.part("ago_unit2"))


def _duration(count: str, unit: str) -> timedelta:
    n = _count(count)
    if unit.startswith("m"):
        return timedelta(minutes=n)
    if unit.startswith("h"):
        return timedelta(hours=n)
    if unit.startswith("d"):
        return timedelta(days=n)
    return timedelta(weeks=n)


_RELATIVE_DAYS: Mapping[str, int] = {
    "hoy": 0, "today": 0, "pasado manana": 2, "day after tomorrow": 2, "ayer": -1,
    "yesterday": -1, "anteayer": -2, "antes de ayer": -2, "day before yesterday": -2,
}  # fmt: skip


def _day(match: _Found, today: date) -> date:
    if relative := match["day_rel"]:
        return today + timedelta(days=_RELATIVE_DAYS.get(" ".join(relative.split()), 1))
    if weekday := match["day_past_wd"] or match["day_last_wd"]:
        back = (today.weekday() - _WEEKDAYS[weekday]) % 7
        return today - timedelta(days=back or 7)
    if match["day_last_week"]:
        return today - timedelta(days=today.weekday() + 7)  # last week's Monday
    if weekday := match["day_wd"]:
        ahead = (_WEEKDAYS[weekday] - today.weekday()) % 7
        return today + timedelta(days=ahead or 7)
    if match["day_week"]:
        return today + timedelta(days=7 - today.weekday())  # next Monday
    ahead = (5 - today.weekday()) % 7  # the weekend: the coming Saturday, or today at the weekend
    return today if today.weekday() == 6 else today + timedelta(days=ahead)


def _part(match: _Found) -> tuple[str, bool]:
    if match["part_tonight"]:
        return "night", True
    for group in ("part_a", "part_b", "part_c", "part_d", "part_e", "part_f", "part_g", "part_h"):
        if word := match[group]:
            return _PART_WORDS[" ".join(word.split())], group == "part_a"
    raise AssertionError("unreachable")  # pragma: no cover


def _clock(match: _Found) -> tuple[tuple[int, int], str | None, str | None] | None:
    """(hour, minute), am/pm, part of the day; None if this is not a time after all."""
    pre, word = match["t_pre"], match.part("t_h")
    ampm, sep, frac_pre = match["t_ampm"], match["t_sep"], match["t_frac_pre"]
    part_words, frac = match["t_part"], match["t_frac"]
    hour = int(word) if word.isdigit() else _NUMBER_WORDS[word]
    minute = int(match["t_m"]) if match["t_m"] else 0
    marker = ampm.replace(".", "").replace(" ", "") if ampm else None
    meridiem = marker if marker in ("am", "pm") else None
    evidence = bool(
        pre
        or meridiem
        or part_words
        or frac
        or frac_pre
        or sep == ":"
        or (marker in ("h", "hs", "hrs") and hour >= 10)
    )
    if not evidence:
        return None
    if not word.isdigit():
        # "a las diez" is a time; "at one point" is not: English hours in words need a marker
        spanish = pre is not None and _SPANISH_PREFIX.search(pre) is not None
        if not (spanish or frac_pre or meridiem or part_words or frac):
            return None
    if pre is not None and _LA_PREFIX.fullmatch(pre) and hour != 1:
        return None  # "la una" is one o'clock; "la 42" is a shoe size
    if sep == "." and not pre:
        return None  # "10.30" alone is a price more often than a time
    if hour > 24 or minute > 59:
        return None
    if frac_pre:
        words = frac_pre.split()
        offset = 30 if words[0] == "half" else 15
        if words[1] == "to":
            hour, minute = hour - 1, 60 - offset
        else:
            minute = offset
    if frac:
        words = frac.split()
        if words[0] == "y":
            minute = 30 if words[1] == "media" else 15
        elif words[0] == "menos":
            hour, minute = hour - 1, 45
    part = None
    if part_words:
        last = part_words.split()[-1]
        part = _PART_WORDS.get(last, "noon" if last == "mediodia" else None)
    return (hour % 24, minute), meridiem, part


def _resolve(moment: _Moment, now: datetime, zone: tzinfo) -> datetime | None:
    if moment.exact is not None:
        return moment.exact
    today = now.date()
    if moment.clock is not None:
        hour, minute = moment.clock
        if moment.meridiem == "pm" and hour < 12:
            hour += 12
        elif moment.meridiem == "am" and hour == 12:
            hour = 0
        elif moment.meridiem is None:
            if moment.part in _PM_PARTS and hour < 12 and not (moment.part == "night" and hour < 5):
                hour += 12
            elif moment.part == "night" and hour == 12:
                hour = 0
            elif moment.part is None and 1 <= hour <= 7:
                hour += 12
        day = moment.day or today
        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        if moment.day is None and not moment.today and candidate <= now:
            candidate += timedelta(days=1)
        return candidate
    if moment.part is not None:
        start, end = _PARTS[moment.part]
        day = moment.day or today
        if moment.day is None and not moment.today and now.hour >= end:
            day = today + timedelta(days=1)
        return datetime(day.year, day.month, day.day, start, tzinfo=zone)
    if moment.day is not None:
        return datetime(moment.day.year, moment.day.month, moment.day.day, tzinfo=zone)
    return None


def _moments(folded: str, pieces: Sequence[_Found], language: str, now: datetime) -> list[_Moment]:
    """The date phrases of `folded`: neighbouring day, part-of-day and clock pieces joined."""
    today = now.date()
    moments: list[_Moment] = []
    current: _Moment | None = None
    for match in pieces:
        kind, start, end = match.kind, match.start, match.end
        piece = _Moment(start, end)
        slot = kind
        if kind in ("offset", "ago"):
            delta = _offset(match) if kind == "offset" else _ago(match)
            if abs(delta) < timedelta(days=1):
                exact = (now.astimezone(UTC) + delta).astimezone(now.tzinfo)
                piece.exact = exact.replace(second=0, microsecond=0)
            else:
                piece.day, slot = today + delta, "day"
        elif kind == "calendar":
            piece.day = _calendar_date(" ".join(match.text.split()), language, today)
            if piece.day is None:
                continue
            slot = "day"
        elif kind == "part":
            piece.part, piece.today = _part(match)
        elif kind == "day":
            piece.day = _day(match, today)
            if match["day_part"]:
                piece.part = _PART_WORDS[match["day_part"]]
        else:
            read = _clock(match)
            if read is None:
                continue
            pre = match["t_pre"]
            after_time = current is not None and current.clock is not None
            if pre and _WEAK_PREFIX.fullmatch(pre) and not (after_time or read[1]):
                continue  # "and 5" or "to 6" only after another time ("between 3 and 5")
            piece.clock, piece.meridiem, piece.part = read
        joins = current is not None and piece.exact is None and current.takes(slot)
        if joins and current is not None and _GAP.fullmatch(folded, current.end, start):
            current.merge(piece)
            continue
        if current is not None:
            moments.append(current)
            if kind == "time" and _LINK.fullmatch(folded, current.end, start):
                # "mañana entre las 3 y las 5": the second time is on the same day
                piece.day, piece.today = current.day, current.today
                piece.part = piece.part or current.part
        current = piece
    if current is not None:
        moments.append(current)
    return moments


def _scan(text: str, normalised: str) -> TextScan | None:
    """What the text alone tells of its entities; None when it cannot hold any (most texts)."""
    has_number = "0" in normalised
    if not has_number and _DATE_CUE.search(normalised) is None:
        return None
    text = text[:MAX_CHARS]
    folded, where = _fold_mapped(text)
    orders: list[tuple[int, Entity]] = []
    if has_number or "#" in text:
        for match in _ORDER.finditer(folded):
            raw = match["id"] or match["bare"]
            first = match.start() if match["id"] else match.start("bare")
            original = text[where[first] : where[match.end()]].strip()
            orders.append((first, Entity("order_number", _order_number(raw), original)))
    dates = tuple(_Found.of(match) for match in _DATES.finditer(folded))
    return TextScan(folded, where, tuple(orders), dates)


def _entities(
    text: str, scan: TextScan | None, language: str, zone: tzinfo, now: datetime
) -> list[Entity]:
    """The entities of a scanned text, its dates placed in `zone` relative to `now`."""
    if scan is None:
        return []
    found = list(scan.orders)
    local = now.astimezone(zone)
    where = scan.where
    for moment in _moments(scan.folded, scan.dates, language, local):
        value = _resolve(moment, local, zone)
        if value is None:
            continue
        original = text[where[moment.start] : where[moment.end]].strip()
        found.append((moment.start, Entity("datetime", value.isoformat(), original)))
    found.sort(key=lambda item: item[0])
    return [entity for _, entity in found]


def extract_entities(text: str, language: str, timezone: str, now: datetime) -> tuple[Entity, ...]:
    """Order numbers and dates/times in `text`, in the customer's `timezone` relative to `now`.

    A naive `now` is taken as UTC; an unknown time zone as UTC.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return tuple(_entities(text, _scan(text, _normalise(text)), language, _zone(timezone), now))


# --------------------------------------------------------------------------------------------
# Intent
# --------------------------------------------------------------------------------------------

_Analyser = Callable[[str], list[str]]


@dataclass(frozen=True, slots=True)
class _View:
    """One fitted TF-IDF vectoriser, read by hand."""

    columns: Callable[[str], list[int]]  # text -> its n-grams' columns, one per occurrence
    idf: NDArray[np.float64]
    offset: int
    sublinear: bool


def _text_columns(analyse: _Analyser, vocabulary: Mapping[str, int]) -> Callable[[str], list[int]]:
    def columns(text: str) -> list[int]:
        found = (vocabulary.get(gram) for gram in analyse(text))
        return [column for column in found if column is not None]

    return columns


class TextReader:
    """What reading needs of texts alone (`TextRead`), from the fitted model: picklable, so that
    a process of its own can do it with the very model the understander was trained to
    (`sastre.bot_reading`), and get exactly the numbers the understander would."""

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline
        self._scorer = _Scorer(pipeline)
        self.classes = self._scorer.classes

    @override
    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return (TextReader, (self._pipeline,))  # the scorer's per-word caches stay behind

    def read_all(self, texts: Sequence[str]) -> list[TextRead]:
        normalised = [_normalise(text) for text in texts]
        rows = self._scorer.probabilities_all(normalised).tolist()
        return [
            TextRead(
                folded,
                self._ranking(row),
                _language_scores(text, folded),
                _scan(text, folded),
            )
            for text, folded, row in zip(texts, normalised, rows, strict=True)
        ]

    def _ranking(self, probabilities: list[float]) -> tuple[tuple[str, float], ...]:
        """The three likeliest intents, likeliest first (ties: the model's order)."""
        order = sorted(range(len(probabilities)), key=lambda i: (-probabilities[i], i))
        return tuple((self.classes[i], probabilities[i]) for i in order[:3])


class _Scorer:
    """`Pipeline.predict_proba` for a batch of texts, without scikit-learn's per-call overhead:
    character n-grams counted word by word (cached per word), the weighting and the dot product
    with the coefficients done once for the whole batch (`dialog.ngrams`)."""

    def __init__(self, pipeline: Any) -> None:
        union, model = pipeline.named_steps["features"], pipeline.named_steps["model"]
        views: list[_View] = []
        offset = 0
        for _, vectoriser in union.transformer_list:
            vocabulary: dict[str, int] = dict(vectoriser.vocabulary_)
            analyse = vectoriser.build_analyzer()
            # A char_wb analyser with no preprocessing reads each word on its own.
            by_word = vectoriser.analyzer == "char_wb" and vectoriser.preprocessor is None
            views.append(
                _View(
                    WordColumns(analyse, vocabulary).columns
                    if by_word
                    else _text_columns(analyse, vocabulary),
                    np.asarray(vectoriser.idf_, dtype=np.float64),
                    offset,
                    bool(vectoriser.sublinear_tf),
                )
            )
            offset += len(vocabulary)
        self._views = tuple(views)
        self.classes: tuple[str, ...] = tuple(str(c) for c in model.classes_)
        self._coef = np.ascontiguousarray(np.asarray(model.coef_, dtype=np.float64).T)
        self._intercept = np.asarray(model.intercept_, dtype=np.float64)

    def probabilities(self, normalised: str) -> NDArray[np.float64]:
        row: NDArray[np.float64] = self.probabilities_all([normalised])[0]
        return row

    def probabilities_all(self, normalised: Sequence[str]) -> NDArray[np.float64]:
        """One row of class probabilities per normalised text."""
        logits = np.tile(self._intercept, (len(normalised), 1))
        for view in self._views:
            columns = [view.columns(text) for text in normalised]
            rows = tfidf_rows(columns, view.idf, sublinear=view.sublinear)
            filled, starts = rows.nonempty()
            if not starts.size:
                continue
            contributions = self._coef[rows.columns + view.offset] * rows.weights[:, None]
            logits[filled] += np.add.reduceat(contributions, starts, axis=0)
        if logits.shape[1] == 1:  # two classes: scikit-learn's binary logistic model
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            both: NDArray[np.float64] = np.column_stack([1.0 - positive, positive])
            return both
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        result: NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
        return result


def _normalise_all(texts: Iterable[str]) -> list[str]:
    return [_normalise(text) for text in texts]


def _pipeline() -> Any:
    words = TfidfVectorizer(
        analyzer="word",
        ngram_range=(1, 2),
        token_pattern=r"(?u)\b\w+\b|\?",
        lowercase=False,
        sublinear_tf=True,
    )
    chars = TfidfVectorizer(  # n-grams seen once are noise, and a third of the training time
        analyzer="char_wb", ngram_range=(2, 5), lowercase=False, sublinear_tf=True, min_df=2
    )
    return Pipeline(
        [
            ("normalise", FunctionTransformer(_normalise_all)),
            ("features", FeatureUnion([("chars", chars), ("words", words)])),
            # newton-cg: lbfgs needs ten times longer on this many features for the same fit
            ("model", LogisticRegression(C=20.0, solver="newton-cg", max_iter=1000)),
        ]
    )


def _shipped_training() -> str:
    try:
        return resources.files("dialog").joinpath("data/nlu.yaml").read_text(encoding="utf-8")
    except OSError:  # an editable install made before dialog/ was a package maps it as a namespace
        return (Path(__file__).parent / "data" / "nlu.yaml").read_text(encoding="utf-8")


def _examples(source: str) -> list[tuple[str, str, str]]:
    """(text, intent, language) triples of a training YAML (see dialog/data/nlu.yaml)."""
    document = yaml.load(source, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    intents = document.get("intents") if isinstance(document, dict) else None
    if not isinstance(intents, dict):
        raise ValueError("the training file must map 'intents' to examples")
    examples: list[tuple[str, str, str]] = []
    for intent, by_language in intents.items():
        if not isinstance(by_language, dict):
            raise ValueError(f"intent {intent!r}: expected examples per language")
        for language, texts in by_language.items():
            examples.extend((str(text), str(intent), str(language)) for text in texts or ())
    return examples


def load_training(source: str | None = None) -> list[tuple[str, str]]:
    """(text, intent) pairs from a training YAML (by default the one shipped in the package).

    The file maps each intent to a list of examples per language (see dialog/data/nlu.yaml).
    """
    examples = _examples(_shipped_training() if source is None else source)
    return [(text, intent) for text, intent, _ in examples]


class EmbeddedUnderstander:
    """The default `Understander`: scikit-learn trained on start-up, run in-process.

    Immutable once built, so one instance may serve every request and thread.
    """

    def __init__(self, training: Sequence[tuple[str, str]] | None = None) -> None:
        pairs = list(training) if training is not None else load_training()
        unknown = sorted({intent for _, intent in pairs} - set(INTENTS))
        if unknown:
            raise ValueError(f"unknown intents in the training data: {', '.join(unknown)}")
        if len({intent for _, intent in pairs}) < 2:
            raise ValueError("the training data must hold examples of at least two intents")
        pipeline = _pipeline()
        # One BLAS thread: the problem is small, and on a busy machine threads that spin waiting
        # for each other make the fit several times slower (0.15 s becomes 1 s on two cores).
        with threadpool_limits(limits=1):
            pipeline.fit([text for text, _ in pairs], [intent for _, intent in pairs])
        self.pipeline: Any = pipeline  # the fitted scikit-learn model: predict_proba(raw texts)
        self.text_reader = TextReader(pipeline)
        self._ahead = ReadAhead(self.text_reader.read_all)
        _warm_up()
        _trigram_odds()

    def understand(
        self,
        text: str,
        *,
        timezone: str = "UTC",
        now: datetime | None = None,
        language_hint: str | None = None,
    ) -> Understanding:
        """Read one message. Never raises on any text; a naive `now` is UTC, `now=None` is now.

        `timezone` (IANA, the customer's) places the dates; an unknown zone is taken as UTC.
        `language_hint` (the customer's stored language, "es", "en", "es-ES"...) breaks ties.
        """
        return self.understand_all([Reading(text, timezone, now, language_hint)])[0]

    def understand_all(self, readings: Sequence[Reading]) -> list[Understanding]:
        """Read many messages at once, each exactly as `understand` would: the intent model's
        arithmetic is done for all of them together, at about the cost of one (and not at all
        for a text read ahead)."""
        texts = self._ahead.take_all([reading.text for reading in readings])
        return [
            self._understanding(reading, text)
            for reading, text in zip(readings, texts, strict=True)
        ]

    def read_ahead(self, texts: Sequence[str]) -> None:
        """Do now what reading `texts` needs of them alone (see `dialog.readahead`)."""
        self._ahead.fill(texts)

    def keep_ahead(self, texts: Sequence[str], read: Sequence[TextRead]) -> None:
        """Keep what `text_reader` read of `texts` elsewhere (another process), for their turns."""
        self._ahead.keep(texts, read)

    def _understanding(self, reading: Reading, read: TextRead) -> Understanding:
        text, ranking = reading.text, read.ranking
        language = _decide_language(*read.languages, reading.language_hint)
        now = reading.now
        if now is None:
            now = datetime.now(UTC)
        elif now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        entities = _entities(text, read.scan, language, _zone(reading.timezone), now)
        return Understanding(
            text=text,
            intent=ranking[0][0],
            confidence=ranking[0][1],
            language=language,
            entities=tuple(entities),
            ranking=ranking,
        )


class TextRead(NamedTuple):
    """What reading a message needs of its text alone."""

    normalised: str
    ranking: tuple[tuple[str, float], ...]  # the three likeliest intents, with probabilities
    languages: tuple[float, float]  # Spanish and English scores (`_language_scores`)
    scan: TextScan | None  # its entities as far as the text tells (`_scan`)


@lru_cache(maxsize=1)
def _warm_up() -> None:
    """dateparser loads its language data on first use (~100 ms): pay it at start-up."""
    for language, phrase in (("es", "15 de marzo"), ("en", "March 15")):
        _calendar_date(phrase, language, date(2000, 1, 1))
