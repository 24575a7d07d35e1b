"""A real Rasa server through its REST channel, played by a local fake in Rasa's own format; and
the Rasa project in deploy/rasa held to the actions it calls."""

from __future__ import annotations

import ast
import importlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml  # type: ignore[import-untyped]
from aiohttp import web
from aiohttp.test_utils import TestServer

from actions.awaiting import AWAITING_SLOT, Awaiting
from actions.opt_out import is_confirmation, is_decline
from actions.runner import ACTIONS, SLOTS
from crm_core.models import Customer
from dialog.models import Conversation
from dialog.rasa import RasaRestBrain
from dialog.turns import Turn

Answer = list[dict[str, Any]]


class FakeRasa:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answer: Answer = []
        self.status = 200

    async def webhook(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.json_response(self.answer, status=self.status)


@pytest.fixture
async def rasa() -> AsyncIterator[tuple[FakeRasa, str]]:
    fake = FakeRasa()
    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", fake.webhook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/"))
    await server.close()


def turn(text: str) -> Turn:
    customer = Customer(id=7, tier="CMV", language="es", name="Ana")
    conversation = Conversation(id=1, customer_id=7, channel="sms", address="+34612345678")
    return Turn(customer, conversation, text, "es", "Europe/Madrid", None)  # type: ignore[arg-type]


async def test_text_goes_to_the_rest_channel_and_replies_come_back(
    rasa: tuple[FakeRasa, str],
) -> None:
    fake, url = rasa
    fake.answer = [
        {"recipient_id": "7", "text": "¡Hola Ana!"},
        {"recipient_id": "7", "text": "¿Qué tal?"},
    ]
    async with aiohttp.ClientSession() as http:
        decided = await RasaRestBrain(url, http).ask(turn("hola"))
    assert decided.replies == ["¡Hola Ana!", "¿Qué tal?"]
    assert decided.handoff is None
    assert fake.received == [
        {
            "sender": "7",
            "message": "hola",
            "metadata": {
                "language": "es",
                "timezone": "Europe/Madrid",
                "channel": "sms",
                "tier": "CMV",
                "sender_proven": True,
            },
        }
    ]


async def test_a_handoff_custom_payload_hands_off(rasa: tuple[FakeRasa, str]) -> None:
    fake, url = rasa
    fake.answer = [
        {"recipient_id": "7", "text": "Te paso con una persona."},
        {"recipient_id": "7", "custom": {"handoff": "customer_asked"}},
    ]
    async with aiohttp.ClientSession() as http:
        decided = await RasaRestBrain(url, http).ask(turn("un humano"))
    assert decided.handoff == "customer_asked"


async def test_when_rasa_fails_a_person_takes_over(rasa: tuple[FakeRasa, str]) -> None:
    fake, url = rasa
    fake.status = 500
    async with aiohttp.ClientSession() as http:
        decided = await RasaRestBrain(url, http).ask(turn("hola"))
    assert decided.handoff == "bot_unavailable"
    assert decided.replies == ["Te paso con una persona de nuestro equipo; en breve te atenderá."]


async def test_when_rasa_is_unreachable_a_person_takes_over() -> None:
    async with aiohttp.ClientSession() as http:
        brain = RasaRestBrain("http://127.0.0.1:9", http, timeout=1)
        decided = await brain.ask(turn("hola"))
    assert decided.handoff == "bot_unavailable"


# --- deploy/rasa agrees with the actions ----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
RASA = ROOT / "deploy" / "rasa"


