"""How well and how fast the embedded language understanding reads customers.

    .venv/bin/python -m bench.nlu_accuracy [--repeat 5] [--threshold 0.45]

Runs `dialog.nlu.EmbeddedUnderstander` (trained on dialog/data/nlu.yaml) over the held-out test
set in tests/dialog/data/nlu_test.yaml and prints the intent accuracy overall, per language and
per intent, the language-detection accuracy, the worst confusions with examples, how many answers
clear the dialog's confidence threshold and how often those are right, and the latency of
``understand()`` (mean and p99) for messages without and with dates. Target: intent accuracy of
at least 90%.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml  # type: ignore[import-untyped]

from dialog.nlu import EmbeddedUnderstander, Understander

__all__ = ["TEST_SET", "Labelled", "Outcome", "Report", "evaluate", "load_test_set", "main"]

TEST_SET = Path(__file__).resolve().parent.parent / "tests" / "dialog" / "data" / "nlu_test.yaml"
TARGET = 0.90
# Messages with dates and times: the slower path (regexes, and dateparser for calendar dates).
DATED = (
    "llámenme mañana a las 10",
    "call me tomorrow after 5pm",
    "¿me podéis llamar el lunes por la tarde?",
    "call me next Friday at 9:30",
    "llamadme el 3 de junio a las 9:15",
    "could you ring me on March 15th at 10am",
    "que me llamen dentro de media hora",
    "call me tonight after 8",
    "mi pedido 10234 salió el lunes pasado, ¿cuándo llega?",
    "order A-10234 was placed 3 days ago",
)


@dataclass(frozen=True, slots=True)
class Labelled:
    text: str
    intent: str
    language: str


@dataclass(frozen=True, slots=True)
class Outcome:
    item: Labelled
    intent: str
    confidence: float
    language: str

    @property
    def right(self) -> bool:
        return self.intent == self.item.intent


@dataclass(frozen=True, slots=True)
class Report:
    outcomes: tuple[Outcome, ...]

    @property
    def accuracy(self) -> float:
        return _share(self.outcomes, lambda o: o.right)

    @property
    def language_accuracy(self) -> float:
        return _share(self.outcomes, lambda o: o.language == o.item.language)

    def accuracy_by(self, key: Callable[[Labelled], str]) -> dict[str, tuple[int, int]]:
        """{group: (right, total)} for the groups `key` makes of the test items."""
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for outcome in self.outcomes:
            group = totals[key(outcome.item)]
            group[0] += outcome.right
            group[1] += 1
        return {name: (right, total) for name, (right, total) in sorted(totals.items())}

    def confusions(self) -> list[tuple[tuple[str, str], list[Outcome]]]:
        """(expected, guessed) pairs with their mistakes, the most frequent first."""
        mistakes: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
        for outcome in self.outcomes:
            if not outcome.right:
                mistakes[outcome.item.intent, outcome.intent].append(outcome)
        return sorted(mistakes.items(), key=lambda pair: (-len(pair[1]), pair[0]))


def _share(outcomes: Sequence[Outcome], test: Callable[[Outcome], bool]) -> float:
    return sum(map(test, outcomes)) / len(outcomes) if outcomes else 0.0


def load_test_set(path: Path = TEST_SET) -> list[Labelled]:
    items = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of {{text, intent, language}}")
    return [Labelled(str(i["text"]), str(i["intent"]), str(i["language"])) for i in items]


def evaluate(understander: Understander, items: Sequence[Labelled]) -> Report:
    outcomes = []
    for item in items:
        understood = understander.understand(item.text)
        outcomes.append(
            Outcome(item, understood.intent, understood.confidence, understood.language)
        )
    return Report(tuple(outcomes))


def _latencies(understander: Understander, texts: Sequence[str], repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        for text in texts:
            start = time.perf_counter()
            understander.understand(text, timezone="Europe/Madrid")
            seconds.append(time.perf_counter() - start)
    return sorted(seconds)


def _latency_line(label: str, seconds: Sequence[float]) -> str:
    p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
    return (
        f"  {label:<22} mean {statistics.fmean(seconds) * 1e6:7.1f} µs   "
        f"p99 {p99 * 1e6:7.1f} µs   ({len(seconds)} calls)"
    )


def _percent(right: int, total: int) -> str:
    return f"{right / total:6.1%}  ({right}/{total})" if total else "     -"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--test-set", type=Path, default=TEST_SET)
    parser.add_argument("--repeat", type=int, default=5, help="latency rounds over the test set")
    parser.add_argument(
        "--threshold", type=float, default=0.45, help="the dialog's intent confidence threshold"
    )
    args = parser.parse_args(argv)

    items = load_test_set(args.test_set)
    start = time.perf_counter()
    understander = EmbeddedUnderstander()
    built = time.perf_counter() - start
    start = time.perf_counter()
    EmbeddedUnderstander()
    rebuilt = time.perf_counter() - start
    report = evaluate(understander, items)

    print(f"held-out test set: {len(items)} utterances ({args.test_set.name})")
    print(
        f"training: {built * 1e3:.0f} ms (first, with dateparser warm-up), {rebuilt * 1e3:.0f} ms"
    )
    print()
    right = sum(o.right for o in report.outcomes)
    verdict = "meets" if report.accuracy >= TARGET else "BELOW"
    print(f"intent accuracy   {_percent(right, len(items))}   {verdict} the {TARGET:.0%} target")
    for language, (r, t) in report.accuracy_by(lambda i: i.language).items():
        print(f"  {language:<20} {_percent(r, t)}")
    print("per intent")
    for intent, (r, t) in report.accuracy_by(lambda i: i.intent).items():
        print(f"  {intent:<20} {_percent(r, t)}")
    language_right = sum(o.language == o.item.language for o in report.outcomes)
    print(f"language detection {_percent(language_right, len(items))}")
    for outcome in report.outcomes:
        if outcome.language != outcome.item.language:
            print(f"    {outcome.item.text!r}: {outcome.language}, not {outcome.item.language}")

    confident = [o for o in report.outcomes if o.confidence >= args.threshold]
    confident_right = sum(o.right for o in confident)
    print(
        f"confidence >= {args.threshold:.2f}: {_percent(len(confident), len(items))} of answers, "
        f"right {_percent(confident_right, len(confident))}"
    )
    print(
        "mean confidence   right "
        f"{statistics.fmean(o.confidence for o in report.outcomes if o.right):.2f}, wrong "
        f"{statistics.fmean([o.confidence for o in report.outcomes if not o.right] or [0.0]):.2f}"
    )

    print("worst confusions (expected -> guessed)")
    for (expected, guessed), mistakes in report.confusions()[:10]:
        print(f"  {expected} -> {guessed}: {len(mistakes)}")
        for outcome in mistakes[:3]:
            print(f"      {outcome.item.text!r} ({outcome.confidence:.2f})")
    if not report.confusions():
        print("  none")

    print("latency of understand()")
    texts = [item.text for item in items]
    plain = [t for t in texts if not understander.understand(t).entities]
    print(_latency_line("without entities", _latencies(understander, plain, args.repeat)))
    print(_latency_line("with dates", _latencies(understander, DATED, args.repeat * 20)))
    print(_latency_line("whole test set", _latencies(understander, texts, args.repeat)))
    return 0 if report.accuracy >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
