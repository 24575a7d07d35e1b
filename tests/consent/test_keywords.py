"""SMS keywords: single keywords, revocation in plain words (FCC 24-18), in English and Spanish, and
the everyday sentences a contact centre must not mistake for an opt-out."""

from __future__ import annotations

import dataclasses
import string
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from consent.keywords import (
    DEFAULT_RULES,
    NO_MATCH,
    KeywordKind,
    KeywordMatch,
    KeywordRules,
    Language,
    classify,
    default_rules,
    permitted,
    with_provider_reading,
)


def test_keyword_kinds_have_their_stored_values() -> None:
    assert [kind.value for kind in KeywordKind] == ["opt_out", "opt_in", "help", "none"]


# --- single keywords ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keyword", "language"),
    [
        ("STOP", "STOP", "en"),
        ("stop", "STOP", "en"),
        ("stop.", "STOP", "en"),
        (" Stop! ", "STOP", "en"),
        ("\n\tSTOP\n", "STOP", "en"),
        ("StopAll", "STOPALL", "en"),
        ("unsubscribe", "UNSUBSCRIBE", "en"),
        ("Cancel", "CANCEL", "en"),
        ("END", "END", "en"),
        ("quit!!", "QUIT", "en"),
        ("revoke", "REVOKE", "en"),
        ("OptOut", "OPTOUT", "en"),
        ("¡BAJA!", "BAJA", "es"),
        ("baja", "BAJA", "es"),
        ("Cancelar.", "CANCELAR", "es"),
        ("parar", "PARAR", "es"),
        ("¡Alto!", "ALTO", "es"),
    ],
)
def test_a_single_opt_out_word_is_an_exact_opt_out(
    text: str, keyword: str, language: Language
) -> None:
    assert classify(text) == KeywordMatch(KeywordKind.OPT_OUT, keyword, language, exact=True)


@pytest.mark.parametrize("text", ["STOP 🙏", "🛑 stop 🛑", "«stop»", "'STOP'", "(stop)", "*STOP*"])
def test_emoji_and_symbols_around_the_word_are_ignored(text: str) -> None:
    assert classify(text) == KeywordMatch(KeywordKind.OPT_OUT, "STOP", "en", exact=True)


def test_full_width_letters_are_folded() -> None:
    assert classify("ＳＴＯＰ").keyword == "STOP"


@pytest.mark.parametrize(
    ("text", "keyword", "language"),
    [
        ("START", "START", "en"),
        ("unstop", "UNSTOP", "en"),
        ("Alta", "ALTA", "es"),
        ("INICIO!", "INICIO", "es"),
    ],
)
def test_a_single_opt_in_word_is_an_opt_in_that_needs_no_pending_request(
    text: str, keyword: str, language: Language
) -> None:
    assert classify(text) == KeywordMatch(KeywordKind.OPT_IN, keyword, language, exact=True)


@pytest.mark.parametrize(
    ("text", "keyword", "language"),
    [
        ("YES", "YES", "en"),
        ("yes!", "YES", "en"),
        ("Y", "Y", "en"),
        ("si", "SI", "es"),
        ("Sí", "SI", "es"),
        ("¡SÍ!", "SI", "es"),
    ],
)
def test_a_yes_only_confirms_a_pending_opt_in(text: str, keyword: str, language: Language) -> None:
    assert classify(text) == KeywordMatch(
        KeywordKind.OPT_IN, keyword, language, exact=True, confirms_pending=True
    )


@pytest.mark.parametrize(
    ("text", "keyword", "language"),
    [
        ("HELP", "HELP", "en"),
        ("help?", "HELP", "en"),
        ("Info", "INFO", "en"),
        ("¿AYUDA?", "AYUDA", "es"),
    ],
)
def test_a_single_help_word_is_help(text: str, keyword: str, language: Language) -> None:
    assert classify(text) == KeywordMatch(KeywordKind.HELP, keyword, language, exact=True)


@pytest.mark.parametrize(
    "text",
    [
        "I need help with my order",
        "help me please",
        "ayuda por favor",
        "more info on the sale?",
        "start my order",
        "yes please",
        "yes, tomorrow at 5",
        "sí, gracias",
        "y luego qué",
    ],
)
def test_help_and_opt_in_words_count_only_as_the_whole_message(text: str) -> None:
    assert classify(text) == NO_MATCH


