"""The FAQ knowledge base: entries, a lexical retriever over them, and the YAML/CSV loader.

Matching is TF-IDF over character n-grams (2 to 5, within word boundaries) of every question
variant in every language, compared by cosine similarity; an entry's score blends its similarity
to its variants as a whole, to its best single variant and to its answer (see FaqIndex).
Character n-grams are what make this work without a model download: they forgive typos ("orario",
"devolucoin"), inflections ("devolver", "devoluciones") and missing accents, and they need no
per-language stemmer or stop-word list, so a customer may ask in Spanish or English whatever
language the conversation was in. The answer comes back in the requested language.

`confident` is the line between answering and handing off. It is deliberately high (see
`DEFAULT_THRESHOLD`): a wrong answer given with confidence is worse for the customer than a human
taking over, so below it the dialog layer should offer the best guesses or hand off instead.

Everything here is pure and synchronous: the index is built once per version of the KB (see
`dialog.faq_store.FaqCatalogue`) and a match is one sparse dot product, well under a millisecond.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import yaml  # type: ignore[import-untyped]
from numpy.typing import NDArray
from scipy import sparse
from sklearn.feature_extraction.text import (
    TfidfVectorizer,
)
from sklearn.preprocessing import normalize
from typing_extensions import override

from dialog.ngrams import WordColumns, tfidf_rows
from dialog.readahead import ReadAhead
from wording import fold as fold_text

__all__ = [
    "DEFAULT_THRESHOLD",
    "LANGUAGES",
    "MAX_ANSWER",
    "MAX_QUESTION",
    "RANKED",
    "FaqEntry",
    "FaqEntryInvalid",
    "FaqFileError",
    "FaqIndex",
    "FaqMatch",
    "FaqMatcher",
    "FaqProblem",
    "Ranking",
    "build_entry",
    "entry_to_dict",
    "fold",
    "load_faq_file",
    "match_all",
    "matches_of",
    "rank",
    "rank_all",
    "rank_matches",
]

LANGUAGES = ("es", "en")
MAX_QUESTION = 500
MAX_ANSWER = 4000  # the longest message a chat channel accepts
MAX_ID = 64
MAX_TAG = 32
# Calibrated on tests/dialog/data/faq_test.yaml with `python -m bench.faq_accuracy --sweep`: the
# lowest threshold at which >= 99% of confident answers are right and no question the KB cannot
# answer gets one. Over a third of answerable questions clear it; below it the dialog layer should
# offer the top matches or hand off. Lower it only with a sweep on your own questions.
DEFAULT_THRESHOLD = 0.42

# How an entry's score is made (see FaqIndex), chosen with bench/faq_accuracy.py on the held-out
# set: anything from 0.15 to 0.35 for the variant and 0.2 to 0.4 for the answer does about as well.
_VARIANT_WEIGHT = 0.175
_ANSWER_WEIGHT = 0.3
_CENTROID_WEIGHT = 1.0 - _VARIANT_WEIGHT - _ANSWER_WEIGHT
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_NOT_WORD = re.compile(r"[\W_]+")
_ENTRY_FIELDS = ("id", "questions", "answers", "tags")
# How many of a text's best entries a reading ahead keeps: more than a turn offers
# (`dialog.selfservice`); a caller asking for more has them computed afresh.
RANKED = 8

Ranking = tuple[tuple[int, float, int], ...]
"""A text's best entries, best first (ties: the entry listed first in the KB), leaving out those
sharing nothing with it: (the entry's position, its score, its best variant's position). What a
match needs of the text alone, whatever language it is answered in."""
_CSV_COLUMNS = ("id", "language", "question", "answer", "tags")


def fold(text: str) -> str:
    """Case- and accent-folded text with punctuation as spaces: "¿Cuándo ABRÍS?" -> "cuando abris".

    Customers on SMS and chat often type without accents or capitals; the KB is written with
    them. Folding both sides the same way makes "devolución" and "devolucion" one word.
    """
    return _NOT_WORD.sub(" ", fold_text(text)).strip()


@dataclass(frozen=True, slots=True)
class FaqEntry:
    """One knowledge-base entry: question variants and an answer per language."""

    id: str  # a slug, e.g. "opening-hours"
    questions: Mapping[str, tuple[str, ...]]  # language -> question variants
    answers: Mapping[str, str]  # language -> answer
    tags: tuple[str, ...] = ()

    def answer_in(self, language: str) -> str:
        """The answer in `language`, else in the first of LANGUAGES that has one."""
        if language in self.answers:
            return self.answers[language]
        for other in (*LANGUAGES, *sorted(self.answers)):
            if other in self.answers:
                return self.answers[other]
        raise LookupError(f"FAQ entry {self.id!r} has no answer")  # build_entry prevents it

    @override
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Read-only views of dicts cannot be pickled; the dicts can (to sastre.bot_reading's
        # process), and become read-only views again on the other side.
        return (_entry, (self.id, dict(self.questions), dict(self.answers), self.tags))


def _entry(
    id: str, questions: dict[str, tuple[str, ...]], answers: dict[str, str], tags: tuple[str, ...]
) -> FaqEntry:
    return FaqEntry(id, MappingProxyType(questions), MappingProxyType(answers), tags)


@dataclass(frozen=True, slots=True)
class FaqMatch:
    entry: FaqEntry
    score: float  # cosine similarity with the best question variant, 0..1
    confident: bool  # score >= the index threshold: safe to answer without a human
    answer: str  # in the requested language, or the other one if the entry lacks it
    question: str  # the variant that matched best: shows staff why


@dataclass(frozen=True, slots=True)
class FaqProblem:
    """What is wrong with one field of one entry, and where it was read from."""

    field: str  # a path: "answers.en", "questions.es[2]", "tags[0]"
    reason: str
    entry: str | None = None
    line: int | None = None

    @override
    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        which = f"entry {self.entry!r}: " if self.entry else ""
        return f"{where}{which}{self.field}: {self.reason}"


class FaqEntryInvalid(ValueError):
    """An entry breaks the KB rules; `problems` names every field concerned."""

    def __init__(self, problems: Sequence[FaqProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


class FaqFileError(ValueError):
    """A KB file cannot be loaded; the message names the file, the lines and the fields."""

    def __init__(self, path: Path, problems: Sequence[FaqProblem]) -> None:
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{path}: {len(problems)} problem(s)\n{shown}{more}")
        self.path = path
        self.problems = tuple(problems)


def _text(value: Any, path: str, limit: int, problems: list[FaqProblem]) -> str | None:
    if not isinstance(value, str):
        problems.append(FaqProblem(path, f"must be text, not {_kind(value)}"))
        return None
    text = value.strip()
    if not text:
        problems.append(FaqProblem(path, "must not be empty"))
        return None
    if len(text) > limit:
        problems.append(FaqProblem(path, f"is {len(text)} characters long; the limit is {limit}"))
        return None
    return text


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _language(value: Any, path: str, problems: list[FaqProblem]) -> str | None:
    if value in LANGUAGES:
        return str(value)
    problems.append(FaqProblem(path, f"unknown language {value!r}; use one of {list(LANGUAGES)}"))
    return None


def build_entry(
    id: object,
    questions: Any,
    answers: Any,
    tags: Any = (),
) -> FaqEntry:
    """A valid entry, or FaqEntryInvalid naming every bad field (the rules of the whole KB).

    At least one language needs both a question and an answer; a language may have questions
    without an answer (the other language's answer is given) or an answer without questions.
    """
    problems: list[FaqProblem] = []
    slug = id if isinstance(id, str) and len(id) <= MAX_ID and _SLUG.fullmatch(id) else None
    if slug is None:
        problems.append(
            FaqProblem("id", f"must be a slug of at most {MAX_ID} characters, like 'opening-hours'")
        )
    variants: dict[str, tuple[str, ...]] = {}
    if not isinstance(questions, Mapping):
        problems.append(
            FaqProblem("questions", f"must map a language to questions, not {_kind(questions)}")
        )
    else:
        for language, given in questions.items():
            path = f"questions.{language}"
            if _language(language, path, problems) is None:
                continue
            items = [given] if isinstance(given, str) else given
            if not isinstance(items, list | tuple):
                problems.append(
                    FaqProblem(path, f"must be a list of questions, not {_kind(given)}")
                )
                continue
            texts = [_text(q, f"{path}[{i}]", MAX_QUESTION, problems) for i, q in enumerate(items)]
            # Repeated variants add nothing to the index; keep the first of each.
            unique = dict.fromkeys(t for t in texts if t is not None)
            if unique:
                variants[language] = tuple(unique)
    replies: dict[str, str] = {}
    if not isinstance(answers, Mapping):
        problems.append(
            FaqProblem("answers", f"must map a language to an answer, not {_kind(answers)}")
        )
    else:
        for language, given in answers.items():
            path = f"answers.{language}"
            if _language(language, path, problems) is None:
                continue
            text = _text(given, path, MAX_ANSWER, problems)
            if text is not None:
                replies[language] = text
    labels: list[str] = []
    if not isinstance(tags, list | tuple):
        problems.append(FaqProblem("tags", f"must be a list of tags, not {_kind(tags)}"))
    else:
        for i, tag in enumerate(tags):
            text = _text(tag, f"tags[{i}]", MAX_TAG, problems)
            if text is not None:
                labels.append(text.lower())
    if not problems and not any(language in replies for language in variants):
        problems.append(
            FaqProblem("questions", "needs at least one language with a question and an answer")
        )
    if problems or slug is None:
        raise FaqEntryInvalid(problems)
    return FaqEntry(
        id=slug,
        questions=MappingProxyType(variants),
        answers=MappingProxyType(replies),
        tags=tuple(dict.fromkeys(labels)),
    )


def entry_to_dict(entry: FaqEntry) -> dict[str, Any]:
    """The JSON shape of an entry, as the API and the database hold it."""
    return {
        "id": entry.id,
        "questions": {language: list(qs) for language, qs in entry.questions.items()},
        "answers": dict(entry.answers),
        "tags": list(entry.tags),
    }


# --- the retriever ------------------------------------------------------------------------------


class FaqMatcher(Protocol):
    """What the bot and the catalogue need of a matcher: the lexical one or the semantic one."""

    threshold: float

    @property
    def entries(self) -> tuple[FaqEntry, ...]: ...
    def __len__(self) -> int: ...
    def top(self, text: str, language: str, k: int = 3) -> list[FaqMatch]: ...
    def match(self, text: str, language: str) -> FaqMatch | None: ...


@runtime_checkable
class _MatchesMany(Protocol):
    def match_all(
        self, texts: Sequence[str], languages: Sequence[str]
    ) -> list[FaqMatch | None]: ...


def match_all(
    matcher: FaqMatcher, texts: Sequence[str], languages: Sequence[str]
) -> list[FaqMatch | None]:
    """`matcher.match` of each text in its language; in one go when the matcher can."""
    if isinstance(matcher, _MatchesMany):
        return matcher.match_all(texts, languages)
    return [matcher.match(text, language) for text, language in zip(texts, languages, strict=True)]


class FaqIndex:
    """Every question variant and answer of every entry, vectorised once; a match is one sparse
    dot product of the question with all of them.

    An entry's score blends three cosine similarities with the question:

    * with the entry's centroid in each language (the normalised sum of its variants there; the
      better language counts). It carries the ranking: it rewards the words an entry's variants
      share, where one variant alone is easily won by a short variant sharing only "do you";
    * with its best single variant, which lifts a question asked almost as written, so that one
      is answered with confidence;
    * with its answer (the better language), which knows the specifics customers ask about
      ("Klarna", "pick-up point") that no variant spells out.

    On the held-out set each signal adds to the others (see bench/faq_accuracy.py).
    """

    def __init__(
        self, entries: Sequence[FaqEntry], *, threshold: float = DEFAULT_THRESHOLD
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within 0..1, not {threshold}")
        self.entries = tuple(entries)
        self.threshold = threshold
        # Rows are laid out entry by entry, so an entry's best row is one reduceat.
        self._variants: list[str] = []
        variant_starts: list[int] = []
        centroid_starts: list[int] = []
        centroid_of: list[int] = []  # variant row -> its (entry, language) centroid row
        answers: list[str] = []
        answer_starts: list[int] = []
        for entry in self.entries:
            answer_starts.append(len(answers))
            answers.extend(entry.answers[language] for language in sorted(entry.answers))
            if not any(entry.questions.values()):
                raise ValueError(f"FAQ entry {entry.id!r} has no question to match")
            variant_starts.append(len(self._variants))
            centroid_starts.append(len(set(centroid_of)))
            for language in sorted(entry.questions):
                if entry.questions[language]:
                    row = len(set(centroid_of))
                    self._variants.extend(entry.questions[language])
                    centroid_of.extend([row] * len(entry.questions[language]))
        self._variant_starts = np.array(variant_starts, dtype=np.intp)
        self._centroid_starts = np.array(centroid_starts, dtype=np.intp)
        self._answer_starts = np.array(answer_starts, dtype=np.intp)
        self._centroid_count = len(set(centroid_of))
        self._columns = WordColumns(lambda _word: [], {})
        self._idf: NDArray[np.float32] = np.zeros(0, np.float32)
        self._ahead = ReadAhead(self.rank_texts)
        if not self._variants:
            return
        vectorizer = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(2, 5),
            sublinear_tf=True,
            preprocessor=fold,
            lowercase=False,  # fold() does it, and strips accents too
            dtype=np.float32,
        )
        variants = vectorizer.fit_transform(self._variants)  # rows L2-normalised
        grouping = sparse.csr_matrix(
            (
                np.ones(len(centroid_of), np.float32),
                (centroid_of, np.arange(len(centroid_of))),
            ),
            shape=(centroid_of[-1] + 1, len(centroid_of)),
        )
        centroids = normalize(grouping @ variants)
        # Answers in the vocabulary of the questions: words only an answer uses cannot be asked.
        answer_rows = vectorizer.transform(answers)
        # Stored by column: a batch's product takes only the columns of the n-grams it uses.
        self._by_column = sparse.vstack([variants, centroids, answer_rows]).tocsc()
        self._idf = vectorizer.idf_.astype(np.float32)
        # Folded text is folded already: each word's n-grams are read (and cached) on their own.
        self._columns = WordColumns(vectorizer.build_analyzer(), vectorizer.vocabulary_)

    def read_ahead(self, texts: Sequence[str]) -> None:
        """Rank the entries for `texts` now, for the batch that will ask (`dialog.readahead`)."""
        self._ahead.fill(texts)

    def keep_ahead(self, texts: Sequence[str], rankings: Sequence[Ranking]) -> None:
        """Keep `rank_texts(texts)` as computed elsewhere (another process, by an index built
        from the same entries), for the turns that will ask."""
        self._ahead.keep(texts, rankings)

    def rank_texts(self, texts: Sequence[str]) -> list[Ranking]:
        """Each text's `RANKED` best entries: all a match needs of the text alone."""
        if not self._variants:
            return [() for _ in texts]
        return rank_all(self, *self.score_texts(texts), RANKED)

    def __len__(self) -> int:
        return len(self.entries)

    def _scores(self, text: str) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(score per entry, similarity per variant); zeros when nothing is shared."""
        per_entry, per_variant = self.score_texts([text])
        return per_entry[:, 0], per_variant[:, 0]

    def score_texts(self, texts: Sequence[str]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(score per entry, similarity per variant), one column per text: the arithmetic of a
        match that depends on the texts alone."""
        # The same weighting as TfidfVectorizer.transform (sublinear tf x idf, L2 norm), done by
        # hand for every text at once: sklearn's per-call validation costs ~5x the arithmetic
        # for a single short text, and one product serves the whole batch.
        rows = tfidf_rows(
            [self._columns.columns(fold(text)) for text in texts], self._idf, dtype=np.float32
        )
        # One CSR product with dense queries: cheaper than slicing the matrix by the queries'
        # n-grams, whose per-call bookkeeping costs more than the arithmetic for ~40 entries.
        # Only the n-grams the batch uses: their columns of the matrix (cheap to take by column)
        # times a small dense block, instead of every stored n-gram times mostly zeros (half the
        # arithmetic for a batch of 32; the scores agree to float32 rounding, 1e-7).
        owner = np.repeat(np.arange(len(texts)), np.diff(rows.starts))
        used, position = np.unique(rows.columns, return_inverse=True)
        queries = np.zeros((len(used), len(texts)), np.float32)
        queries[position, owner] = rows.weights
        per_row = np.asarray(self._by_column[:, used] @ queries, dtype=np.float32)
        variants_end = len(self._variants)
        centroids_end = variants_end + self._centroid_count
        per_variant = per_row[:variants_end]
        best_variant = np.maximum.reduceat(per_variant, self._variant_starts, axis=0)
        best_centroid = np.maximum.reduceat(
            per_row[variants_end:centroids_end], self._centroid_starts, axis=0
        )
        best_answer = np.maximum.reduceat(per_row[centroids_end:], self._answer_starts, axis=0)
        blended = (
            _CENTROID_WEIGHT * best_centroid
            + _VARIANT_WEIGHT * best_variant
            + _ANSWER_WEIGHT * best_answer
        )
        return blended.astype(np.float32), per_variant

    def top(self, text: str, language: str, k: int = 3) -> list[FaqMatch]:
        """The k best entries for `text`, best first, leaving out those sharing nothing with it."""
        return self.top_all([text], [language], k)[0]

    def match(self, text: str, language: str) -> FaqMatch | None:
        """The best entry for `text`, confident or not; None when nothing is shared at all."""
        best = self.top(text, language, k=1)
        return best[0] if best else None

    def match_all(self, texts: Sequence[str], languages: Sequence[str]) -> list[FaqMatch | None]:
        """`match` for many texts (each answered in its language), scored in one product."""
        return [best[0] if best else None for best in self.top_all(texts, languages, 1)]

    def top_all(
        self, texts: Sequence[str], languages: Sequence[str], k: int = 3
    ) -> list[list[FaqMatch]]:
        """`top` for many texts (each answered in its language), scored in one product."""
        if not texts:
            return []
        if k < 1 or not self._variants:
            return [[] for _ in texts]
        if k <= RANKED:  # what was ranked ahead serves: taken, the others ranked now
            rankings = self._ahead.take_all(texts)
        else:
            rankings = rank_all(self, *self.score_texts(texts), k)
        return [
            matches_of(self, ranking, language, k)
            for ranking, language in zip(rankings, languages, strict=True)
        ]


