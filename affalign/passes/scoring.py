"""The scoring passes of a job: which dimensions share a pass, and where each pass runs.

Dimensions that share one scorer spec (or, for the offline scorer, one encoder) are scored in one
pass; the placement gives each pass its GPUs per actor.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from affalign.config import ScoringConfig
from affalign.runtime.placement import Placement
from affalign.scorers.base import ScorerSpec
from affalign.stages.base import Stage
from affalign.stages.classify import AffectScoreStage, classifier_stages

# scorers whose dimensions share one encoder: every dimension costs one more small head, so any
# dimensions with the same encoder settings are scored in one pass (one encoding of each text)
SHARED_ENCODER_SCORERS = ("offline",)


def _pass_key(spec: ScorerSpec) -> tuple:
    """What makes two dimensions need separate passes; for a shared-encoder scorer, neither its
    ``label_map`` (unused) nor its ``batch_size`` (the pass takes the largest) does."""
    if spec.scorer not in SHARED_ENCODER_SCORERS:
        return spec.key()
    return (spec.scorer, spec.model, spec.device, spec.dtype, spec.max_length, spec.num_gpus, tuple(sorted((k, repr(v)) for k, v in spec.options.items())))


def scorer_groups(scoring: ScoringConfig) -> list[tuple[ScorerSpec, tuple[str, ...]]]:
    """Dimensions that share one scorer spec (or one encoder, see ``_pass_key``) are scored in one pass."""
    groups: dict[tuple, tuple[ScorerSpec, list[str]]] = {}
    for dim in scoring.dimensions:
        spec = scoring.spec(dim)
        key = _pass_key(spec)
        if key in groups:
            first, dims = groups[key]
            if spec.batch_size is not None and (first.batch_size is None or spec.batch_size > first.batch_size):
                groups[key] = (dataclasses.replace(first, batch_size=spec.batch_size), dims)
            groups[key][1].append(dim)
        else:
            groups[key] = (spec, [dim])
    return [(spec, tuple(dims)) for spec, dims in groups.values()]


def scoring_stages(scoring: ScoringConfig, placement: Placement, budget: dict[str, Any] | None = None) -> list[Stage]:
    """Every scoring pass of a job, placed: GPUs per actor follow the cluster (``Placement.scorer_gpus``).

    ``budget``: the job's spending handle (``{"keeper": NAME}``), given to LM-judge scorers that set none.
    """
    if not scoring.enabled:
        return []
    groups = scorer_groups(scoring)
    gpus = placement.scorer_gpus([spec for spec, _ in groups])
    stages: list[Stage] = []
    for (spec, dims), num_gpus in zip(groups, gpus, strict=True):
        if spec.batch_size is None:
            # the device's default, fixed here where the device is known (actors, tokenizer and
            # scorer then agree on it)
            spec = dataclasses.replace(spec, batch_size=spec.rows_per_batch(num_gpus > 0))
        if spec.scorer == "judge" and budget and "budget" not in spec.options:
            # the judge draws on the job's budget, the same one generation uses
            spec = dataclasses.replace(spec, options={**spec.options, "budget": dict(budget)})
        stages += classifier_stages(spec, dims, num_gpus)
    return stages


def describe(stages: list[Stage]) -> list[str]:
    """One line per scoring pass, for the log: its scorer and dimensions."""
    return [f"{st.spec.scorer} [{', '.join(st.dimensions)}]" for st in stages if isinstance(st, AffectScoreStage)]
