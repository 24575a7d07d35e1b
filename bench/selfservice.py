"""Benchmark: does self-service answer what customers actually ask, end to end?

    .venv/bin/python -m bench.selfservice [--channel sms|webchat]
                                          [--choose mixed|number|words]
                                          [--db sqlite|postgresql] [--postgres-url URL]
                                          [--misses]

Every question of the held-out labelled set (bench/data/selfservice_questions.yaml: realistic
customer messages in Spanish and English, none of them in the training data or the KB) is sent
as an inbound message through the whole inbound path (`InboundProcessor.handle`: dedupe,
resolution, keywords, the configured brain built as the service builds it, the FAQ, the rasa-sdk
actions in-process, all stored), each from its own fresh customer whose marketing consent on the
channel is granted, on a fresh database with the demo data loaded. What the bot did is read from
`InboundResult.plan` and sorted into one outcome per question:

* right at once: the plan is one of the question's expected outcomes;
* choices, right among them: the bot offered options and one of them is right. The customer then
  answers with that option's number or its label as offered (by default half the customers
  each way: `--choose`), and whether that got the right answer is counted;
* choices, none right: counted apart, and printed beside the wrong answers (a customer offered
  only wrong options was not answered wrongly, but not helped either);
* handed to a person (when that is not what was expected); asked to rephrase;
* wrong: any other answer (an FAQ entry, an action, small talk, or a confirmation the question
  did not call for). For a question the bot has no answer to (off-topic, or about the shop but
  not in the KB), asking to rephrase or handing off is right and any answer is wrong.

A confirmation the question called for (an opt-out's "reply YES") is answered YES, as the
customer would. Each customer's consent state is compared before and after: a question that is
not an opt-out must never change it; opt-outs must end with marketing revoked. Printed: the
outcome mix per language and overall, per kind of question, the targets (issue #13) with
PASS/MISS, and the time per question (wall clock, and CPU per message, which holds on a busy
machine):

* right (at once, or after choosing the right one of the choices offered) >= 85% of the
  answerable questions (the share right at once is printed beside it);
* wrong <= 3% of all questions;
* consent changed by a question that is not an opt-out: 0;
* FAQ answers to off-topic questions ("what is the capital of Australia"): 0.

`--misses` lists every question not answered right, with what the bot did: for the benchmark's
owners only. The set is held out: whoever changes the training data or the KB tunes on the
printed figures, never on the questions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, get_args

import yaml  # type: ignore[import-untyped]
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.base import ChannelName, InboundMessage
from consent.ledger import DOUBLE_OPT_IN, record_consent
from consent.models import ConsentState
from consent.replies import Brand
from consent.types import Action, Channel, ConsentStatus, Purpose, Source
from crm_core.customers import upsert_customer
from crm_core.models import Identity, IdentityKind
from crm_core.records import parse_customer
from dialog.inbound import InboundProcessor
from dialog.turns import InboundResult
from sastre.config import load_settings
from sastre.db import database, migrate
from sastre.demo import load_demo_data
from sastre.dialogs import build_brain

__all__ = [
    "QUESTIONS_FILE",
    "Asked",
    "Outcome",
    "Question",
    "classify",
    "follow_up",
    "load_questions",
    "options",
    "right_option",
    "run",
]

QUESTIONS_FILE = Path(__file__).resolve().parent / "data" / "selfservice_questions.yaml"
LANGUAGES = ("es", "en")
KINDS = (
    "faq",
    "order",
    "callback",
    "preferences",
    "opt_out",
    "human",
    "complaint",
    "small_talk",
    "off_topic",
    "not_in_kb",
)
# The plan strings of the contract (dialog.turns.BotTurn.plan): a kind, and for most a detail.
PLAN_KINDS = ("faq", "action", "small_talk", "choices", "confirm", "handoff", "keyword")
CONFIRMATIONS = {"es": "SI", "en": "YES"}  # what a customer answers to "reply YES to confirm"
TARGET_RIGHT, TARGET_WRONG = 0.85, 0.03
# How customers answer choices: by the option's number, by its label (a web chat button sends
# the label), or half of them each way.
Choose = Literal["mixed", "number", "words"]


# --- the question set -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    language: str
    expected: frozenset[str]  # the right outcomes, as plan strings
    answerable: bool  # False: no answer is right, asking to rephrase or a person is
    opt_out: bool  # the customer withdraws marketing consent: may change it
    kind: str


def _plan_string(value: str) -> bool:
    kind, _, detail = value.partition(":")
    if value == "rephrase":
        return True
    return kind in PLAN_KINDS and kind != "choices" and bool(detail)


def load_questions(path: Path = QUESTIONS_FILE) -> list[Question]:
    """The labelled set; ValueError naming the first malformed item."""
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    found: list[Question] = []
    for n, item in enumerate(data["questions"], start=1):
        where = f"{path.name}: question {n}"
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise ValueError(f"{where}: needs a text")
        expected = item.get("expected")
        if not isinstance(expected, list) or not expected:
            raise ValueError(f"{where}: expected must be a non-empty list of plan strings")
        if not all(isinstance(e, str) and _plan_string(e) for e in expected):
            raise ValueError(f"{where}: {expected!r} is not a list of plan strings")
        flags = (item.get("answerable"), item.get("opt_out"))
        if not all(isinstance(flag, bool) for flag in flags):
            raise ValueError(f"{where}: answerable and opt_out must be true or false")
        if item.get("language") not in LANGUAGES or item.get("kind") not in KINDS:
            raise ValueError(f"{where}: language must be one of {LANGUAGES}, kind of {KINDS}")
        found.append(
            Question(
                item["text"],
                item["language"],
                frozenset(expected),
                item["answerable"],
                item["opt_out"],
                item["kind"],
            )
        )
    return found


# --- what a plan came to ------------------------------------------------------------------------


class Outcome(StrEnum):
    RIGHT = "right at once"
    CHOICES = "choices, right among them"
    CHOICES_WRONG = "choices, none right"
    HANDOFF = "handed to a person"
    REPHRASE = "asked to rephrase"
    WRONG = "wrong"
    NO_PLAN = "no plan (never put to the bot)"


def options(plan: str | None) -> tuple[str, ...]:
    """The options of a `choices:a|b|c` plan, in the order offered; () for any other plan."""
    if plan is None or not plan.startswith("choices:"):
        return ()
    return tuple(option for option in plan.removeprefix("choices:").split("|") if option)


def right_option(plan: str | None, expected: Iterable[str]) -> int | None:
    """The number (from 1, as offered) of the first right option of a choices plan, if any."""
    wanted = set(expected)
    for number, option in enumerate(options(plan), start=1):
        if option in wanted:
            return number
    return None


def follow_up(
    plan: str | None, labels: Sequence[str], question: Question, *, words: bool
) -> str | None:
    """Pure: what the customer answers next, if anything. To choices that include a right one,
    its number (or with `words`, its label as offered); to a confirmation the question called
    for (an opt-out's), YES or SÍ. Nothing to anything else: a customer asked to confirm what
    they did not ask for does not confirm it."""
    number = right_option(plan, question.expected)
    if number is not None:
        return labels[number - 1] if words and len(labels) >= number else str(number)
    if plan is not None and plan.startswith("confirm:") and plan in question.expected:
        return CONFIRMATIONS[question.language]
    return None


def classify(plan: str | None, question: Question) -> Outcome:
    """Pure: what the bot's plan for `question` came to."""
    if plan is None:
        return Outcome.NO_PLAN
    if plan in question.expected:
        return Outcome.RIGHT
    if plan.startswith("choices:"):
        found = right_option(plan, question.expected)
        return Outcome.CHOICES if found is not None else Outcome.CHOICES_WRONG
    if plan.startswith("handoff:"):
        return Outcome.HANDOFF
    if plan == "rephrase":
        return Outcome.REPHRASE
    return Outcome.WRONG


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asked:
    """One question put to the bot, and what came of it."""

    question: Question
    plan: str | None
    outcome: Outcome
    seconds: float  # the wall time of the question's own message
    chosen_plan: str | None = None  # after answering the right option's number, if offered
    consent_changed: bool = False
    revoked: bool = False  # marketing on the channel ended revoked

    @property
    def chose_right(self) -> bool:
        return self.outcome is Outcome.CHOICES and self.chosen_plan in self.question.expected

    @property
    def right_in_the_end(self) -> bool:
        return self.outcome is Outcome.RIGHT or self.chose_right

    @property
    def off_topic_faq(self) -> bool:
        return self.question.kind == "off_topic" and (self.plan or "").startswith("faq:")


ConsentRows = dict[int, frozenset[tuple[str, str, str, str]]]
CONSENT_CHANNELS = {ChannelName.SMS: Channel.SMS, ChannelName.WEBCHAT: Channel.WEBCHAT}


def _address(channel: ChannelName, question: Question, n: int) -> str:
    """A fresh sender per question: a Spanish or US mobile number, or a web visitor id."""
    if channel is ChannelName.WEBCHAT:
        return f"bench-visitor-{n:05d}"
    return f"+34622{n:06d}" if question.language == "es" else f"+1646{3_000_000 + n:07d}"


async def _customers(
    session: AsyncSession, channel: ChannelName, questions: Sequence[Question]
) -> list[int]:
    """One customer per question, whose marketing consent on `channel` is granted (and
    confirmed where the law asks for double opt-in). No language: the bot reads it."""
    ids: list[int] = []
    consent_channel = CONSENT_CHANNELS[channel]
    for n, question in enumerate(questions):
        fields: dict[str, Any] = {"external_id": f"bench-selfservice-{n:05d}", "name": f"Q {n}"}
        if channel is ChannelName.SMS:
            fields["phone"] = _address(channel, question, n)
        customer, _ = await upsert_customer(session, parse_customer(fields, "US"))
        if channel is ChannelName.WEBCHAT:
            session.add(
                Identity(
                    customer_id=customer.id,
                    kind=IdentityKind.WEBCHAT.value,
                    value=_address(channel, question, n),
                )
            )
        confirmed = (consent_channel, Purpose.MARKETING) in DOUBLE_OPT_IN
        for action in (Action.GRANT, Action.CONFIRM) if confirmed else (Action.GRANT,):
            await record_consent(
                session,
                customer.id,
                consent_channel,
                Purpose.MARKETING,
                action,
                Source.WEB_FORM,
                actor="bench",
                evidence={"form": "bench.selfservice"},
            )
        ids.append(customer.id)
    return ids


async def _consents(session: AsyncSession, ids: Sequence[int]) -> ConsentRows:
    rows: dict[int, set[tuple[str, str, str, str]]] = {n: set() for n in ids}
    for start in range(0, len(ids), 500):
        found = await session.execute(
            select(
                ConsentState.customer_id,
                ConsentState.channel,
                ConsentState.purpose,
                ConsentState.topic,
                ConsentState.status,
            ).where(ConsentState.customer_id.in_(ids[start : start + 500]))
        )
        for customer_id, *state in found:
            rows[customer_id].add((state[0], state[1], state[2], state[3]))
    return {n: frozenset(state) for n, state in rows.items()}


def _revoked(rows: frozenset[tuple[str, str, str, str]], channel: Channel) -> bool:
    marketing = (channel.value, Purpose.MARKETING.value, "")
    return any(row[:3] == marketing and row[3] == ConsentStatus.REVOKED.value for row in rows)


def _message(channel: ChannelName, address: str, text: str, sid: str) -> InboundMessage:
    # The web chat proves its visitor (a signed id); an SMS sender is who the carrier says.
    verified = channel is ChannelName.WEBCHAT
    return InboundMessage(channel, address, text, f"bench-{sid}", verified=verified)


async def _ask_all(
    processor: InboundProcessor,
    channel: ChannelName,
    questions: Sequence[Question],
    *,
    choose: Choose,
) -> tuple[list[tuple[Question, InboundResult, float, str | None]], int, float]:
    """Each question from its own customer, then the answer a customer gives to choices or to a
    confirmation (`follow_up`) where one is due. Returns
    (question, first result, its seconds, the follow-up's plan), the messages sent and the CPU
    seconds they cost."""
    done: list[tuple[Question, InboundResult, float, str | None]] = []
    sent = 0
    cpu = time.process_time()
    for n, question in enumerate(questions):
        address = _address(channel, question, n)
        started = time.perf_counter()
        result = await processor.handle(_message(channel, address, question.text, f"{n}-0"))
        seconds = time.perf_counter() - started
        sent += 1
        labels = next((reply.choices for reply in result.replies if reply.choices), ())
        words = choose == "words" or (choose == "mixed" and n % 2 == 1)
        answer = follow_up(result.plan, labels, question, words=words)
        chosen = None
        if answer is not None:
            chosen = (await processor.handle(_message(channel, address, answer, f"{n}-1"))).plan
            sent += 1
        done.append((question, result, seconds, chosen))
    return done, sent, time.process_time() - cpu


async def run(
    name: str,
    url: str,
    channel: ChannelName,
    questions: Sequence[Question],
    *,
    customers: int,
    choose: Choose,
) -> list[Asked]:
    """Put `questions` to the bot on a fresh database at `url` (migrated here), print the
    figures under the heading `name`, and return what came of each question."""
    await migrate(url)
    settings = load_settings(_env_file=None, database_url=url, secret_key="bench-secret-0123456789")
    async with AsyncExitStack() as stack:
        _, sessionmaker = await stack.enter_async_context(database(url))
        async with sessionmaker.begin() as session:
            await load_demo_data(session, customers=customers)
            ids = await _customers(session, channel, questions)
        async with sessionmaker() as session:
            before = await _consents(session, ids)
        started = time.perf_counter()
        brain = await build_brain(settings, sessionmaker, stack)
        print(f"--- {name}: bot built in {time.perf_counter() - started:.2f} s")
        processor = InboundProcessor(
            sessionmaker,
            brain,
            default_region="US",
            default_language="en",
            default_timezone="UTC",
            brand=Brand("Sastre", "support@example.com"),
        )
        await _warm_up(processor, sessionmaker)
        done, sent, cpu = await _ask_all(processor, channel, questions, choose=choose)
        await processor.drained()
        async with sessionmaker() as session:
            after = await _consents(session, ids)
    consent_channel = CONSENT_CHANNELS[channel]
    asked = [
        Asked(
            question,
            result.plan,
            classify(result.plan, question),
            seconds,
            chosen,
            before[customer] != after[customer],
            _revoked(after[customer], consent_channel),
        )
        for customer, (question, result, seconds, chosen) in zip(ids, done, strict=True)
    ]
    _report(asked, sent, cpu)
    return asked


async def _warm_up(
    processor: InboundProcessor, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """One message from a demo customer first: the FAQ index is built on the first question."""
    async with sessionmaker() as session:
        phone = await session.scalar(
            select(Identity.value).where(Identity.kind == IdentityKind.PHONE.value).limit(1)
        )
    if phone is not None:
        await processor.handle(InboundMessage(ChannelName.SMS, phone, "hola", "bench-warm-up"))


# --- the figures --------------------------------------------------------------------------------


def _share(count: int, total: int) -> str:
    return f"{count:4d} {count / total:6.1%}" if total else f"{count:4d}     - "


def _mix(asked: Sequence[Asked], groups: Mapping[str, Sequence[Asked]]) -> None:
    width = 30
    print(f"{'':{width}}" + "".join(f"{label:>13}" for label in groups))
    print(f"{'questions':{width}}" + "".join(f"{len(group):13d}" for group in groups.values()))
    for outcome in Outcome:
        if outcome is Outcome.NO_PLAN and not any(a.outcome is outcome for a in asked):
            continue
        cells = [
            _share(sum(a.outcome is outcome for a in group), len(group))
            for group in groups.values()
        ]
        print(f"{outcome.value:{width}}" + "".join(f"{cell:>13}" for cell in cells))
    lines: dict[str, Callable[[Sequence[Asked]], int]] = {
        "  of which right after choosing": lambda g: sum(a.chose_right for a in g),
        "consent changed, not opt-out": lambda g: sum(
            a.consent_changed and not a.question.opt_out for a in g
        ),
    }
    for label, count in lines.items():
        cells = [_share(count(group), len(group)) for group in groups.values()]
        print(f"{label:{width}}" + "".join(f"{cell:>13}" for cell in cells))
    answerable = {
        label: [a for a in group if a.question.answerable] for label, group in groups.items()
    }
    cells = [
        _share(sum(a.right_in_the_end for a in group), len(group)) for group in answerable.values()
    ]
    print(f"{'right in the end, answerable':{width}}" + "".join(f"{c:>13}" for c in cells))


def _report(asked: Sequence[Asked], sent: int, cpu: float) -> None:
    groups: dict[str, Sequence[Asked]] = {
        language: [a for a in asked if a.question.language == language] for language in LANGUAGES
    }
    groups["all"] = asked
    _mix(asked, groups)
    print("by kind (right in the end / choices none right / person / rephrase / wrong):")
    for kind in KINDS:
        group = [a for a in asked if a.question.kind == kind]
        if not group:
            continue
        counts = Counter(a.outcome for a in group)
        print(
            f"  {kind:<12} {len(group):4d}: "
            f"{sum(a.right_in_the_end for a in group) / len(group):6.1%}"
            f"  {counts[Outcome.CHOICES_WRONG]:3d}  {counts[Outcome.HANDOFF]:3d}"
            f"  {counts[Outcome.REPHRASE]:3d}  {counts[Outcome.WRONG]:3d}"
        )
    opt_outs = [a for a in asked if a.question.opt_out]
    told = sum(not a.revoked and a.plan == "faq:unsubscribe" for a in opt_outs)
    print(
        f"opt-outs honoured (marketing revoked, after a YES where asked): "
        f"{sum(a.revoked for a in opt_outs)} of {len(opt_outs)}"
        + (f"; {told} more told how to unsubscribe" if told else "")
    )
    answerable = [a for a in asked if a.question.answerable]
    right = sum(a.right_in_the_end for a in answerable) / len(answerable)
    at_once = sum(a.outcome is Outcome.RIGHT for a in answerable) / len(answerable)
    wrong = sum(a.outcome is Outcome.WRONG for a in asked) / len(asked)
    changed = sum(a.consent_changed and not a.question.opt_out for a in asked)
    off_topic = sum(a.off_topic_faq for a in asked)
    off_topics = [a for a in asked if a.question.kind == "off_topic"]
    off_topic_choices = sum(a.outcome is Outcome.CHOICES_WRONG for a in off_topics)
    wrong_choices = sum(a.outcome is Outcome.CHOICES_WRONG for a in asked) / len(asked)
    print("targets:")
    print(
        f"  right >= {TARGET_RIGHT:.0%} of answerable (at once or after one choice): "
        f"{right:.1%} (at once {at_once:.1%})  {_verdict(right >= TARGET_RIGHT)}"
    )
    print(
        f"  wrong <= {TARGET_WRONG:.0%} of all questions: {wrong:.1%}  "
        f"{_verdict(wrong <= TARGET_WRONG)}  (besides, {wrong_choices:.1%} were offered only "
        "wrong choices)"
    )
    print(f"  consent changed by a non-opt-out: {changed}  {_verdict(changed == 0)}")
    print(
        f"  off-topic questions answered from the FAQ: {off_topic}  {_verdict(off_topic == 0)}  "
        f"(besides, {off_topic_choices} of {len(off_topics)} were offered FAQ choices)"
    )
    ordered = sorted(a.seconds for a in asked)
    p99 = ordered[min(math.ceil(len(ordered) * 0.99), len(ordered)) - 1]
    print(
        f"time per question (its first message, one at a time): mean "
        f"{statistics.mean(ordered) * 1000:.1f} ms, "
        f"p50 {ordered[len(ordered) // 2] * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms; CPU {cpu / sent * 1000:.2f} ms per message ({sent} messages, "
        f"follow-ups included); machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _misses(asked: Sequence[Asked]) -> None:
    print("misses (held out: for the benchmark's owners only):")
    for a in asked:
        if a.right_in_the_end and not (a.consent_changed and not a.question.opt_out):
            continue
        q = a.question
        note = " CONSENT CHANGED" if a.consent_changed and not q.opt_out else ""
        chosen = f" -> chose -> {a.chosen_plan}" if a.chosen_plan is not None else ""
        print(
            f"  [{a.outcome.value}]{note} {q.language} {q.kind}: {q.text!r}\n"
            f"      got {a.plan}{chosen}; expected {' or '.join(sorted(q.expected))}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.selfservice",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--channel", choices=("sms", "webchat"), default="sms")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", help="postgresql+asyncpg URL of an EMPTY database")
    parser.add_argument("--customers", type=int, default=50, help="demo customers loaded beside")
    parser.add_argument("--questions", type=Path, default=QUESTIONS_FILE)
    parser.add_argument(
        "--choose",
        choices=get_args(Choose),
        default="mixed",
        help="how customers answer choices: the option's number, its label, or half each way",
    )
    parser.add_argument("--misses", action="store_true", help="list what was not answered right")
    args = parser.parse_args(argv)
    questions = load_questions(args.questions)
    channel = ChannelName(args.channel)
    with contextlib.ExitStack() as stack:
        if args.db == "sqlite":
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sastre-self-")))
            url = f"sqlite+aiosqlite:///{tmp / 'selfservice.db'}"
        elif args.postgres_url:
            url = args.postgres_url
        else:
            from tests.support.servers import postgres_server

            url = stack.enter_context(postgres_server())
        asked = asyncio.run(
            run(
                f"{args.db}, {channel.value}: {len(questions)} questions, a fresh customer each",
                url,
                channel,
                questions,
                customers=args.customers,
                choose=args.choose,
            )
        )
    if args.misses:
        _misses(asked)


if __name__ == "__main__":
    main()