class _Ranked(Protocol):
    entries: tuple[FaqEntry, ...]
    threshold: float
    _variants: list[str]
    _variant_starts: Any


def rank(index: _Ranked, per_entry: Any, per_variant: Any, k: int) -> Ranking:
    """The k best-scoring entries (see `Ranking`) from one text's scores (a column of
    `score_texts`). Shared by the lexical and semantic indexes."""
    return rank_all(index, per_entry[:, None], per_variant[:, None], k)[0]


def rank_all(index: _Ranked, per_entry: Any, per_variant: Any, k: int) -> list[Ranking]:
    """`rank` for every column of `score_texts` at once: a few array operations for the whole
    batch instead of a sort and a search per entry per text."""
    starts = index._variant_starts
    variants = per_variant.shape[0]
    # Each entry's best variant for every text: the first row holding its rows' maximum.
    best = np.maximum.reduceat(per_variant, starts, axis=0)
    lengths = np.diff(np.append(starts, variants))
    rows = np.arange(variants)[:, None]
    first = np.where(per_variant == np.repeat(best, lengths, axis=0), rows, variants)
    best_variant = np.minimum.reduceat(first, starts, axis=0)
    # A stable sort of the negated scores keeps tied entries in the KB's order.
    order = np.argsort(-per_entry, axis=0, kind="stable")[:k]
    scores = np.take_along_axis(per_entry, order, axis=0).T.tolist()
    chosen = np.take_along_axis(best_variant, order, axis=0).T.tolist()
    rankings: list[Ranking] = []
    for entries, entry_scores, entry_variants in zip(order.T.tolist(), scores, chosen, strict=True):
        ranked: list[tuple[int, float, int]] = []
        for i, score, variant in zip(entries, entry_scores, entry_variants, strict=True):
            if score <= 0.0:
                break
            ranked.append((i, score, variant))
        rankings.append(tuple(ranked))
    return rankings