@pytest.mark.parametrize("text", ["", "   ", "?!", "🙏", "...\n"])
def test_an_empty_message_is_nothing(text: str) -> None:
    assert classify(text) == NO_MATCH


# --- revocation in plain words: English ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("please stop texting me", "STOP"),
        ("Stop sending me coupons", "STOP"),
        ("STOP STOP STOP", "STOP"),
        ("I texted STOP last week and you still message me", "STOP"),
        ("Unsubscribe me", "UNSUBSCRIBE"),
        ("how do I unsubscribe?", "UNSUBSCRIBE"),
        ("I want to opt out", "OPT OUT"),
        ("opt-out", "OPT OUT"),
        ("I opted out already", "OPT OUT"),
        ("I revoke my consent", "REVOKE"),
        ("quit it", "QUIT"),
    ],
)
def test_the_fcc_words_count_anywhere_in_a_sentence(text: str, keyword: str) -> None:
    assert classify(text) == KeywordMatch(KeywordKind.OPT_OUT, keyword, "en")


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("cancel my subscription", "cancel my subscription"),
        ("end these texts", "end these texts"),
        ("Cancel messages", "cancel messages"),
        ("please cancel all these annoying text messages", "cancel all these annoying text"),
        ("I cancelled my subscription but you keep texting", "cancelled my subscription"),
        ("discontinue the SMS alerts", "discontinue the sms"),
        ("cancel my e-mails", "cancel my e mails"),
    ],
)
def test_end_and_cancel_in_a_sentence_count_when_they_are_about_messages(
    text: str, keyword: str
) -> None:
    assert classify(text) == KeywordMatch(KeywordKind.OPT_OUT, keyword, "en")


@pytest.mark.parametrize(
    "text",
    [
        "when does the sale end?",
        "the weekend",
        "see you at the end of the month",
        "I didn't understand the end of your message",
        "I'll end up texting you later",
        "I can't cancel my order online, can you help?",
        "cancel my order",
        "Can I cancel my order by text?",
        "cancel my order my email is ana@example.com",
        "please cancel my appointment and text me a new time",
        "my friend sent me a message",
        "send me the receipt",
    ],
)
def test_end_and_cancel_about_something_else_are_not_a_revocation(text: str) -> None:
    assert classify(text) == NO_MATCH


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("cancel please", "CANCEL"),
        ("End, thanks!", "END"),
        ("please STOP now", "STOP"),
        ("cancel all", "CANCEL"),
    ],
)
def test_an_opt_out_word_with_only_courtesy_around_it_is_an_opt_out(
    text: str, keyword: str
) -> None:
    assert classify(text) == KeywordMatch(KeywordKind.OPT_OUT, keyword, "en")


@pytest.mark.parametrize(
    "text",
    [
        "no more texts please",
        "don't text me",
        "Do not contact me again",
        "remove me from your mailing list",
        "take me off the list",
        "leave me alone",
    ],
)
def test_other_unmistakable_english_phrases_are_a_revocation(text: str) -> None:
    match = classify(text)
    assert (match.kind, match.language, match.exact) == (KeywordKind.OPT_OUT, "en", False)


def test_asking_for_texts_instead_of_calls_is_not_a_revocation() -> None:
    assert classify("don't call me, text me instead") == NO_MATCH


def test_the_fcc_words_count_even_where_they_may_mean_something_else() -> None:
    # The documented trade-off: a missed revocation is a violation, a false one costs a START.
    assert classify("I quit my job, stop it").kind is KeywordKind.OPT_OUT


@pytest.mark.parametrize(
    "text",
    [
        "where is the nearest bus stop?",
        "Which is the next stop for the shuttle?",
        "Is it a non-stop flight?",
        "you are a one-stop shop!",
        "turn left at the stop sign",
        "can I stop by the store tomorrow?",
    ],
)
def test_stop_the_noun_or_stop_by_to_visit_is_no_revocation(text: str) -> None:
    # The reasonable-person test: nobody asking for a bus stop wants their messages stopped.
    assert classify(text) == NO_MATCH


