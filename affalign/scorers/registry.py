"""Lazy registry of scorers: a backend's heavy imports happen only when it is built."""

from __future__ import annotations

import importlib

from affalign.errors import ConfigError
from affalign.scorers.base import AffectScorer, ScorerSpec

# name -> "module:Class"; modules are imported on first use.
SCORERS: dict[str, str] = {
    "offline": "affalign.scorers.offline:OfflineScorer",
    "hf": "affalign.scorers.hf_classifier:HFClassifierScorer",
    "lexicon": "affalign.scorers.lexicon:LexiconScorer",
    "judge": "affalign.scorers.judge:LMJudgeScorer",
}


def make_scorer(spec: ScorerSpec, dimensions: tuple[str, ...]) -> AffectScorer:
    """Build (but do not set up) the scorer a spec names."""
    target = SCORERS.get(spec.scorer)
    if target is None and ":" in spec.scorer:
        target = spec.scorer  # a plugin, "package.module:Class", importable on every node
    if target is None:
        raise ConfigError(f"scoring: unknown scorer {spec.scorer!r}; choose one of {sorted(SCORERS)} or name a plugin as 'module:Class'")
    module_name, cls_name = target.split(":", 1)
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"scoring: cannot load scorer {spec.scorer!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, AffectScorer)):
        raise ConfigError(f"scoring: {spec.scorer!r} is not an AffectScorer subclass")
    return cls(spec, dimensions)


def label_thresholds(specs: dict[str, ScorerSpec]) -> dict[str, list[float]]:
    """Per-label decision thresholds, by dimension, of the scorers that ship them (the offline scorer).

    ``reduce.mode: threshold`` counts a label present where its probability is >= its threshold;
    dimensions whose scorer has none (hf, lexicon, judge) use ``reduce.tau``. Lists in label order.
    """
    out: dict[str, list[float]] = {}
    for dim, spec in specs.items():
        if spec.scorer == "offline":
            from affalign.scorers.offline import OfflineScorer

            out[dim] = [float(t) for t in OfflineScorer(spec, (dim,)).thresholds()[dim]]
    return out