def matches_of(index: _Ranked, ranking: Ranking, language: str, k: int) -> list[FaqMatch]:
    """The first k entries of `ranking` as matches, answered in `language`."""
    found = []
    for i, raw, best in ranking[:k]:
        entry, score = index.entries[i], min(1.0, raw)
        found.append(
            FaqMatch(
                entry=entry,
                score=round(score, 4),
                confident=score >= index.threshold,
                answer=entry.answer_in(language),
                question=index._variants[best],
            )
        )
    return found


def rank_matches(
    index: _Ranked, per_entry: Any, per_variant: Any, language: str, k: int
) -> list[FaqMatch]:
    """The k best-scoring entries as matches, best first (ties: the entry listed first in the
    KB), each with the variant that scored best."""
    return matches_of(index, rank(index, per_entry, per_variant, k), language, k)


# --- loading files ------------------------------------------------------------------------------


def load_faq_file(path: Path) -> list[FaqEntry]:
    """Entries from a YAML file (a list of entries, or `entries:` holding one) or a CSV file.

    YAML entries have `id`, `questions` (language -> list), `answers` (language -> text) and
    optional `tags`. CSV has one question variant per row, `id,language,question,answer,tags`:
    the answer is given once per entry and language (later rows leave it empty or repeat it), tags
    are separated by `;`. Every problem is reported at once, each with its line, entry and field.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise FaqFileError(path, [FaqProblem("file", f"is not UTF-8 text ({e.reason})")]) from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        drafts = _csv_drafts(path, text)
    elif suffix in {".yaml", ".yml"}:
        drafts = _yaml_drafts(path, text)
    else:
        raise FaqFileError(path, [FaqProblem("file", "unknown format; use .yaml, .yml or .csv")])
    return _build_all(path, drafts)


@dataclass(slots=True)
class _Draft:
    """An entry as read from a file, before the rules; `lines` maps field paths to lines."""

    id: Any
    line: int
    questions: Any = None
    answers: Any = None
    tags: Any = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[FaqProblem] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        return self.id if isinstance(self.id, str) and self.id else None

    def line_of(self, path: str) -> int:
        """The line of the field, else of the nearest enclosing field read, else the entry's."""
        while path:
            if path in self.lines:
                return self.lines[path]
            parent = _PARENT.sub("", path)
            if parent == path:
                break
            path = parent
        return self.line