@pytest.mark.parametrize(
    "text",
    [
        "I'm at the bus stop, stop texting me",
        "stop by text please",
        "please stop",
        "request stop",
        "I request stop of all messages",
        "last stop texting me",
        "Will no one stop these texts?",
    ],
)
def test_a_revocation_beside_stop_the_noun_still_counts(text: str) -> None:
    assert classify(text).kind is KeywordKind.OPT_OUT


def test_a_revocation_wins_over_help_in_the_same_message() -> None:
    assert classify("help stop").kind is KeywordKind.OPT_OUT


def test_a_revocation_after_other_sentences_counts() -> None:
    text = "Thanks for the reminder. My order arrived fine!\nPlease stop texting me though."
    assert classify(text).kind is KeywordKind.OPT_OUT


# --- revocation in plain words: Spanish ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("no me escriban más", "no me escriban mas"),
        ("No me escribas", "no me escribas"),
        ("por favor no me sigan escribiendo", "no me sigan escribiendo"),
        ("no me vuelvan a contactar", "no me vuelvan a contactar"),
        ("no me molesten", "no me molesten"),
        ("no me manden más", "no me manden mas"),
        ("no me envíen más publicidad", "no me envien mas"),
        ("no quiero recibir más mensajes", "no quiero recibir mas mensajes"),
        ("ya no quiero que me escriban", "no quiero que me escriban"),
        ("dejen de enviarme mensajes", "dejen de enviarme"),
        ("para de escribirme", "para de escribirme"),
        ("darme de baja", "darme de baja"),
        ("quiero darme de baja", "darme de baja"),
        ("me doy de baja", "me doy de baja"),
        ("¿Me pueden dar de baja?", "me pueden dar de baja"),
        ("quiero dar de baja los SMS", "dar de baja los sms"),
        ("quiero la baja.", "quiero la baja"),
        ("baja de la lista", "baja de la lista"),
        ("basta de mensajes", "basta de mensajes"),
        ("no más promociones", "no mas promociones"),
        ("cancelen los mensajes", "cancelen los mensajes"),
        ("cancelar la suscripción", "cancelar la suscripcion"),
    ],
)
def test_spanish_revocations_in_plain_words(text: str, keyword: str) -> None:
    assert classify(text) == KeywordMatch(KeywordKind.OPT_OUT, keyword, "es")


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("baja por favor", "BAJA"),
        ("¡Alto ya!", "ALTO"),
        ("cancelar, gracias", "CANCELAR"),
        ("¡Basta!", "BASTA"),
        ("ya basta", "BASTA"),
    ],
)
def test_a_spanish_opt_out_word_with_only_courtesy_around_it(text: str, keyword: str) -> None:
    assert classify(text) == KeywordMatch(KeywordKind.OPT_OUT, keyword, "es")


def test_desuscribirse_is_unsubscribing() -> None:
    assert classify("quiero desuscribirme") == KeywordMatch(
        KeywordKind.OPT_OUT, "DESUSCRIBIR", "es"
    )


def test_an_english_keyword_in_a_spanish_sentence_is_reported_as_spanish() -> None:
    assert classify("stop por favor") == KeywordMatch(KeywordKind.OPT_OUT, "STOP", "es")


@pytest.mark.parametrize(
    "text",
    [
        "no me envían el pedido",  # indicative: "they don't send me the order"
        "¿por qué no me escribes?",
        "no me envíen la factura en papel",
        "estoy de baja médica",  # on sick leave
        "quiero dar de baja mi tarjeta",  # cancel a card: self-service
        "solicito la baja de mi línea",
        "cancelar mi pedido",
        "cancelé el pedido por mensaje",
        "terminé de leer tus mensajes",
        "necesito describir el problema",
        "quiero el alto de gama",
        "la tarifa es muy alta",
        "para el lunes, por favor",
    ],
)
def test_spanish_sentences_that_are_not_a_revocation(text: str) -> None:
    assert classify(text) == NO_MATCH


# --- negated revocations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I don't want to unsubscribe, I just want to know your opening hours",
        "Please do not stop sending me texts",
        "I'm not opting out, I have a question",
        "we don't need to cancel our subscription",
        "never stop texting me",
        "No quiero darme de baja, solo quiero saber el horario",
        "no dejéis de enviarme mensajes",
        "no dejen de enviarme mensajes",
        "no quiero que dejen de escribirme",
        "no me den de baja",
        "nunca me doy de baja",
    ],
)
def test_a_negated_revocation_is_not_one(text: str) -> None:
    assert classify(text) == NO_MATCH


