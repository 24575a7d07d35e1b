"""The embedded language understanding: intents, language, entities, confidence, speed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.nlu_accuracy import evaluate, load_test_set
from dialog.nlu import (
    INTENTS,
    LANGUAGES,
    EmbeddedUnderstander,
    Entity,
    Reading,
    Understander,
    Understanding,
    detect_language,
    extract_entities,
    load_training,
)

# Wednesday 14 May 2025, 11:30 in Madrid (CEST, +02:00), 05:30 in New York (EDT, -04:00)
NOW = datetime(2025, 5, 14, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def nlu() -> EmbeddedUnderstander:
    return EmbeddedUnderstander()


def test_embedded_understander_is_an_understander(nlu: EmbeddedUnderstander) -> None:
    understander: Understander = nlu
    assert isinstance(understander.understand("hola"), Understanding)


@pytest.mark.parametrize(
    ("text", "intent", "language"),
    [
        ("¡hola! buenos días", "greet", "es"),
        ("buenas tardes, ¿qué tal?", "greet", "es"),
        ("hello there!", "greet", "en"),
        ("hi, good morning", "greet", "en"),
        ("¿a qué hora cerráis los sábados?", "faq", "es"),
        ("¿cuánto cuestan los gastos de envío?", "faq", "es"),
        ("what are your opening hours on sunday?", "faq", "en"),
        ("do you accept paypal?", "faq", "en"),
        ("¿dónde está mi pedido 10234?", "order_status", "es"),
        ("quiero saber el estado de mi compra", "order_status", "es"),
        ("where is my order #A-10234?", "order_status", "en"),
        ("has my package shipped?", "order_status", "en"),
        ("¿me podéis llamar mañana a las 10?", "request_callback", "es"),
        ("quiero que me llaméis el lunes por la tarde", "request_callback", "es"),
        ("please call me tomorrow after 5pm", "request_callback", "en"),
        ("can you give me a call next Friday at 9:30?", "request_callback", "en"),
        ("prefiero recibir emails en vez de SMS", "change_preferences", "es"),
        ("quiero cambiar mis preferencias de contacto", "change_preferences", "es"),
        ("I want emails instead of text messages", "change_preferences", "en"),
        ("only contact me in the evenings please", "change_preferences", "en"),
        ("no me mandéis más ofertas por favor", "opt_out", "es"),
        ("quiero dejar de recibir vuestros mensajes", "opt_out", "es"),
        ("don't send me any more offers", "opt_out", "en"),
        ("please remove me from your mailing list", "opt_out", "en"),
        ("quiero hablar con una persona", "human", "es"),
        ("pásame con un agente humano", "human", "es"),
        ("I want to talk to a real person", "human", "en"),
        ("can I speak to an agent?", "human", "en"),
        ("el producto llegó roto, es una vergüenza", "complaint", "es"),
        ("estoy muy enfadado, mi pedido llegó con dos semanas de retraso", "complaint", "es"),
        ("terrible service, my order arrived broken", "complaint", "en"),
        ("I'm really angry, this is unacceptable", "complaint", "en"),
        ("¡muchas gracias!", "thanks", "es"),
        ("gracias por la ayuda", "thanks", "es"),
        ("thank you so much!", "thanks", "en"),
        ("thanks for your help", "thanks", "en"),
        ("adiós, hasta luego", "goodbye", "es"),
        ("nos vemos, chao", "goodbye", "es"),
        ("bye, have a nice day", "goodbye", "en"),
        ("goodbye!", "goodbye", "en"),
    ],
)
def test_intent_is_recognised(
    nlu: EmbeddedUnderstander, text: str, intent: str, language: str
) -> None:
    understood = nlu.understand(text)
    assert (understood.intent, understood.language) == (intent, language)
    assert understood.confidence >= 0.5


def test_typos_and_missing_accents_still_match(nlu: EmbeddedUnderstander) -> None:
    assert nlu.understand("donde esta mi pedidio").intent == "order_status"
    assert nlu.understand("LLAMENME MANANA").intent == "request_callback"
    assert nlu.understand("thnx a lot").intent == "thanks"


def test_held_out_accuracy_is_at_least_90_percent(nlu: EmbeddedUnderstander) -> None:
    report = evaluate(nlu, load_test_set())
    assert report.accuracy >= 0.90
    assert report.language_accuracy >= 0.95


def test_held_out_set_is_large_varied_and_not_in_the_training_data() -> None:
    items = load_test_set()
    assert len(items) >= 300
    assert {(i.intent, i.language) for i in items} == {
        (i, lang) for i in INTENTS for lang in LANGUAGES
    }
    training = {" ".join(text.casefold().split()) for text, _ in load_training()}
    copied = [i.text for i in items if " ".join(i.text.casefold().split()) in training]
    assert copied == []
    assert all(intent in INTENTS for _, intent in load_training())


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("hola", "es"),
        ("gracias", "es"),
        ("mi pedido", "es"),
        ("¿dónde está?", "es"),
        ("llámenme", "es"),
        ("graciasss", "es"),
        ("hi", "en"),
        ("thanks", "en"),
        ("my order", "en"),
        ("where's my parcel", "en"),
        ("hola, where is my order?", "en"),
    ],
)
def test_language_is_detected_on_short_texts(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_the_stored_language_breaks_ties_only() -> None:
    assert detect_language("ok", hint="es") == "es"
    assert detect_language("ok", hint="en") == "en"
    assert detect_language("A-10234", hint="es-ES") == "es"
    assert detect_language("thanks", hint="es") == "en"
    assert detect_language("gracias", hint="en") == "es"
    assert detect_language("ok", hint="fr") in LANGUAGES


@pytest.mark.parametrize(
    ("text", "timezone", "value", "words"),
    [
        (
            "llámenme mañana a las 10",
            "Europe/Madrid",
            "2025-05-15T10:00:00+02:00",
            "mañana a las 10",
        ),
        (
            "call me tomorrow after 5pm",
            "Europe/Madrid",
            "2025-05-15T17:00:00+02:00",
            "tomorrow after 5pm",
        ),
        (
            "el lunes por la tarde",
            "Europe/Madrid",
            "2025-05-19T15:00:00+02:00",
            "el lunes por la tarde",
        ),
        (
            "next Friday at 9:30",
            "America/New_York",
            "2025-05-16T09:30:00-04:00",
            "next Friday at 9:30",
        ),
        ("a las 5", "Europe/Madrid", "2025-05-14T17:00:00+02:00", "a las 5"),
        ("a las 10", "Europe/Madrid", "2025-05-15T10:00:00+02:00", "a las 10"),
        (
            "a las 4 de la tarde",
            "Europe/Madrid",
            "2025-05-14T16:00:00+02:00",
            "a las 4 de la tarde",
        ),
        (
            "mañana por la mañana",
            "Europe/Madrid",
            "2025-05-15T09:00:00+02:00",
            "mañana por la mañana",
        ),
        ("pasado mañana", "Europe/Madrid", "2025-05-16T00:00:00+02:00", "pasado mañana"),
        ("el 15 de marzo", "Europe/Madrid", "2026-03-15T00:00:00+01:00", "el 15 de marzo"),
        (
            "on March 15th at 10am",
            "Europe/London",
            "2026-03-15T10:00:00+00:00",
            "on March 15th at 10am",
        ),
        ("in 30 minutes", "Europe/Madrid", "2025-05-14T12:00:00+02:00", "in 30 minutes"),
        (
            "dentro de media hora",
            "Europe/Madrid",
            "2025-05-14T12:00:00+02:00",
            "dentro de media hora",
        ),
        (
            "la semana que viene",
            "Europe/Madrid",
            "2025-05-19T00:00:00+02:00",
            "la semana que viene",
        ),
        ("tonight after 8", "America/New_York", "2025-05-14T20:00:00-04:00", "tonight after 8"),
        ("a las diez y media", "Europe/Madrid", "2025-05-15T10:30:00+02:00", "a las diez y media"),
        (
            "lo pedí el lunes pasado",
            "Europe/Madrid",
            "2025-05-12T00:00:00+02:00",
            "el lunes pasado",
        ),
        ("I ordered it 3 days ago", "Europe/Madrid", "2025-05-11T00:00:00+02:00", "3 days ago"),
    ],
)
def test_dates_are_read_in_the_customer_time_zone(
    text: str, timezone: str, value: str, words: str
) -> None:
    language = detect_language(text)
    assert extract_entities(text, language, timezone, NOW) == (Entity("datetime", value, words),)


def test_tomorrow_is_the_customer_tomorrow() -> None:
    late = datetime(2025, 5, 14, 23, 30, tzinfo=UTC)  # already Thursday 01:30 in Madrid
    (madrid,) = extract_entities("mañana a las 10", "es", "Europe/Madrid", late)
    (mexico,) = extract_entities("mañana a las 10", "es", "America/Mexico_City", late)
    assert madrid.value == "2025-05-16T10:00:00+02:00"
    assert mexico.value == "2025-05-15T10:00:00-06:00"


def test_a_time_window_gives_its_start_and_end_on_the_same_day() -> None:
    found = extract_entities("llamada mañana entre las 3 y las 5", "es", "Europe/Madrid", NOW)
    assert [e.value for e in found] == ["2025-05-15T15:00:00+02:00", "2025-05-15T17:00:00+02:00"]


def test_naive_now_and_unknown_zones_are_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    (found,) = extract_entities("tomorrow at 10am", "en", "Mars/Olympus_Mons", naive)
    assert found.value == "2025-05-15T10:00:00+00:00"


@pytest.mark.parametrize(
    ("text", "number", "words"),
    [
        ("pedido 10234", "10234", "pedido 10234"),
        ("¿Y mi pedido #10234?", "10234", "pedido #10234"),
        ("#10234", "10234", "#10234"),
        ("order A-10234 is late", "A-10234", "order A-10234"),
        ("my order number is a10234", "A-10234", "order number is a10234"),
        ("orden número 5531", "5531", "orden número 5531"),
        ("el pedido nº 4410 no llega", "4410", "pedido nº 4410"),
        ("¿ha salido el B-77201?", "B-77201", "B-77201"),
    ],
)
def test_order_numbers_are_normalised(text: str, number: str, words: str) -> None:
    assert extract_entities(text, "es", "UTC", NOW) == (Entity("order_number", number, words),)


@pytest.mark.parametrize(
    "text",
    [
        "buenas tardes",
        "good morning",
        "un pedido de 150 euros",
        "tengo la talla 42",
        "I have a question about 3 orders",
        "call me at 555 1234",
        "it costs 10.30",
        "at one point it worked",
        "after 2 days it broke",
    ],
)
def test_no_entities_where_there_are_none(text: str) -> None:
    assert extract_entities(text, detect_language(text), "Europe/Madrid", NOW) == ()


def test_understand_returns_the_entities(nlu: EmbeddedUnderstander) -> None:
    understood = nlu.understand(
        "my order #A-10234 hasn't come, call me tomorrow after 5pm",
        timezone="Europe/Madrid",
        now=NOW,
    )
    assert understood.entities == (
        Entity("order_number", "A-10234", "order #A-10234"),
        Entity("datetime", "2025-05-15T17:00:00+02:00", "tomorrow after 5pm"),
    )


def test_confidence_is_a_probability_and_lower_for_gibberish(nlu: EmbeddedUnderstander) -> None:
    clear = nlu.understand("hola")
    assert clear.ranking[0] == (clear.intent, clear.confidence)
    assert len(clear.ranking) == 3
    assert [p for _, p in clear.ranking] == sorted((p for _, p in clear.ranking), reverse=True)
    for gibberish in ("xqzv wprtk", "asdkjh", "zzzz", ""):
        unclear = nlu.understand(gibberish)
        assert 0.0 <= unclear.confidence < 0.5 < clear.confidence <= 1.0


def test_the_fast_scorer_gives_scikit_learn_probabilities(nlu: EmbeddedUnderstander) -> None:
    texts = [item.text for item in load_test_set()] + ["", "?", "x" * 3000]
    rows = nlu.pipeline.predict_proba(texts)
    classes = [str(c) for c in nlu.pipeline.classes_]
    for text, row in zip(texts, rows, strict=True):
        expected = sorted(zip(classes, row, strict=True), key=lambda pair: -pair[1])[:3]
        got = nlu.understand(text).ranking
        assert [c for c, _ in got] == [c for c, _ in expected]
        assert [p for _, p in got] == pytest.approx([float(p) for _, p in expected], abs=1e-9)


def test_understanding_is_deterministic(nlu: EmbeddedUnderstander) -> None:
    other = EmbeddedUnderstander()
    for item in load_test_set():
        first = nlu.understand(item.text, timezone="Europe/Madrid", now=NOW)
        assert other.understand(item.text, timezone="Europe/Madrid", now=NOW) == first
        assert nlu.understand(item.text, timezone="Europe/Madrid", now=NOW) == first


def test_training_data_can_be_given_and_is_checked() -> None:
    small = EmbeddedUnderstander([("hola", "greet"), ("hi", "greet"), ("adiós", "goodbye")])
    assert small.understand("hola").intent == "greet"
    assert small.understand("hola").ranking[1][0] == "goodbye"
    with pytest.raises(ValueError, match="unknown intents"):
        EmbeddedUnderstander([("hola", "greet"), ("¿precio?", "pricing")])
    with pytest.raises(ValueError, match="two intents"):
        EmbeddedUnderstander([("hola", "greet")])


_DATE_VOCABULARY = """
    mañana a las la el 10 0 24 99 5pm 12am : . / 3/4 31/02 lunes pasado por tarde noche y entre
    half quarter past to menos cuarto media hace ago in en dentro de days horas 999 # pedido order
    A- a10234 next last week semana que viene tonight at after de marzo march 15th 0000 diez una
    one o'clock