_PARENT = re.compile(r"(\[\d+\]|\.[^.\[]*)$")


def _build_all(path: Path, drafts: Iterable[_Draft]) -> list[FaqEntry]:
    entries: list[FaqEntry] = []
    problems: list[FaqProblem] = []
    first_line: dict[str, int] = {}
    for draft in drafts:
        problems.extend(draft.problems)
        if draft.id is None:
            problems.append(FaqProblem("id", "missing", None, draft.line))
            continue
        if draft.name is not None and draft.name in first_line:
            reason = f"duplicate id; the entry on line {first_line[draft.name]} has it"
            problems.append(FaqProblem("id", reason, draft.name, draft.line_of("id")))
            continue
        if draft.name is not None:
            first_line[draft.name] = draft.line_of("id")
        try:
            entry = build_entry(draft.id, draft.questions, draft.answers, draft.tags)
        except FaqEntryInvalid as e:
            problems.extend(
                FaqProblem(p.field, p.reason, draft.name, draft.line_of(p.field))
                for p in e.problems
            )
            continue
        if not draft.problems:
            entries.append(entry)
    if problems:
        raise FaqFileError(path, problems)
    return entries


# YAML is read as a node tree rather than with safe_load, for two reasons: every value keeps its
# line for the error messages, and scalars stay text (safe_load turns an answer of `no` into
# False, `1.10` into 1.1 and `2024-01-01` into a date).
_NULL_TAG = "tag:yaml.org,2002:null"