@pytest.mark.parametrize(
    "text",
    [
        "it won't stop texting me",  # a complaint about us, not the customer's wish
        "why don't you stop texting me",
        "you never stop texting me",
        "I don't care, stop",
        "I dont care stop texting me",
        "I won't stop complaining until you stop texting me",
        "I can't unsubscribe, the link is broken",
        "no stop",
        "este número no para de escribirme",  # the indicative: it does not stop
        "no me dan de baja",  # they will not unsubscribe me
        "no, dejen de enviarme mensajes",
        "no no me escriban más",
        "no puedo darme de baja",
        "no sé cómo darme de baja",
    ],
)
def test_a_complaint_or_a_negation_elsewhere_still_revokes(text: str) -> None:
    assert classify(text).kind is KeywordKind.OPT_OUT


_REVOCATIONS: dict[Language, tuple[str, ...]] = {
    "en": (
        "stop",
        "stop texting me",
        "stop sending me texts",
        "unsubscribe",
        "unsubscribe me",
        "opt out",
        "quit",
        "revoke my consent",
        "cancel my subscription",
        "end these texts",
        "remove me from your list",
    ),
    "es": (
        "darme de baja",
        "me doy de baja",
        "quiero la baja",
        "dejen de enviarme mensajes",
        "paren de escribirme",
        "cancelen los mensajes",
        "me den de baja",
        "dar de baja los sms",
        "cancelar la suscripcion",
    ),
}
_NEGATIONS: dict[Language, tuple[str, ...]] = {
    "en": (
        "don't",
        "Please do not",
        "I don't want to",
        "I really do not wish to",
        "we're not going to",
        "I won't",
        "I never want to",
        "no need to",
        "I don't want you to",
    ),
    "es": ("no", "No quiero", "nunca", "no quiero que", "yo no pienso", "no hace falta"),
}
_TAILS = ("", "please", "I just want to know your opening hours", "solo quiero saber el horario")


@st.composite
def _negated_revocation(draw: st.DrawFn) -> tuple[str, str]:
    language: Language = draw(st.sampled_from(["en", "es"]))
    phrase = draw(st.sampled_from(_REVOCATIONS[language]))
    negation = draw(st.sampled_from(_NEGATIONS[language]))
    tail = draw(st.sampled_from(_TAILS))
    return phrase, f"{negation} {phrase} {tail}"


@given(_negated_revocation())
def test_a_negated_revocation_phrase_never_revokes(drawn: tuple[str, str]) -> None:
    phrase, negated = drawn
    assert classify(phrase).kind is KeywordKind.OPT_OUT  # the phrase alone revokes
    assert classify(negated).kind is not KeywordKind.OPT_OUT


def test_a_keyword_alone_stays_immediate_whatever_the_negation_rules() -> None:
    for word in ("STOP", "stop.", "BAJA", "Unsubscribe", "no more texts", "don't text me"):
        assert classify(word).kind is KeywordKind.OPT_OUT, word


# --- configurable rules -------------------------------------------------------------------------


def test_default_rules_are_the_compliance_lists() -> None:
    rules = default_rules()
    assert rules == DEFAULT_RULES
    assert rules.opt_out == (
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
    )
    assert (rules.opt_out_es, rules.opt_in, rules.opt_in_es) == (
        ("BAJA", "CANCELAR", "PARAR", "ALTO"),
        ("START", "UNSTOP"),
        ("ALTA", "INICIO"),
    )
    assert (rules.confirm, rules.confirm_es, rules.help, rules.help_es) == (
        ("YES", "Y"),
        ("SI", "SÍ"),
        ("HELP", "INFO"),
        ("AYUDA",),
    )


_WITH_DESAPUNTAR = dataclasses.replace(
    DEFAULT_RULES, opt_out_es=(*DEFAULT_RULES.opt_out_es, "Desapuntar")
)


def test_an_extra_configured_word_is_a_single_keyword() -> None:
    assert classify("desapuntar!", _WITH_DESAPUNTAR) == KeywordMatch(
        KeywordKind.OPT_OUT, "DESAPUNTAR", "es", exact=True
    )


