"""Any Hugging Face multi-label sequence classifier as an affect scorer (one dimension per model).

Loading
-------
``spec.model`` is a local directory (``config.json``, weights, tokenizer) or a hub id. A hub id is
resolved by :func:`ensure_model_available`: the local HF cache first (``local_files_only``), then —
only when downloads are allowed (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` unset) — one download
into the cache. :func:`prefetch` does that on the driver before the actors start, so N actors on a
node read one cached copy instead of downloading N times (huggingface_hub also file-locks concurrent
downloads of the same file). Without network and without a local copy the error says which model is
missing and how to provide it.

Labels
------
The model's ``config.id2label`` is mapped onto the canonical labels of the dimension
(:data:`affalign.schema.DIMENSIONS`) case-insensitively, with common aliases (``sanctity`` ->
``purity``, ``care_vice`` / ``care.vice`` -> ``harm``, ``happiness`` -> ``joy`` ...; see
:data:`LABEL_ALIASES`). ``spec.label_map`` (model label -> canonical label) overrides the automatic
match for the labels it names; its keys may be the model's label names or their indices (``"3"`` or
``"LABEL_3"``), and a value of ``""`` or ``"-"`` ignores that model label. A value may name two
canonical labels separated by a comma (``care: "care,harm"``): this is for five-foundation models
without polarity, whose one probability per foundation then fills both the virtue and the vice
column (``options: {five_foundations: true}`` does that for every foundation-named label). Model
labels that match nothing (``neutral``, ``non-moral``) are ignored. Canonical labels the model lacks
are a :class:`ConfigError` naming them, unless ``options: {missing_labels: nan}``, which fills
those columns with NaN (the reduce skips NaN rows of a dimension, so use it knowingly).

A ``label_map`` that says more than the model's own label names (``LABEL_3: cheating``, or any
mapping other than what the names match by themselves) is checked at setup against probe sentences
written for each label (:mod:`affalign.scorers.label_check`): a map whose columns respond to each
other's probes more than to their own (care and harm swapped) is a :class:`ConfigError`, exit 2.
``options: {label_map_check: auto | true | false}``: ``auto`` (default) checks such maps, ``true``
checks every model, ``false`` none. The job also runs the check once on the driver (CPU) before
any actor starts (:func:`verify_label_map`), so a wrong map stops the run before it reads a tweet.

Outputs are ``sigmoid(logits)`` (multi-label); ``options: {activation: softmax}`` exists for
single-label models, whose probabilities then sum to one over their labels.

Speed
-----
Tokenization is separate from the forward pass: :meth:`HFClassifierScorer.tokenize` (and the
CPU-side :class:`HFTokenizer` the tokenize stage uses) runs the fast tokenizer's Rust batch call and
packs the ids into an int32 matrix without a per-row Python padding loop. The forward pass sorts rows
by length and cuts sub-batches (:func:`sub_batches`) of rows that pad to the same width (their
longest row rounded up to a multiple of 8), with at most ``spec.batch_size`` rows, at most
``batch_size x 64`` padded tokens (``options.max_batch_tokens``) and, where a width group is small,
at least ``batch_size / 4`` rows (``options.min_batch_rows``); then it restores the original order. On CUDA: bf16 weights (or
``spec.dtype``), ids copied from pinned host memory with ``non_blocking`` copies on a side stream,
the attention mask built on the device from the lengths, results copied back into pinned memory and
collected two sub-batches late, so the CPU prepares sub-batch k+1 while the GPU runs k; and in
:meth:`HFClassifierScorer.score` a background thread tokenizes the next chunk of texts while the
current one runs. :meth:`HFClassifierScorer.score_tokenized` takes pre-tokenized ids so a separate
CPU tokenize stage can feed GPU actors.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import queue
import re
import threading
import time
from collections import deque
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from affalign import devices
from affalign.errors import ConfigError
from affalign.registry import OptionTypes
from affalign.schema import DIMENSIONS
from affalign.scorers.base import DEFAULT_BATCH_CPU, DEFAULT_BATCH_GPU, AffectScorer, ScorerSpec

log = logging.getLogger("affalign")

PAD_MULTIPLE = 8  # sub-batch widths are rounded up to this (tensor-core friendly shapes)
BUDGET_WIDTH = 64  # default padded-token budget of a sub-batch: batch_size x this
COLLECT_LAG = 2  # sub-batches in flight on the GPU before the oldest result is collected

# Five foundations and their (virtue, vice) labels.
FOUNDATIONS: dict[str, tuple[str, str]] = {
    "care": ("care", "harm"),
    "fairness": ("fairness", "cheating"),
    "loyalty": ("loyalty", "betrayal"),
    "authority": ("authority", "subversion"),
    "purity": ("purity", "degradation"),
}
# Normalised foundation names (no polarity) -> foundation.
FOUNDATION_NAMES: dict[str, str] = {
    "care": "care",
    "care_harm": "care",
    "harm_care": "care",
    "fairness": "fairness",
    "fairness_cheating": "fairness",
    "loyalty": "loyalty",
    "ingroup": "loyalty",
    "in_group": "loyalty",
    "loyalty_betrayal": "loyalty",
    "authority": "authority",
    "authority_subversion": "authority",
    "purity": "purity",
    "sanctity": "purity",
    "purity_degradation": "purity",
    "sanctity_degradation": "purity",
}

# Normalised model label -> canonical label (besides the canonical names themselves).
LABEL_ALIASES: dict[str, str] = {
    # emotion (SemEval-2018 E-c spellings and common variants)
    "angry": "anger",
    "rage": "anger",
    "anticipate": "anticipation",
    "expectation": "anticipation",
    "disgusted": "disgust",
    "afraid": "fear",
    "fearful": "fear",
    "scared": "fear",
    "happiness": "joy",
    "happy": "joy",
    "optimistic": "optimism",
    "pessimistic": "pessimism",
    "sad": "sadness",
    "surprised": "surprise",
    "trusting": "trust",
    # moral: virtue/vice spellings of the five foundations
    "sanctity": "purity",
    "ingroup": "loyalty",
    "in_group": "loyalty",
    "cheat": "cheating",
    "unfairness": "cheating",
    "betray": "betrayal",
    "subvert": "subversion",
    "degrade": "degradation",
    "sanctity_virtue": "purity",
    "sanctity_vice": "degradation",
    **{f"{f}_virtue": v for f, (v, _) in FOUNDATIONS.items()},
    **{f"{f}_vice": w for f, (_, w) in FOUNDATIONS.items()},
    **{f"{f}_positive": v for f, (v, _) in FOUNDATIONS.items()},
    **{f"{f}_negative": w for f, (_, w) in FOUNDATIONS.items()},
}

# Files a classifier needs from the hub (no TF/Flax/ONNX weights).
_CONFIG_PATTERNS = ["config.json", "tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json", "added_tokens.json", "*.model", "spiece*", "sentencepiece*"]
_WEIGHT_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


# ---------------------------------------------------------------------------------------------
# Finding the model
# ---------------------------------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def downloads_allowed() -> bool:
    """False when the user turned the hub off (read at call time, not at import)."""
    return not (_truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")))


def hf_cache_dir() -> Path:
    """The hub cache huggingface_hub would use, from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _has_weights(path: Path) -> bool:
    return any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))