def _plain(node: Any, path: str, lines: dict[str, int]) -> Any:
    if path:
        lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _NULL_TAG and node.style is None:
            return None
        return str(node.value)
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, f"{path}[{i}]", lines) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            lines.setdefault(child, key_node.start_mark.line + 1)  # the key's line, not the value's
            result[key] = _plain(value_node, child, lines)
        return result
    return None  # an alias node: safe YAML anchors are not worth supporting in a KB


def _yaml_drafts(path: Path, text: str) -> list[_Draft]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise FaqFileError(
            path, [FaqProblem("file", f"is not valid YAML: {e}", line=line)]
        ) from None
    if isinstance(root, yaml.MappingNode):
        root = next((value for key, value in root.value if key.value == "entries"), None)
    if not isinstance(root, yaml.SequenceNode):
        line = root.start_mark.line + 1 if root is not None else 1
        raise FaqFileError(
            path, [FaqProblem("entries", "the file must hold a list of entries", line=line)]
        )
    drafts = []
    for node in root.value:
        lines: dict[str, int] = {}
        raw = _plain(node, "", lines)
        line = node.start_mark.line + 1
        if not isinstance(raw, dict):
            reason = f"must be a mapping with {', '.join(_ENTRY_FIELDS)}, not {_kind(raw)}"
            drafts.append(_Draft("", line, problems=[FaqProblem("entry", reason, line=line)]))
            continue
        draft = _Draft(
            raw.get("id"),
            line,
            questions=raw.get("questions"),
            answers=raw.get("answers"),
            tags=raw.get("tags") or [],
            lines=lines,
        )
        for key in raw:
            if key not in _ENTRY_FIELDS:
                # A typo such as `answer:` deserves its own message, not just "answers missing".
                reason = f"unknown field; an entry has {', '.join(_ENTRY_FIELDS)}"
                draft.problems.append(FaqProblem(key, reason, draft.name, draft.line_of(key)))
        drafts.append(draft)
    return drafts