def test_an_extra_configured_opt_out_word_counts_with_courtesy_around_it() -> None:
    assert classify("desapuntar por favor", _WITH_DESAPUNTAR) == KeywordMatch(
        KeywordKind.OPT_OUT, "DESAPUNTAR", "es"
    )


def test_an_extra_word_leaves_the_default_rules_alone() -> None:
    assert classify("desapuntar") == NO_MATCH


def test_a_configured_word_is_matched_without_its_accents() -> None:
    rules = KeywordRules(help_es=("AYÚDAME",))
    assert classify("ayudame", rules) == KeywordMatch(KeywordKind.HELP, "AYÚDAME", "es", exact=True)


def test_a_word_removed_from_the_lists_is_no_longer_a_single_keyword() -> None:
    rules = dataclasses.replace(DEFAULT_RULES, opt_out=("STOP",))
    assert classify("END", rules) == NO_MATCH


def test_plain_words_revocation_is_not_configurable() -> None:
    rules = KeywordRules(opt_out=(), opt_out_es=())
    assert classify("please stop texting me", rules).kind is KeywordKind.OPT_OUT


def test_a_word_in_two_lists_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        KeywordRules(opt_in=("START", "STOP"))


def test_an_empty_word_is_refused() -> None:
    with pytest.raises(ValueError, match="not a keyword"):
        KeywordRules(help=("HELP", " ! "))


def test_a_string_instead_of_a_tuple_is_refused() -> None:
    with pytest.raises(TypeError, match="tuple"):
        KeywordRules(help="HELP")  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------------

_AROUND = st.text(alphabet=" \t\n.,;:!?¡¿\"'()[]-…*~🙏👍😡🛑«»", max_size=6)


@st.composite
def _cased_opt_out_word(draw: st.DrawFn) -> tuple[str, str]:
    """A default opt-out word and the same word in random case."""
    word = draw(st.sampled_from(DEFAULT_RULES.opt_out + DEFAULT_RULES.opt_out_es))
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return word, "".join(c.swapcase() if flip else c for c, flip in zip(word, flips, strict=True))


@given(word=_cased_opt_out_word(), before=_AROUND, after=_AROUND)
@example(word=("STOP", "sToP"), before="¡ ", after=" 🙏!")
@example(word=("CANCELAR", "Cancelar"), before="\n", after="...")
def test_any_opt_out_word_wrapped_in_whitespace_punctuation_and_case_is_an_exact_opt_out(
    word: tuple[str, str], before: str, after: str
) -> None:
    canonical, cased = word
    match = classify(before + cased + after)
    assert (match.kind, match.keyword, match.exact) == (KeywordKind.OPT_OUT, canonical, True)


def _has_no_vowel(character: str) -> bool:
    # Every keyword, stem and phrase has a vowel or "y" once accents are folded.
    folded = unicodedata.normalize("NFKD", character.casefold())
    return not any(vowel in folded for vowel in "aeiouy")


@given(st.text(alphabet=st.characters().filter(_has_no_vowel)))
def test_text_without_any_keyword_stem_is_nothing(text: str) -> None:
    assert classify(text) == NO_MATCH


_ORDINARY_TEXT = (
    "my order hasn't arrived yet can you check the tracking number where is the parcel "
    "hola quiero saber el estado de mi pedido cuando llega la factura "
    "I would like to change the delivery address to my office the sale ends friday weekend "
    "cancel cancelar end my order booking appointment pedido cita"
)
_ORDINARY_WORDS = tuple(_ORDINARY_TEXT.split())


@given(st.lists(st.sampled_from(_ORDINARY_WORDS), min_size=2, max_size=20).map(" ".join))
def test_ordinary_customer_sentences_are_nothing(text: str) -> None:
    assert classify(text) == NO_MATCH


_STOP_NOUNS = ("bus", "pit", "next", "last", "nearest", "one", "non", "full", "train")
_ORDINARY = st.lists(st.sampled_from(_ORDINARY_WORDS), max_size=8).map(" ".join)


@given(noun=st.sampled_from(_STOP_NOUNS), before=_ORDINARY, after=_ORDINARY)
def test_stop_as_a_noun_in_an_ordinary_sentence_is_nothing(
    noun: str, before: str, after: str
) -> None:
    assert classify(f"{before} {noun} stop {after}") == NO_MATCH


