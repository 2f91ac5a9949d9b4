"""Keyword topic tagging with Aho-Corasick (multi-label, case-insensitive, word boundaries)."""

from __future__ import annotations

import functools

import ahocorasick
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from affalign.taxonomy import Taxonomy, load_taxonomy

# Everything that is not a letter, a digit, '_' or '#' separates words. Normalising both the
# texts and the keywords this way, and padding with spaces, turns a word-boundary match into a
# plain substring match of " keyword " - no per-match boundary checks in Python.
_SEPARATORS = r"[^\p{L}\p{N}_#]+"


def normalize_texts(texts: pa.Array) -> pa.Array:
    """Lowercase and collapse separators to single spaces, padded with a space on each side."""
    if texts.type != pa.string():
        texts = texts.cast(pa.string())
    # Tweets from the API carry "&" as the HTML entity "&amp;" ("J&amp;J", "church &amp; state");
    # undo it so such text matches keywords written with "&" (one plain substring pass, no regex).
    lowered = pc.replace_substring(pc.utf8_lower(texts), "&amp;", "&")
    spaced = pc.replace_substring_regex(lowered, _SEPARATORS, " ")
    return pc.binary_join_element_wise(" ", spaced, " ", "")


def normalize_term(term: str) -> str:
    return normalize_terms([term])[term]


def normalize_terms(terms: list[str]) -> dict[str, str]:
    """Normalised forms of many terms in one vectorised call (the regex compiles once)."""
    unique = sorted(set(terms))
    normed = normalize_texts(pa.array(unique, pa.string())).to_pylist() if unique else []
    return {t: " ".join(n.split()) for t, n in zip(unique, normed, strict=True)}


def term_patterns(term: str, norm: str | None = None) -> set[str]:
    """The padded patterns a keyword matches: itself and its hashtag form."""
    norm = normalize_term(term) if norm is None else norm
    if not norm:
        return set()
    patterns = {f" {norm} "}
    if not norm.startswith("#"):
        patterns.add(f" #{norm.replace(' ', '')} ")
    return patterns


class KeywordMatcher:
    """Tags texts with the topics whose keywords they contain."""

    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy
        self.topic_names = taxonomy.topic_names
        # pattern -> [strong topic bits, weak topic bits, is a context term, fallback topic bits]
        table: dict[str, list[int]] = {}
        norms = normalize_terms(
            [kw for t in taxonomy.topics for kw in (*t.keywords, *t.context_keywords, *t.fallback_keywords)]
            + list(taxonomy.context)
        )
        for i, topic in enumerate(taxonomy.topics):
            for slot, terms in ((0, topic.keywords), (1, topic.context_keywords), (3, topic.fallback_keywords)):
                for kw in terms:
                    for p in term_patterns(kw, norms[kw]):
                        table.setdefault(p, [0, 0, 0, 0])[slot] |= 1 << i
        for kw in taxonomy.context:
            for p in term_patterns(kw, norms[kw]):
                table.setdefault(p, [0, 0, 0, 0])[2] = 1
        self._automaton = ahocorasick.Automaton()
        for pattern, (strong, weak, ctx, fallback) in table.items():
            self._automaton.add_word(pattern, (strong, weak, ctx, fallback))
        self._automaton.make_automaton()
        # topic bits of each issue, for fallback keywords (they fill an issue only when it is still empty)
        issue_bits: dict[str, int] = {}
        for i, topic in enumerate(taxonomy.topics):
            issue_bits[topic.issue] = issue_bits.get(topic.issue, 0) | 1 << i
        self._issue_masks = tuple(issue_bits.values())
        self._names_of_mask: dict[int, list[str]] = {0: []}
        self._names_array = pa.array(self.topic_names, pa.string())

    def _names(self, mask: int) -> list[str]:
        names = self._names_of_mask.get(mask)
        if names is None:
            names = [n for i, n in enumerate(self.topic_names) if mask >> i & 1]
            self._names_of_mask[mask] = names
        return list(names)  # a copy: callers may mutate their result

    def masks_normalized(self, normalized: list[str | None]) -> list[int]:
        """Per text the bit mask of its topics (bit i: topic i in taxonomy order)."""
        it = self._automaton.iter
        out: list[int] = []
        append = out.append
        for text in normalized:
            if not text:
                append(0)
                continue
            strong = weak = ctx = fallback = 0
            for _, (s, w, c, f) in it(text):
                strong |= s
                weak |= w
                ctx |= c
                fallback |= f
            if ctx or strong:
                strong |= weak
                if fallback:
                    for issue in self._issue_masks:
                        if fallback & issue and not strong & issue:
                            strong |= fallback & issue
            append(strong)
        return out

    def tag_normalized(self, normalized: list[str | None]) -> list[list[str]]:
        """Topics of texts already passed through :func:`normalize_texts`."""
        return [self._names(m) for m in self.masks_normalized(normalized)]

    def topics_array(self, masks: list[int]) -> pa.Array:
        """``list<string>`` topics from masks, built column-wise (no Python list per text)."""
        n_topics = len(self.topic_names)
        if n_topics <= 63:
            m = np.asarray(masks, dtype=np.int64)
        else:  # wide taxonomies: Python ints beyond 64 bits
            m = np.asarray(masks, dtype=object)
        bits = np.stack([(m >> i) & 1 for i in range(n_topics)], axis=1).astype(bool) if len(masks) else np.zeros((0, n_topics), bool)
        rows, cols = np.nonzero(bits)  # row-major: each text's topics in taxonomy order
        offsets = np.zeros(len(masks) + 1, dtype=np.int32)
        np.cumsum(bits.sum(axis=1), out=offsets[1:])
        values = pa.DictionaryArray.from_arrays(pa.array(cols.astype(np.int32)), self._names_array).cast(pa.string())
        return pa.ListArray.from_arrays(pa.array(offsets), values)

    def tag(self, texts: list[str]) -> list[list[str]]:
        """Topics of raw texts (each a list of topic names in taxonomy order)."""
        return self.tag_normalized(normalize_texts(pa.array(texts, pa.string())).to_pylist())


@functools.lru_cache(maxsize=4)
def cached_matcher(taxonomy_ref: str) -> KeywordMatcher:
    """One matcher per worker process: Ray reuses workers across tasks, so it is built once each."""
    return KeywordMatcher(load_taxonomy(taxonomy_ref))
