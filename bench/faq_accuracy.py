"""Issue #4: how well does the FAQ knowledge base answer questions it has never seen, and how fast?

    .venv/bin/python -m bench.faq_accuracy [--threshold T] [--sweep] [--errors]

Matches every question of the held-out set (tests/dialog/data/faq_test.yaml) against the shipped
KB (dialog/data/faq.yaml) with the default matcher and prints, per language and overall:

* top-1 / top-3 accuracy over the answerable questions (target: top-1 >= 85%);
* confident: the share of answerable questions answered with confidence (score >= threshold);
* confident precision: of all confident answers, answerable or not, the share that are right —
  a wrong confident answer is worse than a hand-off, so this should stay close to 100%;
* false confident: the share of questions the KB cannot answer that still got a confident answer;
* the latency of `FaqIndex.match` (mean and p99 over many calls).

`--sweep` prints those rates for a range of thresholds (how DEFAULT_THRESHOLD was chosen) and
`--errors` lists every miss and every false confident answer, to see which variants are lacking.
Improve the KB's variants with other wordings of the same intent; never copy a test question.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml  # type: ignore[import-untyped]

from dialog.faq import DEFAULT_THRESHOLD, LANGUAGES, FaqIndex, load_faq_file

__all__ = ["KB_FILE", "TEST_FILE", "Labelled", "Scores", "evaluate", "load_labelled"]

ROOT = Path(__file__).resolve().parent.parent
KB_FILE = ROOT / "dialog" / "data" / "faq.yaml"
TEST_FILE = ROOT / "tests" / "dialog" / "data" / "faq_test.yaml"


@dataclass(frozen=True, slots=True)
class Labelled:
    text: str
    language: str
    expected: str | None  # the entry id that answers it; None: the KB has no answer


@dataclass(frozen=True, slots=True)
class Scores:
    answerable: int
    unanswerable: int
    top1: int
    top3: int
    confident: int  # answerable questions answered confidently (right or wrong)
    confident_right: int
    false_confident: int  # unanswerable questions answered confidently
    misses: tuple[tuple[Labelled, str | None, float], ...]  # (question, best id, its score)

    @property
    def top1_rate(self) -> float:
        return self.top1 / self.answerable if self.answerable else 0.0

    @property
    def top3_rate(self) -> float:
        return self.top3 / self.answerable if self.answerable else 0.0

    @property
    def confident_rate(self) -> float:
        return self.confident / self.answerable if self.answerable else 0.0

    @property
    def confident_precision(self) -> float:
        given = self.confident + self.false_confident
        return self.confident_right / given if given else 1.0

    @property
    def false_confident_rate(self) -> float:
        return self.false_confident / self.unanswerable if self.unanswerable else 0.0


def load_labelled(path: Path = TEST_FILE) -> list[Labelled]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    questions = []
    for i, item in enumerate(data["questions"]):
        if item["language"] not in LANGUAGES:
            raise ValueError(f"{path}: question {i}: unknown language {item['language']!r}")
        questions.append(Labelled(str(item["text"]), item["language"], item["expected"]))
    return questions


def evaluate(index: FaqIndex, questions: Sequence[Labelled]) -> Scores:
    answerable = unanswerable = top1 = top3 = confident = right = false_confident = 0
    misses: list[tuple[Labelled, str | None, float]] = []
    for question in questions:
        best = index.top(question.text, question.language, k=3)
        first = best[0] if best else None
        sure = first is not None and first.confident
        got = first.entry.id if first is not None else None
        score = first.score if first is not None else 0.0
        if question.expected is None:
            unanswerable += 1
            false_confident += sure
            if sure:
                misses.append((question, got, score))
            continue
        answerable += 1
        top1 += got == question.expected
        top3 += question.expected in {m.entry.id for m in best}
        confident += sure
        right += sure and got == question.expected
        if got != question.expected:
            misses.append((question, got, score))
    return Scores(
        answerable, unanswerable, top1, top3, confident, right, false_confident, tuple(misses)
    )


def _latency(index: FaqIndex, questions: Sequence[Labelled], rounds: int) -> list[float]:
    timings = []
    for _ in range(rounds):
        for question in questions:
            start = time.perf_counter()
            index.match(question.text, question.language)
            timings.append(time.perf_counter() - start)
    return timings


def _row(label: str, s: Scores) -> str:
    return (
        f"{label:<6}{s.answerable:>6}{s.top1_rate:>9.1%}{s.top3_rate:>9.1%}{s.confident_rate:>11.1%}"
        f"{s.confident_precision:>12.1%}{s.unanswerable:>8}{s.false_confident_rate:>11.1%}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kb", type=Path, default=KB_FILE)
    parser.add_argument("--test", type=Path, default=TEST_FILE)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--sweep", action="store_true", help="rates for a range of thresholds")
    parser.add_argument("--errors", action="store_true", help="list misses and false confidents")
    parser.add_argument("--rounds", type=int, default=20, help="latency: passes over the set")
    args = parser.parse_args(argv)

    entries = load_faq_file(args.kb)
    questions = load_labelled(args.test)
    start = time.perf_counter()
    index = FaqIndex(entries, threshold=args.threshold)
    build = time.perf_counter() - start
    variants = sum(len(qs) for e in entries for qs in e.questions.values())
    print(
        f"KB {args.kb.name}: {len(entries)} entries, {variants} question variants "
        f"(index built in {build * 1000:.0f} ms); held-out set {args.test.name}: "
        f"{len(questions)} questions; threshold {args.threshold:.2f}"
    )
    print()
    print(
        f"{'lang':<6}{'answ.':>6}{'top-1':>9}{'top-3':>9}{'confident':>11}{'conf.prec.':>12}"
        f"{'unansw.':>8}{'false conf.':>11}"
    )
    for language in LANGUAGES:
        print(_row(language, evaluate(index, [q for q in questions if q.language == language])))
    overall = evaluate(index, questions)
    print(_row("all", overall))
    verdict = "met" if overall.top1_rate >= 0.85 else "NOT met"
    print(f"\ntarget top-1 >= 85%: {verdict}")

    timings = _latency(index, questions, args.rounds)
    timings.sort()
    p99 = timings[int(len(timings) * 0.99)]
    print(
        f"match latency over {len(timings)} calls: mean {statistics.fmean(timings) * 1e3:.3f} ms, "
        f"p99 {p99 * 1e3:.3f} ms"
    )

    if args.sweep:
        print(f"\n{'threshold':>9}{'confident':>11}{'conf.prec.':>12}{'false conf.':>12}")
        for step in range(20, 71, 2):
            threshold = step / 100
            s = evaluate(FaqIndex(entries, threshold=threshold), questions)
            print(
                f"{threshold:>9.2f}{s.confident_rate:>11.1%}{s.confident_precision:>12.1%}"
                f"{s.false_confident_rate:>12.1%}"
            )
    if args.errors:
        print("\nmisses and false confident answers (question -> best entry, score):")
        for question, got, score in overall.misses:
            expected = question.expected or "(none)"
            print(
                f"  [{question.language}] {question.text!r}: want {expected}, got {got} {score:.2f}"
            )


if __name__ == "__main__":
    main()