@given(noun=st.sampled_from(_STOP_NOUNS), before=_ORDINARY, after=_ORDINARY)
def test_stop_as_a_noun_never_hides_a_revocation_after_it(
    noun: str, before: str, after: str
) -> None:
    assert classify(f"{before} {noun} stop {after}, stop texting me").kind is KeywordKind.OPT_OUT


@given(noun=st.sampled_from(_STOP_NOUNS), before=_ORDINARY)
def test_stop_followed_by_messaging_counts_whatever_comes_before(noun: str, before: str) -> None:
    assert classify(f"{before} {noun} stop texting me").kind is KeywordKind.OPT_OUT


# Lone surrogates too: a badly decoded webhook body can carry them.
_ANY_CHARACTER = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))


@given(st.text(alphabet=_ANY_CHARACTER))
@example("\ud83d stop")
@example("İ" * 50 + "ﬀ" * 50)
def test_classify_never_raises_on_arbitrary_unicode(text: str) -> None:
    assert isinstance(classify(text), KeywordMatch)


@given(before=st.text(), after=st.text())
def test_stop_as_a_word_anywhere_is_an_opt_out(before: str, after: str) -> None:
    # At the start of a clause: "don't stop" before it would say the opposite (tested below).
    assert classify(f"{before}\nstop {after}").kind is KeywordKind.OPT_OUT


def test_the_no_stem_alphabet_still_has_letters() -> None:
    # The no-stem property above is only meaningful if it still generates letters.
    assert "".join(filter(_has_no_vowel, string.ascii_lowercase)) == "bcdfghjklmnpqrstvwxz"


# --- a provider's own reading (Twilio's OptOutType) -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "said", "kind"),
    [
        ("ARRET", "opt_out", KeywordKind.OPT_OUT),  # a keyword the account taught Twilio
        ("Where is my order?", "help", KeywordKind.HELP),
        ("UNSTOP!", "opt_in", KeywordKind.OPT_IN),
        ("ARRET", None, KeywordKind.NONE),  # no reading: ours
        ("ARRET", "", KeywordKind.NONE),
        ("ARRET", "teleport", KeywordKind.NONE),  # a reading we do not know changes nothing
        ("please stop texting me", None, KeywordKind.OPT_OUT),  # ours stands alone
    ],
)
def test_a_provider_s_reading_wins_when_it_names_a_keyword(
    text: str, said: str | None, kind: KeywordKind
) -> None:
    assert with_provider_reading(classify(text), said, text).kind is kind


def test_a_provider_s_stop_is_exact_with_the_word_as_evidence() -> None:
    match = with_provider_reading(classify(" Arrêt! "), "opt_out", " Arrêt! ")
    assert (match.kind, match.keyword, match.exact) == (KeywordKind.OPT_OUT, "ARRET", True)


def test_an_agreeing_reading_keeps_ours() -> None:
    ours = classify("SÍ")  # a YES: an opt-in only where it answers a pending one
    assert with_provider_reading(ours, "opt_in", "SÍ") is ours
    baja = classify("BAJA")
    assert with_provider_reading(baja, "opt_out", "BAJA") is baja  # keeps its language


@given(st.text(max_size=60), st.sampled_from([None, "opt_out", "opt_in", "help", "none", "x"]))
def test_a_provider_s_reading_never_turns_a_keyword_into_nothing(
    text: str, said: str | None
) -> None:
    ours = classify(text)
    read = with_provider_reading(ours, said, text)
    assert read.kind is not KeywordKind.NONE or ours.kind is KeywordKind.NONE


# --- who may act on a keyword -------------------------------------------------------------------


@given(st.text(max_size=60))
def test_an_unproven_sender_may_do_anything_but_give_consent(text: str) -> None:
    match = classify(text)
    assert permitted(match, sender_proven=True).allowed
    assert permitted(match, sender_proven=False).allowed == (match.kind is not KeywordKind.OPT_IN)


def test_an_unproven_start_or_yes_is_refused_with_the_reason() -> None:
    for text in ("START", "YES", "alta", "sí"):
        verdict = permitted(classify(text), sender_proven=False)
        assert not verdict.allowed
        assert "never give" in verdict.reason
    assert permitted(classify("STOP"), sender_proven=False).allowed
    assert permitted(classify("please stop emailing me"), sender_proven=False).allowed