def _load(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((RASA / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _slot_names_in(module: str) -> set[str]:
    """Every slot name a module's actions set: `SlotSet("name", ...)` or `SlotSet(CONSTANT, ...)`
    read from the source. A name only known at run time (action_customer_profile sets the slots
    of a dict) counts every string key of the module's dict literals."""
    path = ROOT / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    loaded = importlib.import_module(module)
    names: set[str] = set()
    dynamic = False
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "SlotSet"):
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
        elif isinstance(first, ast.Name) and isinstance(getattr(loaded, first.id, None), str):
            names.add(getattr(loaded, first.id))
        else:
            dynamic = True
    if dynamic:
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                names.update(
                    k.value
                    for k in node.keys
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)
                )
    return names


def _slots_set_by_actions() -> dict[str, set[str]]:
    modules = sorted(p.stem for p in (ROOT / "actions").glob("*.py") if p.stem != "__init__")
    return {module: _slot_names_in(f"actions.{module}") for module in modules}


def test_every_slot_an_action_sets_is_declared_in_the_domain() -> None:
    declared = set(_load("domain.yml")["slots"])
    set_by = _slots_set_by_actions()
    assert set_by["opt_out"] >= {AWAITING_SLOT, "opt_out_request"}  # the reading finds them
    assert set_by["profile"] >= {"customer_name", "tier"}
    missing = {module: names - declared for module, names in set_by.items() if names - declared}
    assert missing == {}
    assert set(SLOTS) <= declared  # and every slot the embedded runner passes on


def test_every_action_the_embedded_runner_knows_is_in_the_domain() -> None:
    domain = _load("domain.yml")
    assert sorted(domain["actions"]) == sorted(action().name() for action in ACTIONS)
    for name, slot in domain["slots"].items():
        for mapping in slot["mappings"]:
            if "action" in mapping:  # a custom mapping names the action that sets the slot
                assert mapping["action"] in domain["actions"], name


def test_the_rules_name_only_what_the_domain_declares() -> None:
    domain, nlu = _load("domain.yml"), _load("data/nlu.yml")
    intents = set(domain["intents"])
    assert {item["intent"] for item in nlu["nlu"] if "intent" in item} == intents
    doable = set(domain["actions"]) | set(domain["responses"])
    for rule in _load("data/rules.yml")["rules"]:
        for step in rule["steps"]:
            if "intent" in step:
                assert step["intent"] in intents | {"nlu_fallback"}, rule["rule"]
            if "action" in step:
                assert step["action"] in doable, rule["rule"]


def test_every_question_an_action_asks_gets_its_answer_back() -> None:
    """The `awaiting` slot steers the rules (it is featurized, with one value per question),
    and for each question a rule with that value as its condition runs the action that asked."""
    slot = _load("domain.yml")["slots"][AWAITING_SLOT]
    assert slot["type"] == "categorical"
    assert slot["influence_conversation"] is True
    assert set(slot["values"]) == {question.value for question in Awaiting}
    answered: dict[str, set[str]] = {}
    for rule in _load("data/rules.yml")["rules"]:
        for condition in rule.get("condition", []):
            for slot_set in condition.get("slot_was_set", []):
                if AWAITING_SLOT in slot_set:
                    actions = {step["action"] for step in rule["steps"] if "action" in step}
                    answered.setdefault(slot_set[AWAITING_SLOT], set()).update(actions)
    assert answered == {question.value: {question.action} for question in Awaiting}


# The answers that settle "stop marketing messages…? Reply YES", by intent, with what
# action_opt_out itself reads as that answer: the embedded dialog gives exactly these back.
OPT_OUT_ANSWERS = {"affirm": is_confirmation, "deny": is_decline}


def _examples(intent: str) -> list[str]:
    [item] = [item for item in _load("data/nlu.yml")["nlu"] if item.get("intent") == intent]
    return [line.removeprefix("- ") for line in item["examples"].splitlines() if line.strip()]


def test_a_yes_and_a_no_after_the_opt_out_question_both_go_back_to_it() -> None:
    """Without the NO's rule, "no gracias" left the question open with a real Rasa; with it,
    action_opt_out says that nothing changes and clears it, as in the embedded dialog."""
    question = Awaiting.OPT_OUT_CONFIRMATION
    given_back: set[str] = set()
    unasked: set[str] = set()
    for rule in _load("data/rules.yml")["rules"]:
        intents = [step["intent"] for step in rule["steps"] if "intent" in step]
        actions = [step["action"] for step in rule["steps"] if "action" in step]
        awaited = [
            slot_set[AWAITING_SLOT]
            for condition in rule.get("condition", [])
            for slot_set in condition.get("slot_was_set", [])
            if AWAITING_SLOT in slot_set
        ]
        if awaited == [question.value] and actions == [question.action]:
            given_back.update(intents)
        elif not awaited and set(intents) & set(OPT_OUT_ANSWERS):
            assert actions == ["utter_default"], rule["rule"]  # nothing asked: not understood
            unasked.update(intents)
    assert given_back >= set(OPT_OUT_ANSWERS)
    assert unasked == set(OPT_OUT_ANSWERS)


@pytest.mark.parametrize("intent", sorted(OPT_OUT_ANSWERS))
def test_every_example_of_a_yes_or_a_no_is_one_to_the_action(intent: str) -> None:
    """What the model learns as YES / NO is what action_opt_out takes as the answer: an example
    it did not would have it ask the same question again."""
    examples = _examples(intent)
    assert examples
    assert [text for text in examples if not OPT_OUT_ANSWERS[intent](text)] == []
