"""Typed job config: dataclasses loaded from the YAML specs in ``jobs/`` with ``--set`` overrides.

Every key is checked: an unknown key or a value of the wrong type is a :class:`ConfigError`
naming the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from affalign.backends.base import ModelSpec
from affalign.backends.models import resolve_model
from affalign.errors import ConfigError
from affalign.schema import PROMPT_MODES
from affalign.scorers.base import ScorerSpec
from affalign.scorers.registry import check_scorer_options


@dataclass
class IdeologyConfig:
    """Groups inferred from the news domains users share (Appendix A.1, Rao et al. 2021).

    When enabled, a pass over the corpus gives each user the mean bias of the domains they share
    (a domain -> bias table in [-1, 1]). With ``cutoff: tails`` (the default, after Rao et al.
    2021) the users in the bottom ``tails[0]`` share of that user-score distribution get
    ``labels[0]`` and those in the top ``tails[1]`` share ``labels[1]`` (30% each by default);
    with ``cutoff: threshold`` users at or below ``-threshold`` get ``labels[0]``, at or above
    ``+threshold`` ``labels[1]`` (``threshold`` defaults to 0.2 there and is an error with
    ``tails``). Neutral users and users with fewer than ``min_domains`` matched shares are left out
    (their tweets filtered as ``user_not_labelled``) and counted. See :mod:`affalign.ideology`.
    """

    enabled: bool = False
    domains_column: str = "urls"  # per row: a list of URLs/domains, or one (CSV: space-separated)
    bias_table: str = "example"  # "example" (the shipped example table) or a CSV path (domain,bias)
    cutoff: str = "tails"  # tails | threshold
    tails: list[float] = field(default_factory=lambda: [0.3, 0.3])  # bottom, top share of users
    threshold: float | None = None  # cutoff: threshold only (None there: 0.2)
    min_domains: int = 3
    labels: list[str] = field(default_factory=lambda: ["liberal", "conservative"])


@dataclass
class InputConfig:
    """Where the tweets are and how to read them."""

    path: str = ""
    format: str = "auto"  # auto | parquet | jsonl | csv
    group_column: str = "party"
    # Allowed group values; rows with another value are rejected as unknown_group.
    # Empty: every non-empty value is a group.
    groups: list[str] = field(default_factory=list)
    drop_retweets: bool = True
    drop_quotes: bool = True
    # groups from shared domains instead of the group column
    ideology: IdeologyConfig = field(default_factory=IdeologyConfig)


@dataclass
class ScoringConfig:
    """Affect scoring of tweets and generations."""

    enabled: bool = True
    dimensions: list[str] = field(default_factory=lambda: ["emotion", "moral"])
    emotion: ScorerSpec = field(default_factory=ScorerSpec)
    moral: ScorerSpec = field(default_factory=ScorerSpec)
    # Share of tagged human tweets to score, chosen by a hash of tweet_id (deterministic).
    sample_fraction: float = 1.0

    def spec(self, dimension: str) -> ScorerSpec:
        return getattr(self, dimension)


@dataclass
class TaggingConfig:
    """How tweets get their topics (see affalign.tagging.semantic).

    ``keywords`` is the paper's keyword tagging; ``semantic`` assigns the topics whose description or
    exemplar sentences are nearest to the tweet in MiniLM space (cosine >= ``cut``); ``hybrid`` adds to
    the keyword matches the semantic matches at or above the stricter ``hybrid_cut``. Cuts left unset
    come from the calibration stored in the exemplars file.
    """

    mode: str = "keywords"  # keywords | semantic | hybrid
    exemplars: str = ""  # topic descriptions and exemplars; default: the built-in <taxonomy>.semantic.yaml
    cut: float | None = None
    hybrid_cut: float | None = None
    device: str = "cpu"  # MiniLM runs on CPU by default: its batches are small next to the scorers'
    batch_size: int = 256


@dataclass
class ReduceConfig:
    """How per-topic distributions are formed (see affalign.metrics)."""

    mode: str = "mean"  # mean | threshold
    tau: float = 0.5


@dataclass
class BudgetConfig:
    """One spending limit for the whole job (OpenAI generation and LM-judge scorers draw on it).

    Limits left unset are not enforced (spending is still counted); ``prices`` (``{model: {input,
    output}}`` in $ per 1K tokens) add to or override the shipped table.
    """

    max_requests: int | None = None
    max_tokens: int | None = None
    max_dollars: float | None = None
    prices: dict[str, Any] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.max_requests, self.max_tokens, self.max_dollars))

    def limits(self) -> dict[str, Any]:
        """The mapping a :class:`~affalign.backends.budget.Budget` is built from."""
        out: dict[str, Any] = {k: v for k, v in (("max_requests", self.max_requests), ("max_tokens", self.max_tokens), ("max_dollars", self.max_dollars)) if v is not None}
        if self.prices:
            out["prices"] = dict(self.prices)
        return out


@dataclass
class GenerationConfig:
    """LM responses per topic (paper §3.1, Table 3)."""

    enabled: bool = False
    # registry names, hub ids/dirs/.gguf files, or mappings (affalign.backends.models)
    models: list[str | dict[str, Any]] = field(default_factory=list)
    modes: list[str] = field(default_factory=lambda: [*PROMPT_MODES])
    n_responses: int = 2000
    seed: int = 0
    # Generate only for these topics (default: every kept topic).
    topics: list[str] = field(default_factory=list)
    max_topics: int = 0  # 0: no limit; else the kept topics with most tweets first
    budget: BudgetConfig = field(default_factory=BudgetConfig)

    def model_specs(self) -> list[ModelSpec]:
        """The models as typed specs: registry defaults, entry and params layered and checked."""
        specs = [resolve_model(entry) for entry in self.models]
        ids = [m.id for m in specs]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ConfigError(f"generation.models: model id(s) {dup} appear more than once")
        return specs


@dataclass
class RayConfig:
    """Where the job runs: embedded local Ray by default, or an existing cluster."""

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    # A pass that moves no data for this long fails with a message naming the stage and the
    # resources it waits for (instead of hanging); -1 waits forever. Generous: a model download
    # or load counts as no progress.
    no_progress_timeout_s: float = 600.0


@dataclass
class StorageConfig:
    """Settings for s3:// paths (credentials come from the standard AWS chain only)."""

    s3_endpoint: str | None = None
    s3_region: str | None = None