def _csv_drafts(path: Path, text: str) -> list[_Draft]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip().lower() for column in next(reader)]
    except StopIteration:
        raise FaqFileError(path, [FaqProblem("header", "the file is empty", line=1)]) from None
    except csv.Error as e:
        raise FaqFileError(path, [FaqProblem("header", str(e), line=1)]) from None
    missing = [column for column in _CSV_COLUMNS[:4] if column not in header]
    if missing:
        reason = f"missing column(s) {', '.join(missing)}; expected {','.join(_CSV_COLUMNS)}"
        raise FaqFileError(path, [FaqProblem("header", reason, line=1)])
    position = {column: header.index(column) for column in _CSV_COLUMNS if column in header}
    drafts: dict[str, _Draft] = {}
    problems: list[FaqProblem] = []
    end = reader.line_num
    while True:
        line = end + 1  # where the row starts: a quoted cell may span several lines
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise FaqFileError(path, [*problems, FaqProblem("row", str(e), line=line)]) from None
        end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            reason = f"has {len(row)} columns; the header has {len(header)}"
            problems.append(FaqProblem("row", reason, line=line))
            continue
        cell = {column: row[i].strip() for column, i in position.items()}
        _csv_row(drafts, problems, line, cell)
    if problems:
        for draft in drafts.values():
            problems.extend(draft.problems)
        raise FaqFileError(path, problems)
    return list(drafts.values())