def _missing_message(model_id: str, where: str, cache: Path, why: str) -> str:
    return (
        f"{where}: the Hugging Face model {model_id!r} is not available here: {why}. Provide it in one of "
        f"these ways: (1) on a machine with network access run `huggingface-cli download {model_id}` "
        f"(or `hf download {model_id}`) and copy its HF cache to this machine's HF_HOME; "
        f"(2) save the model to a directory (config.json, weights, tokenizer files) and point {where} at "
        f"that directory; (3) set HF_HOME (or HF_HUB_CACHE) to a directory whose hub cache holds the "
        f"model. Cache searched: {cache}."
    )


def _weight_patterns(model_id: str) -> list[str]:
    """Only safetensors when the repo has them (not both formats); on any error, either format."""
    try:
        from huggingface_hub import HfApi

        files = HfApi().list_repo_files(model_id)
        if any(f.endswith(".safetensors") for f in files):
            return ["*.safetensors", "*.safetensors.index.json"]
        return ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
    except Exception:  # noqa: BLE001 - best effort; snapshot_download reports real errors
        return _WEIGHT_PATTERNS


def ensure_model_available(model_id: str, where: str = "scoring.model") -> str:
    """Local directory of a model: ``model_id`` itself, its HF cache snapshot, or a fresh download.

    Downloads only when the user allows network (``HF_HUB_OFFLINE`` unset); raises
    :class:`ConfigError` saying how to provide the model otherwise.
    """
    if not model_id:
        raise ConfigError(f"{where}: the hf scorer needs a model (a hub id or a local directory)")
    local = Path(model_id).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ConfigError(f"{where}: {local} is a directory but holds no config.json; it must be a saved Hugging Face model (save_pretrained)")
        return str(local)
    if model_id.startswith((".", "/", "~")) or not _HUB_ID.match(model_id):
        raise ConfigError(f"{where}: the local model directory {model_id!r} does not exist (and it is not a Hugging Face hub id)")
    cache = hf_cache_dir()
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(model_id, cache_dir=str(cache), local_files_only=True, allow_patterns=_CONFIG_PATTERNS + _WEIGHT_PATTERNS))
        if (path / "config.json").is_file() and _has_weights(path):
            return str(path)
    except Exception:  # noqa: BLE001 - not in the cache (LocalEntryNotFoundError and friends)
        pass
    if not downloads_allowed():
        raise ConfigError(_missing_message(model_id, where, cache, "no complete copy in the local HF cache and downloads are disabled (HF_HUB_OFFLINE=1)"))
    log.info("downloading %s into %s (once; later runs use the cache)", model_id, cache)
    try:
        path = Path(snapshot_download(model_id, cache_dir=str(cache), allow_patterns=_CONFIG_PATTERNS + _weight_patterns(model_id)))
    except Exception as exc:  # noqa: BLE001 - network errors, unknown repo, gated repo
        raise ConfigError(_missing_message(model_id, where, cache, f"no local copy, and the download failed ({type(exc).__name__}: {exc})")) from exc
    if not ((path / "config.json").is_file() and _has_weights(path)):
        raise ConfigError(f"{where}: {model_id!r} was downloaded to {path} but has no config.json or PyTorch/safetensors weights")
    return str(path)