@dataclass
class JobConfig:
    """One affalign job: a corpus, its taxonomy, scorers, models and the reduce."""

    name: str = "job"
    dataset: str = "covid"
    taxonomy: str = ""  # built-in name or file; default: the dataset's built-in taxonomy
    input: InputConfig = field(default_factory=InputConfig)
    min_texts_per_group: int = 1000
    tagging: TaggingConfig = field(default_factory=TaggingConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    reduce: ReduceConfig = field(default_factory=ReduceConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    report: bool = True

    @property
    def taxonomy_ref(self) -> str:
        return self.taxonomy or self.dataset

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Content hash of the config (stable across key order)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (arg,) = typing.get_args(hint) or (Any,)
        return [_check_type(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (allowed: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _check_type(value, hints[key], f"{where}.{key}" if where else key)
    return cls(**kwargs)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    """``key.sub=value`` strings to (key, YAML-parsed value) pairs."""
    out = []
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def validate(cfg: JobConfig, source: str) -> JobConfig:
    """Value checks beyond types; messages name the key."""
    from affalign.metrics import MODES
    from affalign.schema import DIMENSIONS

    def bad(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {msg}")

    if cfg.input.format not in ("auto", "parquet", "jsonl", "csv"):
        raise bad("input.format", f"{cfg.input.format!r} is not one of auto, parquet, jsonl, csv")
    if cfg.min_texts_per_group < 1:
        raise bad("min_texts_per_group", "must be >= 1")
    if cfg.reduce.mode not in MODES:
        raise bad("reduce.mode", f"{cfg.reduce.mode!r} is not one of {', '.join(MODES)}")
    if cfg.tagging.mode not in ("keywords", "semantic", "hybrid"):
        raise bad("tagging.mode", f"{cfg.tagging.mode!r} is not one of keywords, semantic, hybrid")
    for key in ("cut", "hybrid_cut"):
        value = getattr(cfg.tagging, key)
        if value is not None and not -1.0 <= value <= 1.0:
            raise bad(f"tagging.{key}", "a cosine similarity must be in [-1, 1]")
    if cfg.tagging.batch_size < 1:
        raise bad("tagging.batch_size", "must be >= 1")
    if cfg.tagging.mode != "keywords":
        from affalign.tagging.semantic import check_tagging

        check_tagging(cfg.taxonomy_ref, cfg.tagging.exemplars, f"{source}: tagging")
    if not 0.0 <= cfg.reduce.tau <= 1.0:
        raise bad("reduce.tau", "must be in [0, 1]")
    if not 0.0 < cfg.scoring.sample_fraction <= 1.0:
        raise bad("scoring.sample_fraction", "must be in (0, 1]")
    for dim in cfg.scoring.dimensions:
        if dim not in DIMENSIONS:
            raise bad("scoring.dimensions", f"{dim!r} is not one of {', '.join(DIMENSIONS)}")
        try:
            check_scorer_options(cfg.scoring.spec(dim), f"scoring.{dim}")
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    for mode in cfg.generation.modes:
        if mode not in PROMPT_MODES:
            raise bad("generation.modes", f"{mode!r} is not one of {', '.join(PROMPT_MODES)}")
    ideo = cfg.input.ideology
    if ideo.enabled:
        from affalign.ideology import check_cutoff

        try:
            check_cutoff(ideo.cutoff, ideo.threshold, ideo.tails, "input.ideology")
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        if ideo.min_domains < 1:
            raise bad("input.ideology.min_domains", "must be >= 1")
        if len(ideo.labels) != 2 or ideo.labels[0] == ideo.labels[1]:
            raise bad("input.ideology.labels", "needs two distinct group names")
        if cfg.input.groups and sorted(cfg.input.groups) != sorted(ideo.labels):
            raise bad("input.groups", f"with input.ideology the groups are its labels {ideo.labels}; leave input.groups empty or equal to them")
    budget = cfg.generation.budget
    for key in ("max_requests", "max_tokens", "max_dollars"):
        value = getattr(budget, key)
        if value is not None and value < 0:
            raise bad(f"generation.budget.{key}", f"must be >= 0, not {value!r}")
    if budget.prices and not budget.enabled:
        raise bad("generation.budget.prices", "prices without a limit (max_requests, max_tokens or max_dollars) do nothing")
    if cfg.generation.enabled:
        try:
            cfg.generation.model_specs()
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    if cfg.generation.n_responses < 1:
        raise bad("generation.n_responses", "must be >= 1")
    return cfg


def _drop_replaced_scorer_options(data: dict[str, Any], pairs: list[tuple[str, Any]]) -> None:
    """``--set scoring.<dim>.scorer=X`` replacing the file's scorer Y drops Y's settings for that dimension.

    The options of the scorer replaced (an hf model's ``model``, ``label_map``, ``batch_size``,
    ``max_length``, ...) do not describe the new one: kept, they would make two dimensions that
    share the offline encoder look like different scorers (two passes, each encoding every text
    again). Settings given by ``--set`` for that dimension are applied afterwards, as usual.
    """
    scoring = data.get("scoring")
    if not isinstance(scoring, dict):
        return
    for key, value in pairs:
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "scoring" or parts[2] != "scorer":
            continue
        section = scoring.get(parts[1])
        if isinstance(section, dict) and section.get("scorer", "offline") != value:
            dropped = sorted(k for k in section if k != "scorer")
            if dropped:
                import logging

                logging.getLogger("affalign").info("scoring.%s: scorer %r replaces %r; its settings %s are dropped", parts[1], value, section.get("scorer", "offline"), ", ".join(dropped))
            scoring[parts[1]] = {}


def load_config(path: str | Path, overrides: list[str] | None = None) -> JobConfig:
    """Load a job YAML, apply ``key=value`` overrides, and validate."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read job config: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a job config must be a mapping")
    pairs = parse_overrides(overrides or [])
    _drop_replaced_scorer_options(data, pairs)
    for key, value in pairs:
        _set_dotted(data, key, value)
    try:
        cfg = _build(JobConfig, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
    return validate(cfg, str(p))


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> JobConfig:
    """Build and validate a config from a mapping (tests and programmatic use)."""
    return validate(_build(JobConfig, data, ""), source)
