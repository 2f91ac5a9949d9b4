"""A transparent lexicon scorer: a label scores 1.0 when the text has one of its cue words.

Very fast and fully predictable, so it is the scorer of the planted-truth tests and a sanity
baseline; it is not a substitute for a trained classifier (no negation, no context).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import pyarrow as pa
import yaml

from affalign.schema import DIMENSIONS
from affalign.scorers.base import AffectScorer
from affalign.tagging.keywords import normalize_texts


@lru_cache(maxsize=1)
def load_lexicon() -> dict[str, dict[str, tuple[str, ...]]]:
    """The shipped lexicon: dimension -> label -> cue words (each word belongs to one label)."""
    data = yaml.safe_load(resources.files("affalign.data").joinpath("lexicon.yaml").read_text("utf-8"))
    seen: dict[str, str] = {}
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for dim, labels in DIMENSIONS.items():
        out[dim] = {}
        for label in labels:
            words = tuple(w.lower() for w in data[dim][label])
            for w in words:
                if w in seen:
                    raise ValueError(f"lexicon word {w!r} is listed under {seen[w]} and {dim}.{label}")
                seen[w] = f"{dim}.{label}"
            out[dim][label] = words
    return out


class LexiconScorer(AffectScorer):
    """Scores 1.0 for a label whose cue word occurs in the text (whole word), else 0.0."""

    name = "lexicon"

    def setup(self) -> None:
        lex = load_lexicon()
        self._index: dict[str, tuple[int, int]] = {}
        for d, dim in enumerate(self.dimensions):
            for j, label in enumerate(DIMENSIONS[dim]):
                for w in lex[dim][label]:
                    self._index[w] = (d, j)

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        if not hasattr(self, "_index"):
            self.setup()
        mats = [np.zeros((len(texts), len(DIMENSIONS[d])), np.float32) for d in self.dimensions]
        normalized = normalize_texts(pa.array(texts, pa.string())).to_pylist()
        index = self._index
        for i, t in enumerate(normalized):
            if not t:
                continue
            for w in t.split():
                hit = index.get(w)
                if hit is not None:
                    mats[hit[0]][i, hit[1]] = 1.0
        return dict(zip(self.dimensions, mats, strict=True))