def _csv_row(
    drafts: dict[str, _Draft], problems: list[FaqProblem], line: int, cell: dict[str, str]
) -> None:
    """One question variant (and maybe the answer) of one entry, folded into its draft."""
    entry_id, language = cell["id"], cell["language"]
    if not entry_id:
        problems.append(FaqProblem("id", "must not be empty", line=line))
        return
    draft = drafts.setdefault(
        entry_id, _Draft(entry_id, line, questions={}, answers={}, lines={"id": line})
    )
    if language not in LANGUAGES:
        reason = f"unknown language {language!r}; use one of {list(LANGUAGES)}"
        problems.append(FaqProblem("language", reason, entry_id, line))
        return
    if not cell["question"] and not cell["answer"]:
        reason = "a row needs a question, an answer or both"
        problems.append(FaqProblem("question", reason, entry_id, line))
        return
    if cell["question"]:
        variants = draft.questions.setdefault(language, [])
        draft.lines.setdefault(f"questions.{language}", line)
        draft.lines[f"questions.{language}[{len(variants)}]"] = line
        variants.append(cell["question"])
    if cell["answer"]:
        earlier = draft.answers.get(language)
        if earlier is not None and earlier != cell["answer"]:
            first = draft.lines[f"answers.{language}"]
            reason = f"differs from the {language} answer on line {first}; give it once"
            problems.append(FaqProblem("answer", reason, entry_id, line))
        else:
            draft.answers[language] = cell["answer"]
            draft.lines.setdefault(f"answers.{language}", line)
    for tag in (t.strip() for t in cell.get("tags", "").split(";")):
        if tag and tag not in draft.tags:
            draft.lines[f"tags[{len(draft.tags)}]"] = line
            draft.tags.append(tag)
