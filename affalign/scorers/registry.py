"""Lazy registry of scorers: a backend's heavy imports happen only when it is built."""

from __future__ import annotations

from affalign.registry import Registry, check_options
from affalign.scorers.base import AffectScorer, ScorerSpec

# name -> "module:Class"; modules are imported on first use.
SCORERS: Registry[AffectScorer] = Registry(
    "scorer",
    AffectScorer,
    {
        "offline": "affalign.scorers.offline:OfflineScorer",
        "hf": "affalign.scorers.hf_classifier:HFClassifierScorer",
        "lexicon": "affalign.scorers.lexicon:LexiconScorer",
        "judge": "affalign.scorers.judge:LMJudgeScorer",
    },
    where="scoring",
)


def make_scorer(spec: ScorerSpec, dimensions: tuple[str, ...]) -> AffectScorer:
    """Build (but do not set up) the scorer a spec names."""
    return SCORERS.load(spec.scorer)(spec, dimensions)


def check_scorer_options(spec: ScorerSpec, where: str) -> None:
    """A ConfigError for an option the scorer does not read (a plugin declares its own)."""
    cls = SCORERS.load(spec.scorer)
    check_options(spec.options, cls.allowed_options(spec), where)


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