"""
_DATE_WORDS = st.sampled_from(_DATE_VOCABULARY.split())


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=300) | st.lists(_DATE_WORDS, max_size=12).map(" ".join),
    timezone=st.sampled_from(["UTC", "Europe/Madrid", "Pacific/Kiritimati", "", "nowhere/at all"]),
    hint=st.none() | st.text(max_size=6),
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_understand_never_raises(
    nlu: EmbeddedUnderstander, text: str, timezone: str, hint: str | None, now: datetime
) -> None:
    understood = nlu.understand(text, timezone=timezone, now=now, language_hint=hint)
    assert understood.intent in INTENTS
    assert 0.0 <= understood.confidence <= 1.0
    assert understood.language in LANGUAGES
    for entity in understood.entities:
        assert entity.kind in ("datetime", "order_number")
        assert entity.text
        if entity.kind == "datetime":
            assert datetime.fromisoformat(entity.value).tzinfo is not None


def test_a_batch_is_read_as_each_message_alone(nlu: EmbeddedUnderstander) -> None:
    """understand_all (the inbound path's batches) gives what understand gives, message by
    message, whatever else is in the batch: empty texts, dates, order numbers, gibberish."""
    texts = [item.text for item in load_test_set()] + ["", "?", "x" * 3000, "mañana a las 10"]
    readings = [
        Reading(text, "Europe/Madrid" if n % 2 else "America/Mexico_City", NOW, ("es", None)[n % 2])
        for n, text in enumerate(texts)
    ]
    alone = [
        nlu.understand(r.text, timezone=r.timezone, now=r.now, language_hint=r.language_hint)
        for r in readings
    ]
    together = nlu.understand_all(readings)
    assert [u.intent for u in together] == [u.intent for u in alone]
    for batch, single in zip(together, alone, strict=True):
        assert (batch.language, batch.entities) == (single.language, single.entities)
        assert [p for _, p in batch.ranking] == pytest.approx(
            [p for _, p in single.ranking], abs=1e-12
        )
    assert nlu.understand_all([]) == []
