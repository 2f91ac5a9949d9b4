"""The scorer interface: texts in, one probability matrix per affect dimension out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from affalign.registry import OptionTypes, option_types
from affalign.schema import DIMENSIONS

DEFAULT_BATCH_GPU = 1024  # sized for 80–141 GB GPUs; a small one gets less where the job says so
DEFAULT_BATCH_CPU = 256


@dataclass(frozen=True)
class ScorerSpec:
    """Which scorer to build and how (from the job config's ``scoring.<dimension>`` section)."""

    scorer: str = "offline"  # offline | hf | lexicon | judge
    model: str | None = None  # hub id or local dir (hf), model id (judge)
    # rows per scorer sub-batch; None: the device's default (1,024 on a GPU, 256 on CPU; see rows_per_batch)
    batch_size: int | None = None
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    max_length: int = 128
    label_map: dict[str, str] | None = None  # model label -> canonical label
    num_gpus: float | None = None  # per actor; None: 1 when a GPU is present, else 0
    options: dict[str, Any] = field(default_factory=dict)

    def rows_per_batch(self, gpu: bool) -> int:
        """``batch_size``, or the default for where the scorer runs (a big GPU takes far more rows)."""
        if self.batch_size is not None:
            return int(self.batch_size)
        return DEFAULT_BATCH_GPU if gpu else DEFAULT_BATCH_CPU

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
    # scorers that also take token ids (an hf classifier fed by a CPU TokenizeStage) set this
    # and implement score_tokenized; pad_id is the id that pads those rows
    tokenized: ClassVar[bool] = False
    # the ``spec.options`` keys the scorer reads (anything else is a ConfigError at load)
    option_keys: ClassVar[OptionTypes | frozenset[str]] = {}
    pad_id: int = 0
    # benchmarks switch profiling on; a scorer that profiles fills ``timings``
    profile: bool = False
    timings: dict[str, float] = {}  # noqa: RUF012 - replaced per instance by scorers that profile

    @classmethod
    def allowed_options(cls, spec: ScorerSpec) -> dict[str, Any]:
        """The ``spec.options`` this scorer reads, with the type each value must have."""
        return option_types(cls.option_keys)

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

    def score_tokenized(self, ids: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """Score padded token ids (rows of ``ids``, true lengths ``lengths``); only when ``tokenized``."""
        raise NotImplementedError(f"scorer {self.name!r} does not take token ids")

    def uses_gpu(self) -> bool:
        return False