def prefetch(spec: ScorerSpec, where: str = "scoring.model") -> str | None:
    """Make ``spec.model`` available locally once (driver or node), before actors start."""
    if not spec.model:
        return None
    return ensure_model_available(spec.model, where)


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------


def norm_label(label: Any) -> str:
    """Lowercase; runs of non-alphanumerics become '_' ("Care.Vice" -> "care_vice")."""
    return re.sub(r"[^a-z0-9]+", "_", str(label).strip().lower()).strip("_")


def _targets(value: Any, canonical: tuple[str, ...], where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    parts = [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value).split(",")
    out = []
    for p in parts:
        p = p.strip().lower()
        if p in ("", "-"):
            continue
        if p not in canonical:
            raise ConfigError(f"{where}: {p!r} is not a label of this dimension ({', '.join(canonical)})")
        out.append(p)
    return tuple(out)


def resolve_labels(id2label: dict[Any, str], dimension: str, label_map: dict[str, Any] | None = None, options: dict[str, Any] | None = None, where: str = "scoring") -> np.ndarray:
    """Model output index of each canonical label of ``dimension`` (-1: the model lacks it)."""
    canonical = DIMENSIONS[dimension]
    options = options or {}
    missing_mode = str(options.get("missing_labels", "error")).lower()
    if missing_mode not in ("error", "nan"):
        raise ConfigError(f"{where}.options.missing_labels: {missing_mode!r} is not one of error, nan")
    five = bool(options.get("five_foundations", False))
    labels = {int(k): str(v) for k, v in id2label.items()}
    user = {str(k): v for k, v in (label_map or {}).items()}
    used_keys: set[str] = set()
    src = np.full(len(canonical), -1, np.int64)
    origin: dict[str, str] = {}
    for i in sorted(labels):
        name = labels[i]
        targets: tuple[str, ...] = ()
        for key in (name, norm_label(name), str(i), f"LABEL_{i}"):
            if key in user:
                targets = _targets(user[key], canonical, f"{where}.label_map[{key!r}]")
                used_keys.add(key)
                break
        else:
            n = norm_label(name)
            if five and dimension == "moral" and n in FOUNDATION_NAMES:
                targets = FOUNDATIONS[FOUNDATION_NAMES[n]]
            elif n in canonical:
                targets = (n,)
            elif n in LABEL_ALIASES and LABEL_ALIASES[n] in canonical:
                targets = (LABEL_ALIASES[n],)
        for t in targets:
            j = canonical.index(t)
            if src[j] >= 0:
                raise ConfigError(f"{where}: model labels {origin[t]!r} and {name!r} both map to {t!r}; set {where}.label_map to say which one")
            src[j] = i
            origin[t] = name
    unused = sorted(set(user) - used_keys)
    if unused:
        raise ConfigError(f"{where}.label_map: key(s) {unused} match no label of the model (its labels: {[labels[i] for i in sorted(labels)]})")
    missing = [c for c, s in zip(canonical, src, strict=True) if s < 0]
    if missing and missing_mode != "nan":
        hint = ""
        if dimension == "moral" and any(norm_label(v) in FOUNDATION_NAMES for v in labels.values()):
            hint = (
                " If this is a five-foundation model without polarity, map each foundation to its virtue and "
                "vice labels (label_map: {care: 'care,harm', ...}) or set options: {five_foundations: true}."
            )
        raise ConfigError(
            f"{where}: the model has no output for {missing} (its labels: {[labels[i] for i in sorted(labels)]}). "
            f"Map them with {where}.label_map (model label -> canonical label), or set "
            f"{where}.options.missing_labels: nan to score them as NaN.{hint}"
        )
    return src


def label_map_check_mode(options: dict[str, Any] | None, where: str = "scoring") -> str:
    """``options.label_map_check`` as one of auto, true, false."""
    value = (options or {}).get("label_map_check", "auto")
    mode = ("true" if value else "false") if isinstance(value, bool) else str(value).strip().lower()
    if mode not in ("auto", "true", "false"):
        raise ConfigError(f"{where}.options.label_map_check: {value!r} is not one of auto, true, false")
    return mode


def label_map_renames(id2label: dict[Any, str], dimension: str, label_map: dict[str, Any] | None, options: dict[str, Any] | None = None) -> bool:
    """True when ``label_map`` assigns labels the model's own names would not (``LABEL_3: cheating``)."""
    if not label_map:
        return False
    nan_opts = {**(options or {}), "missing_labels": "nan"}
    try:
        by_names = resolve_labels(id2label, dimension, None, nan_opts)
    except ConfigError:
        return True  # the names alone are ambiguous: the map decides
    return not np.array_equal(by_names, resolve_labels(id2label, dimension, label_map, nan_opts))


def verify_label_map(spec: ScorerSpec, dimension: str) -> Any:
    """Run the label-map check once in this process (the driver), on CPU, before actors start.

    Returns the :class:`~affalign.scorers.label_check.LabelMapCheck` (None when the spec needs no
    check); raises :class:`ConfigError` when the map looks wrong.
    """
    where = f"scoring.{dimension}"
    mode = label_map_check_mode(spec.options, where)
    if mode == "false" or spec.scorer != "hf" or not spec.model:
        return None
    if mode == "auto":
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(ensure_model_available(spec.model, f"{where}.model"), local_files_only=True)
        id2label = getattr(config, "id2label", None) or {i: f"LABEL_{i}" for i in range(int(config.num_labels))}
        if not label_map_renames(id2label, dimension, spec.label_map, spec.options):
            return None
    scorer = HFClassifierScorer(dataclasses.replace(spec, device="cpu", dtype="float32", num_gpus=0), (dimension,))
    scorer.setup()
    return scorer.label_check


# ---------------------------------------------------------------------------------------------
# Tokenization
# ---------------------------------------------------------------------------------------------


def round_up(n: int, multiple: int = PAD_MULTIPLE) -> int:
    return max(multiple, -(-int(n) // multiple) * multiple)


def pad_flat(flat: np.ndarray, lengths: np.ndarray, pad_id: int, width: int | None = None) -> np.ndarray:
    """Ragged ids (concatenated rows + lengths) to a padded int32 matrix, without a per-row loop."""
    lengths = np.asarray(lengths, np.int64)
    longest = int(lengths.max()) if len(lengths) else 0
    width = round_up(longest) if width is None else max(int(width), longest)
    mat = np.full((len(lengths), width), pad_id, np.int32)
    if len(lengths):
        mat[np.arange(width)[None, :] < lengths[:, None]] = flat
    return mat


class HFTokenizer:
    """A model's fast tokenizer with truncation fixed, producing int32 ids (no torch needed)."""

    def __init__(self, path: str, max_length: int):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        limit = getattr(tok, "model_max_length", None)
        self.max_length = int(max_length)
        if isinstance(limit, int) and 0 < limit < 1_000_000:
            self.max_length = min(self.max_length, limit)
        pad = tok.pad_token_id
        self.pad_id = int(pad if pad is not None else 0)
        self._slow = None
        self._backend = None
        if getattr(tok, "is_fast", False):
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(tok.backend_tokenizer.to_str())  # own copy: settings are ours
            backend.no_padding()
            backend.enable_truncation(self.max_length)
            self._backend = backend
        else:
            self._slow = tok

    def encode_flat(self, texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(concatenated ids int32, lengths int32) of texts, with special tokens, truncated."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts:
            return np.zeros(0, np.int32), np.zeros(0, np.int32)
        if self._backend is not None:
            encode = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
            ids = [e.ids for e in encode(texts)]
        else:
            ids = self._slow(texts, truncation=True, max_length=self.max_length)["input_ids"]
        lengths = np.fromiter(map(len, ids), np.int32, count=len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.int32, count=int(lengths.sum()))
        return flat, lengths

    def tokenize(self, texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(ids int32 ``[n, width]`` padded with the pad id, lengths int32 ``[n]``)."""
        flat, lengths = self.encode_flat(texts)
        return pad_flat(flat, lengths, self.pad_id), lengths


def sub_batches(lengths: np.ndarray, order: np.ndarray, max_rows: int, max_tokens: int, max_width: int, min_rows: int = 1):
    """Yield (row indices, padded width) over rows taken in ``order`` (longest first).

    Rows are grouped by padded width (their length rounded up to a multiple of 8): a sub-batch takes
    the rows of one width group, at most ``max_rows`` rows and ``max_tokens`` padded tokens (so
    long rows come in smaller sub-batches), and runs on into the next (shorter) groups only while it
    has fewer than ``min_rows`` rows. Padding is then mostly the rounding to 8; a pool of 4 x 1,024
    tweet-like rows pads ~14% over the real tokens where equal 1,024-row slices pad ~45%.
    """
    n = len(order)
    if n == 0:
        return
    sorted_len = np.asarray(lengths)[order].astype(np.int64)
    widths = np.maximum(np.minimum(np.maximum(-(-sorted_len // PAD_MULTIPLE) * PAD_MULTIPLE, PAD_MULTIPLE), max_width), sorted_len)
    group_ends = np.append(np.flatnonzero(widths[1:] != widths[:-1]) + 1, n)
    s = 0
    while s < n:
        width = max(int(widths[s]), 1)
        cap = max(1, min(int(max_rows), int(max_tokens) // width))
        group_end = int(group_ends[np.searchsorted(group_ends, s, side="right")])
        e = min(s + cap, max(group_end, s + int(min_rows)), n)
        yield order[s:e], width
        s = e


@lru_cache(maxsize=8)
def _cached_tokenizer(path: str, max_length: int) -> HFTokenizer:
    return HFTokenizer(path, max_length)


def load_tokenizer(spec: ScorerSpec, where: str = "scoring.model") -> HFTokenizer:
    """The tokenizer of ``spec.model`` (cached per process: Ray reuses worker processes)."""
    return _cached_tokenizer(ensure_model_available(spec.model or "", where), int(spec.max_length))


# ---------------------------------------------------------------------------------------------
# The scorer
# ---------------------------------------------------------------------------------------------


# Rows per forward sub-batch when the job gives no batch_size (ScorerSpec.batch_size None): a
# classifier of ~125M parameters at 128 tokens uses a few GB at 1,024 rows, and 80-141 GB GPUs
# need that many to be busy; on CPU larger batches only add padding.
DEFAULT_BATCH_CUDA = DEFAULT_BATCH_GPU


def default_batch_size(device: str) -> int:
    """Sub-batch rows when the job sets none: 1,024 on CUDA, 256 on CPU."""
    return DEFAULT_BATCH_CUDA if device.startswith("cuda") else DEFAULT_BATCH_CPU


def resolve_device(device: str | None, where: str = "scoring.device") -> str:
    """See :func:`affalign.devices.resolve_device`."""
    return devices.resolve_device(device, where)


def _torch_dtype(name: str, device: str):
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return devices.auto_dtype(device, "scoring.dtype auto")
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if name not in table:
        raise ConfigError(f"scoring.dtype: {name!r} is not one of auto, float32, bfloat16, float16")
    return table[name]


class HFClassifierScorer(AffectScorer):
    """One Hugging Face ``AutoModelForSequenceClassification`` scoring one affect dimension."""

    name = "hf"
    tokenized = True
    option_keys: ClassVar[OptionTypes] = {
        "activation": str, "five_foundations": bool, "max_batch_tokens": int, "min_batch_rows": int,
        "missing_labels": (str, float),  # YAML may read `nan` as a float
        "label_map_check": (bool, str),  # true, false or auto
        "tokenize_chunk": int,
    }

    def __init__(self, spec: ScorerSpec, dimensions: tuple[str, ...]):
        super().__init__(spec, dimensions)
        if len(self.dimensions) != 1:
            raise ConfigError(
                f"scoring: the hf scorer serves exactly one dimension per model, got {list(self.dimensions)}; "
                "give each dimension its own scoring.<dimension> section (model, label_map)"
            )
        self.dimension = self.dimensions[0]
        self.where = f"scoring.{self.dimension}"
        if not spec.model:
            raise ConfigError(f"{self.where}.model: the hf scorer needs a model (a hub id or a local directory)")
        if spec.batch_size is not None and int(spec.batch_size) < 1:
            raise ConfigError(f"{self.where}.batch_size: must be >= 1")
        self.labels = DIMENSIONS[self.dimension]
        self.profile = False
        self.reset_timings()
        self._model = None
        self.label_check: Any = None  # the label-map check's outcome, when it ran

    # -- setup ------------------------------------------------------------------------------

    def device(self) -> str:
        return resolve_device(self.spec.device, f"{self.where}.device")

    @property
    def batch_size(self) -> int:
        """Rows per forward sub-batch: the spec's, else :func:`default_batch_size` of the device."""
        if self.spec.batch_size is not None:
            return int(self.spec.batch_size)
        return default_batch_size(getattr(self, "_device", None) or self.device())

    def uses_gpu(self) -> bool:
        try:
            return self.device().startswith("cuda")
        except ConfigError:
            return False

    def setup(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification

        path = ensure_model_available(self.spec.model or "", f"{self.where}.model")
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        id2label = getattr(config, "id2label", None) or {i: f"LABEL_{i}" for i in range(int(config.num_labels))}
        self.src = resolve_labels(id2label, self.dimension, self.spec.label_map, self.spec.options, self.where)
        activation = str(self.spec.options.get("activation", "sigmoid")).lower()
        if activation not in ("sigmoid", "softmax"):
            raise ConfigError(f"{self.where}.options.activation: {activation!r} is not one of sigmoid, softmax")
        self.activation = activation
        if activation == "sigmoid" and getattr(config, "problem_type", None) == "single_label_classification":
            log.warning("%s: %s was trained single-label (softmax) but is scored with sigmoid; set options.activation: softmax if that is wrong", self.where, self.spec.model)
        self._device = self.device()
        self._dtype = _torch_dtype(self.spec.dtype, self._device)
        self.tokenizer = _cached_tokenizer(path, int(self.spec.max_length))
        self.pad_id = self.tokenizer.pad_id
        # on CUDA the weights load straight onto the GPU (devices.load_kwargs), not via host RAM
        placement = devices.load_kwargs(self._device)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(path, dtype=self._dtype, local_files_only=True, **placement)
        except (ValueError, OSError, KeyError) as exc:
            raise ConfigError(f"{self.where}.model: cannot load {self.spec.model!r} as a sequence classifier: {exc}") from exc
        self._model = (model if "device_map" in placement else model.to(self._device)).eval()
        present = np.flatnonzero(self.src >= 0)
        self._present = present
        self._sel = torch.as_tensor(self.src[present], dtype=torch.long, device=self._device)
        self._cuda = self._device.startswith("cuda")
        if self._cuda:
            self._copy_stream = torch.cuda.Stream(device=self._device)
        mode = label_map_check_mode(self.spec.options, self.where)
        if mode == "true" or (mode == "auto" and label_map_renames(id2label, self.dimension, self.spec.label_map, self.spec.options)):
            self._check_label_map()

    def _check_label_map(self) -> None:
        """Score the probe sentences once and stop on a map that looks permuted (see label_check)."""
        from affalign.scorers.label_check import check_scorer, enforce

        try:
            self.label_check = check_scorer(self.score, self.dimension, self.src)
            enforce(self.label_check, self.where)
        except BaseException:
            self._model = None  # a scorer whose map failed the check is not left usable
            raise

    # -- timings ----------------------------------------------------------------------------

    def reset_timings(self) -> None:
        """Seconds spent (summed over calls): tokenize (CPU wall), h2d and forward (CUDA events
        when on CUDA, wall time on CPU), plus rows and sub-batches. Collected while ``profile``."""
        self.timings: dict[str, float] = {"tokenize_s": 0.0, "h2d_s": 0.0, "forward_s": 0.0, "rows": 0, "sub_batches": 0, "padded_tokens": 0, "tokens": 0}

    # -- public API -------------------------------------------------------------------------

    def tokenize(self, texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(input ids int32 ``[n, width]``, lengths int32 ``[n]``) for :meth:`score_tokenized`."""
        if self._model is None:
            self.setup()
        return self.tokenizer.tokenize(texts)

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self._model is None:
            self.setup()
        texts = list(texts)
        n = len(texts)
        bs = self.batch_size
        chunk = int(self.spec.options.get("tokenize_chunk", 0) or 2 * bs)
        if n <= chunk:
            t0 = time.perf_counter()
            ids, lengths = self.tokenizer.tokenize(texts)
            if self.profile:
                self.timings["tokenize_s"] += time.perf_counter() - t0
            return self.score_tokenized(ids, lengths)
        # Chunks are cut from the texts sorted by character length, so each chunk (tokenized in a
        # thread while the previous one runs) holds rows of similar token length: little padding.
        by_chars = np.argsort(np.fromiter((-len(t) if isinstance(t, str) else 0 for t in texts), np.int64, count=n), kind="stable")
        out = np.empty((n, len(self._present)), np.float32)
        self._run(self._chunks_from_thread(texts, by_chars, chunk), out)
        return self._finish(out)

    def score_tokenized(self, ids: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """Scores of pre-tokenized rows: ``ids`` int ``[n, width]`` (pad after ``lengths[i]``)."""
        if self._model is None:
            self.setup()
        ids = np.asarray(ids)
        lengths = np.asarray(lengths, np.int64)
        if ids.ndim != 2 or lengths.shape != (ids.shape[0],):
            raise ValueError(f"score_tokenized: ids must be [n, width] and lengths [n], got {ids.shape} and {lengths.shape}")
        if len(lengths) and int(lengths.max()) > ids.shape[1]:
            raise ValueError("score_tokenized: a length exceeds the width of ids")
        if ids.dtype != np.int32:
            ids = ids.astype(np.int32)
        out = np.empty((ids.shape[0], len(self._present)), np.float32)
        self._run(iter([(np.arange(ids.shape[0]), ids, lengths)]), out)
        return self._finish(out)

    # -- internals --------------------------------------------------------------------------

    def _finish(self, sel: np.ndarray) -> dict[str, np.ndarray]:
        n = sel.shape[0]
        if len(self._present) == len(self.labels):
            return {self.dimension: sel}
        out = np.full((n, len(self.labels)), np.nan, np.float32)
        out[:, self._present] = sel
        return {self.dimension: out}

    def _chunks_from_thread(self, texts: list[str], rows: np.ndarray, chunk: int):
        """Yield (output rows, ids, lengths) per chunk of ``rows``, tokenized one chunk ahead in a thread."""
        q: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()
        profile = self.profile

        def produce() -> None:
            try:
                for start in range(0, len(rows), chunk):
                    t0 = time.perf_counter()
                    part = rows[start : start + chunk]
                    ids, lengths = self.tokenizer.tokenize([texts[i] for i in part])
                    item = (part, ids, lengths, time.perf_counter() - t0)
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                q.put(exc)
                return
            q.put(None)

        worker = threading.Thread(target=produce, name="affalign-tokenize", daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                part, ids, lengths, dt = item
                if profile:
                    self.timings["tokenize_s"] += dt
                yield part, ids, lengths
        finally:
            stop.set()
            worker.join(timeout=5)

    def _run(self, chunks, out: np.ndarray) -> None:
        """Forward every chunk's rows in length-sorted sub-batches; write rows of ``out`` in place.

        A sticky CUDA error (illegal memory access, device-side assert) ends the actor so Ray
        restarts it with a fresh CUDA context, instead of reaching the stage's row isolation,
        which would quarantine every later row of this actor (:mod:`affalign.devices`).
        """
        try:
            self._run_sub_batches(chunks, out)
        except Exception as exc:
            devices.die_on_sticky_cuda_error(exc, f"{self.where} ({self.spec.model})")
            raise

    def _run_sub_batches(self, chunks, out: np.ndarray) -> None:
        import torch

        bs = self.batch_size
        budget = int(self.spec.options.get("max_batch_tokens", 0) or bs * BUDGET_WIDTH)
        min_rows = int(self.spec.options.get("min_batch_rows", 0) or max(1, bs // 4))
        pending: deque = deque()
        with torch.inference_mode():
            for rows, ids, lengths in chunks:
                order = np.argsort(-lengths, kind="stable")
                for idx, width in sub_batches(lengths, order, bs, budget, ids.shape[1], min_rows):
                    if self.profile:
                        self.timings["sub_batches"] += 1
                        self.timings["rows"] += len(idx)
                        self.timings["padded_tokens"] += len(idx) * width
                        self.timings["tokens"] += int(lengths[idx].sum())
                    launch = self._launch_cuda if self._cuda else self._launch_cpu
                    pending.append(launch(ids, lengths, idx, width, rows))
                    while len(pending) > COLLECT_LAG:
                        self._collect(pending.popleft(), out)
            while pending:
                self._collect(pending.popleft(), out)

    def _activate(self, logits):
        import torch

        logits = logits.float()
        if self.activation == "softmax":
            probs = torch.softmax(logits, dim=-1)
        else:
            probs = torch.sigmoid(logits)
        return probs.index_select(1, self._sel)

    def _launch_cpu(self, ids, lengths, idx, width, rows):
        """The CPU forward is synchronous; it goes through the same pending/collect path as CUDA."""
        import torch

        t0 = time.perf_counter()
        sub = torch.from_numpy(np.ascontiguousarray(ids[idx, :width]))
        lens = torch.from_numpy(lengths[idx].astype(np.int64))
        mask = (torch.arange(width)[None, :] < lens[:, None]).long()
        logits = self._model(input_ids=sub.long(), attention_mask=mask).logits
        probs = self._activate(logits)
        if self.profile:
            self.timings["forward_s"] += time.perf_counter() - t0
        return rows[idx], probs, None, None

    def _launch_cuda(self, ids, lengths, idx, width, rows):
        import torch

        b = len(idx)
        host_ids = torch.empty((b, width), dtype=torch.int32, pin_memory=True)
        np.take(ids[:, :width], idx, axis=0, out=host_ids.numpy())
        host_len = torch.empty(b, dtype=torch.int32, pin_memory=True)
        host_len.numpy()[:] = lengths[idx]
        compute = torch.cuda.current_stream(self._device)
        ev = None
        if self.profile:
            ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        with torch.cuda.stream(self._copy_stream):
            if ev:
                ev[0].record()
            d_ids = host_ids.to(self._device, non_blocking=True)
            d_len = host_len.to(self._device, non_blocking=True)
            if ev:
                ev[1].record()
        compute.wait_stream(self._copy_stream)
        d_ids.record_stream(compute)
        d_len.record_stream(compute)
        if ev:
            ev[2].record()
        mask = (torch.arange(width, device=self._device)[None, :] < d_len[:, None]).long()
        logits = self._model(input_ids=d_ids.long(), attention_mask=mask).logits
        probs = self._activate(logits)
        if ev:
            ev[3].record()
        host_out = torch.empty(probs.shape, dtype=torch.float32, pin_memory=True)
        host_out.copy_(probs, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return rows[idx], host_out, done, ev

    def _collect(self, item, out: np.ndarray) -> None:
        rows, host_out, done, ev = item
        if done is not None:
            done.synchronize()
        out[rows] = host_out.numpy()
        if ev:
            self.timings["h2d_s"] += ev[0].elapsed_time(ev[1]) / 1000.0
            self.timings["forward_s"] += ev[2].elapsed_time(ev[3]) / 1000.0
