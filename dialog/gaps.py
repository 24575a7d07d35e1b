"""The KB's gaps: what customers asked that the bot could not answer, grouped by similarity.

A gap is an inbound message whose stored outcome (`messages.outcome`, the plan of its turn) says
the bot did not answer it itself (`is_gap`):

* `rephrase`: not understood, the customer was asked to say it again;
* `choices:...`: the bot was torn and offered options, whatever the customer picked next (the
  pick is logged apart, as a labelled example); a question asked often enough to need a choice
  deserves its own variant or entry;
* `handoff:not_understood` and `handoff:cmv_priority`: handed to a person because the bot did not
  understand, or was unsure with a priority customer; what the agent answered is the entry to
  write. So is any other hand-off reason this list does not leave out, a new one included.

Left out, as no entry would have answered them: `handoff:complaint` (a grievance is for a
person, whatever the KB says), `handoff:customer_asked` (the message asks for a person, it is
not a question) and `handoff:attachment` (a file with no words).

`group_gaps` is pure. Texts are read the way the intent model reads them (`dialog.nlu`'s
folding: case, accents, apostrophes, every number one ``0``, repeated letters cut), so "where is
order 123" and "Where is order 98765?" are one text. The distinct texts are then compared by
the project's usual measure, the cosine of TF-IDF character n-grams (2 to 5 within word
boundaries, sublinear tf, as the FAQ retriever and the intent model weigh them), fitted on the
gaps themselves so that the words every question shares ("how", "do you") weigh little, and
joined by average-linkage clustering (scipy) cut at `SIMILARITY`: a group is texts that are on
average that similar to each other, not a chain of neighbours drifting from one topic to another.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_distances

from dialog.faq import FaqMatcher, match_all

# The intent model's reading of a text; private there, shared here so that what counts as "the
# same words" for a gap is what counts for the bot.
from dialog.nlu import _normalise as normalise

__all__ = [
    "ANSWERS",
    "EXAMPLES",
    "GAP_HANDOFFS_LEFT_OUT",
    "SIMILARITY",
    "SUGGESTION_FLOOR",
    "TEXT_LIMIT",
    "AgentAnswer",
    "Gap",
    "GapGroup",
    "Suggestion",
    "gap_kind",
    "group_gaps",
    "is_gap",
    "suggest_entries",
]

# The average cosine similarity of a group's texts. Measured on the shipped KB's question variants
# (576 texts, 36 entries, each variant labelled by its entry): at 0.4, 96% homogeneous (a group
# rarely mixes entries), 0.35 93%, 0.3 90%; other n-gram ranges, a word view beside the
# characters or complete linkage change it by a point or less. A wrong merge hides a gap behind
# another, a split only shows one twice, so the line leans to the strict side.
SIMILARITY: Final = 0.4
EXAMPLES: Final = 5  # texts shown per group, the most recent distinct ones
ANSWERS: Final = 3  # agents' answers shown per group, most recent first
TEXT_LIMIT: Final = 500  # characters of a text shown (an e-mail's quoted history adds nothing)
# A FAQ entry is suggested for a group when the retriever scores it at least this share of its
# confident threshold: close enough for the admin to consider a new variant of it. On the
# shipped KB (threshold 0.42) questions it cannot answer ("my cat is sick", "what is the capital
# of Australia") score up to about 0.23 and near misses ("where's your shop in madrid exactly":
# store-locations) about 0.3: 0.6 x 0.42 = 0.25 parts them.
SUGGESTION_FLOOR: Final = 0.6
GAP_HANDOFFS_LEFT_OUT: Final = frozenset({"complaint", "customer_asked", "attachment"})


def gap_kind(outcome: str | None) -> str | None:
    """The kind of gap an outcome is (`rephrase`, `choices`, `handoff:<reason>`), None when
    it is no gap (answered, an action run, small talk, a keyword, a confirmation asked...)."""
    if outcome is None:
        return None
    if outcome == "rephrase":
        return "rephrase"
    if outcome.startswith("choices:"):
        return "choices"
    if outcome.startswith("handoff:"):
        reason = outcome.removeprefix("handoff:")
        return None if reason in GAP_HANDOFFS_LEFT_OUT else outcome
    return None


def is_gap(outcome: str | None) -> bool:
    return gap_kind(outcome) is not None


@dataclass(frozen=True, slots=True)
class AgentAnswer:
    """The first message a person of the staff wrote in the conversation after the gap."""

    message_id: int
    text: str
    author: str  # agent:<name>, supervisor:<name>, admin:<name>
    at: datetime


@dataclass(frozen=True, slots=True)
class Gap:
    """One customer message the bot did not answer itself."""

    message_id: int
    text: str
    language: str
    channel: str
    at: datetime
    outcome: str
    answer: AgentAnswer | None = None
    chosen: str | None = None  # the option picked when the bot offered choices (faq:<id>...)


@dataclass(frozen=True, slots=True)
class Suggestion:
    """The existing entry closest to a group: a new variant for it may be all that is needed."""

    entry_id: str
    score: float
    confident: bool  # the KB answers this now (it changed since these messages came)
    question: str  # the entry's variant that matched best


@dataclass(frozen=True, slots=True)
class GapGroup:
    """Customer messages that ask, by their words, the same thing."""

    text: str  # the representative: the group's most frequent text (among equals, the newest)
    count: int
    languages: Mapping[str, int]
    outcomes: Mapping[str, int]  # gap_kind -> messages
    first_seen: datetime
    last_seen: datetime
    last_message_id: int  # the most recent message's: with last_seen, where a page ends
    examples: tuple[str, ...]  # distinct texts, most recent first
    answers: tuple[AgentAnswer, ...]  # the agents' answers, most recent first
    chosen: Mapping[str, int]  # the options customers picked when offered choices, most first
    message_ids: tuple[int, ...] = field(repr=False)  # every message of the group, newest first
    suggestion: Suggestion | None = None

    @property
    def order(self) -> tuple[int, datetime, int]:
        """The sort key, largest first: most frequent, then most recent."""
        return (self.count, self.last_seen, self.last_message_id)


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _key(text: str) -> str:
    """The text as the bot reads it, without its question marks (the model reads a question
    apart from a statement; to the KB they ask the same). A text with nothing else in it
    (emoji, "???") is kept whole, so that it groups with its own kind only."""
    return " ".join(normalise(text).replace("?", " ").split()) or " ".join(text.split())


def _clusters(keys: Sequence[str], similarity: float) -> list[int]:
    """A cluster number per distinct key (keys sorted: the same input, the same answer)."""
    if len(keys) < 2:
        return [0] * len(keys)
    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, lowercase=False
    )
    try:
        rows = vectorizer.fit_transform(keys)
    except ValueError:  # no n-gram at all (only emoji): nothing to compare, each on its own
        return list(range(len(keys)))
    distances = np.clip(cosine_distances(rows), 0.0, 1.0)
    np.fill_diagonal(distances, 0.0)
    tree = linkage(squareform(distances, checks=False), method="average")
    # fcluster numbers clusters by the tree; a tiny epsilon keeps a pair exactly at the
    # threshold together whatever the floating point does to it.
    labels = fcluster(tree, t=1.0 - similarity + 1e-9, criterion="distance")
    return [int(label) for label in labels]


def _representative(keys: Sequence[str], counts: Counter[str], latest: Mapping[str, Gap]) -> str:
    """The key most messages of the group share; among equals the most recent."""
    return max(keys, key=lambda k: (counts[k], latest[k].at, latest[k].message_id))


def _tally(values: Iterable[str]) -> dict[str, int]:
    """How many of each, most first (ties alphabetical, whatever order they came in)."""
    return dict(sorted(Counter(values).items(), key=lambda item: (-item[1], item[0])))


def _group(members: Sequence[Gap], keys: Sequence[str], counts: Counter[str]) -> GapGroup:
    newest_first = sorted(members, key=lambda g: (g.at, g.message_id), reverse=True)
    latest: dict[str, Gap] = {}
    for gap in newest_first:
        latest.setdefault(_key(gap.text), gap)
    examples: list[str] = []
    for gap in newest_first:
        shown = _shown(gap.text)
        if shown not in examples:
            examples.append(shown)
        if len(examples) == EXAMPLES:
            break
    answers = sorted(
        {gap.answer.message_id: gap.answer for gap in members if gap.answer}.values(),
        key=lambda a: (a.at, a.message_id),
        reverse=True,
    )
    return GapGroup(
        text=_shown(latest[_representative(keys, counts, latest)].text),
        count=len(members),
        languages=_tally(g.language for g in members),
        outcomes=_tally(gap_kind(g.outcome) or g.outcome for g in members),
        first_seen=min(g.at for g in members),
        last_seen=newest_first[0].at,
        last_message_id=newest_first[0].message_id,
        examples=tuple(examples),
        answers=tuple(answers[:ANSWERS]),
        chosen=_tally(g.chosen for g in members if g.chosen is not None),
        message_ids=tuple(g.message_id for g in newest_first),
    )


def group_gaps(gaps: Iterable[Gap], *, similarity: float = SIMILARITY) -> list[GapGroup]:
    """The gaps as groups of similar texts, most frequent first, then most recently seen.

    Every gap is in exactly one group; gaps whose texts read the same (`_key`) are always in the
    same one. The result does not depend on the order of `gaps`."""
    if not 0.0 <= similarity <= 1.0:
        raise ValueError(f"similarity must be within 0..1, not {similarity}")
    by_key: dict[str, list[Gap]] = {}
    for gap in gaps:
        by_key.setdefault(_key(gap.text), []).append(gap)
    keys = sorted(by_key)
    counts = Counter({key: len(members) for key, members in by_key.items()})
    clustered: dict[int, list[str]] = {}
    for key, label in zip(keys, _clusters(keys, similarity), strict=True):
        clustered.setdefault(label, []).append(key)
    groups = [
        _group([gap for key in members for gap in by_key[key]], members, counts)
        for members in clustered.values()
    ]
    return sorted(groups, key=lambda group: group.order, reverse=True)


def suggest_entries(
    groups: Sequence[GapGroup], matcher: FaqMatcher, *, floor: float = SUGGESTION_FLOOR
) -> list[GapGroup]:
    """Each group with the existing entry closest to its representative text (in the group's
    most frequent language), when the retriever scores one at least `floor` x its threshold."""
    if not groups or not len(matcher):
        return list(groups)
    languages = [next(iter(group.languages)) for group in groups]
    matches = match_all(matcher, [group.text for group in groups], languages)
    suggested = []
    for group, match in zip(groups, matches, strict=True):
        if match is not None and match.score >= floor * matcher.threshold:
            group = replace(
                group,
                suggestion=Suggestion(match.entry.id, match.score, match.confident, match.question),
            )
        suggested.append(group)
    return suggested
