"""The scorer interface: texts in, one probability matrix per affect dimension out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from affalign.schema import DIMENSIONS


@dataclass(frozen=True)
class ScorerSpec:
    """Which scorer to build and how (from the job config's ``scoring.<dimension>`` section)."""

    scorer: str = "offline"  # offline | hf | lexicon | judge
    model: str | None = None  # hub id or local dir (hf), model id (judge)
    batch_size: int = 256
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    max_length: int = 128
    label_map: dict[str, str] | None = None  # model label -> canonical label
    num_gpus: float | None = None  # per actor; None: 1 when a GPU is present, else 0
    options: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple:
        """Identity of the scorer, so dimensions with the same scorer share one pass."""
        return (
            self.scorer,
            self.model,
            self.batch_size,
            self.device,
            self.dtype,
            self.max_length,
            tuple(sorted((self.label_map or {}).items())),
            self.num_gpus,
            tuple(sorted((k, repr(v)) for k, v in self.options.items())),
        )


class AffectScorer:
    """Scores texts on the dimensions it was built for.

    ``score`` returns, for each dimension, a float32 matrix of shape ``(len(texts),
    len(DIMENSIONS[dimension]))`` with probabilities in [0, 1], columns in canonical label order.
    A scorer that cannot score a text (an LM judge whose answers stay malformed) puts NaN in its row,
    never zeros.
    """

    name = "base"

    def __init__(self, spec: ScorerSpec, dimensions: tuple[str, ...]):
        unknown = [d for d in dimensions if d not in DIMENSIONS]
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown}; expected {sorted(DIMENSIONS)}")
        self.spec = spec
        self.dimensions = tuple(dimensions)

    def setup(self) -> None:
        """Load models; called once per process or actor."""

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def uses_gpu(self) -> bool:
        return False
