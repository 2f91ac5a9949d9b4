"""The one GPU/CPU decision of a pass, made from the Ray cluster's resources.

Made on the driver from what the cluster has (on a cluster the driver runs on a head without a
GPU, so the driver's own CUDA says nothing), never inside a stage. Stages receive the decision
as numbers in their ``resources``; nothing below this module asks where it runs.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from affalign.backends.base import ModelSpec
from affalign.errors import ConfigError
from affalign.scorers.base import ScorerSpec

log = logging.getLogger("affalign")

# scorers that run a transformer and can use a GPU
GPU_SCORERS = ("hf", "offline")


@dataclass(frozen=True)
class Placement:
    """The cluster's CPU and GPU totals, and the per-actor GPU share of every GPU pass of a job."""

    cpus: float
    gpus: float
    memory: float = 0.0  # bytes of object-free memory Ray may schedule (its "memory" resource); 0: unknown

    @classmethod
    def from_cluster(cls, resources: dict[str, float] | None) -> Placement:
        res = resources or {}
        return cls(cpus=float(res.get("CPU", 1.0)), gpus=float(res.get("GPU", 0.0)), memory=float(res.get("memory", 0.0)))

    @property
    def resources(self) -> dict[str, float]:
        """The cluster's totals in Ray's names (what the adapter sizes pools from)."""
        return {"CPU": self.cpus, "GPU": self.gpus}

    def scorer_wants_gpu(self, spec: ScorerSpec) -> bool:
        """Whether a scoring pass left to the placement (``num_gpus`` unset) runs on GPUs."""
        return spec.num_gpus is None and spec.scorer in GPU_SCORERS and spec.device != "cpu"

    def scorer_gpus(self, specs: list[ScorerSpec]) -> list[float]:
        """GPUs per actor of each scoring pass, in order.

        ``num_gpus`` set: that. Left unset: ``device: auto`` (or ``cuda``) gets GPUs when the cluster
        has any; passes share: each actor asks for ``GPUs / passes`` (two classifiers on one GPU:
        0.5 each, so both pools fit and neither waits forever).
        """
        wanting = [s for s in specs if self.scorer_wants_gpu(s)]
        share = min(1.0, self.gpus / len(wanting)) if wanting and self.gpus > 0 else 0.0
        # a cold cluster (GPU nodes at min_workers 0): passes that must run on CUDA still ask for
        # GPUs, sharing one node's GPU, so the autoscaler starts one as it does for generation
        cold = 1.0 / len(wanting) if wanting and self.gpus <= 0 else 0.0
        out = []
        for spec in specs:
            if spec.num_gpus is not None:
                gpus = float(spec.num_gpus)
                if gpus > 0 and self.gpus < gpus:
                    log.warning(
                        "a scoring pass asks for %s GPU per actor but the Ray cluster has %s GPU: its actors wait for a GPU node "
                        "(autoscaling); on a machine without a GPU set num_gpus: 0",
                        gpus,
                        self.gpus,
                    )
                out.append(gpus)
            elif self.scorer_wants_gpu(spec) and share == 0.0 and spec.device.startswith("cuda"):
                log.warning(
                    "a %s scoring pass has device %s but the Ray cluster has no GPU yet: its actors ask for %.2g GPU "
                    "and wait for a GPU node (autoscaling); on a machine without a GPU use device: auto or cpu",
                    spec.scorer,
                    spec.device,
                    cold,
                )
                out.append(cold)
            else:
                out.append(share if self.scorer_wants_gpu(spec) else 0.0)
        return out

    def generation_uses_gpu(self, model: ModelSpec) -> bool:
        """Whether a model's replicas ask Ray for a GPU: decided from the cluster, not the driver's machine."""
        if model.backend != "hf":
            return False
        if model.options.get("device_map"):
            return True
        device = str(model.options.get("device") or "auto").lower()
        if device == "auto":
            return self.gpus > 0
        return device.startswith("cuda")

    def gpus_per_replica(self, model: ModelSpec) -> float:
        return float(model.options.get("gpus_per_replica") or 1) if self.generation_uses_gpu(model) else 0.0

    def check_generation(self, model: ModelSpec) -> None:
        """Refuse (or loudly warn about) a model that would run on CPU because the cluster has no GPU.

        A 7B model on CPU in float32 takes 28 GB per replica and hours per topic; it is refused
        unless its options say ``allow_cpu: true`` (smaller models run, with a warning when the
        device was left to ``auto``).
        """
        if model.backend != "hf" or self.generation_uses_gpu(model):
            return
        device = str(model.options.get("device") or "auto").lower()
        billions = model_billions(model)
        if billions is not None and billions >= CPU_REFUSE_BILLIONS and not model.options.get("allow_cpu"):
            raise ConfigError(
                f"model {model.id!r} (~{billions:g}B parameters) would generate on CPU: the Ray cluster has no GPU"
                + (" and its device is cpu" if device == "cpu" else "")
                + "; give the cluster a GPU, set options.device: cuda to wait for a GPU node, "
                "or options.allow_cpu: true to run it on CPU anyway"
            )
        if device == "auto":
            log.warning("model %s generates on CPU: the Ray cluster has no GPU (device: auto)", model.id)

    def generation_replicas(self, model: ModelSpec, gpus_reserved: float = 0.0) -> int | None:
        """At most this many replicas of a model (None: no cap beyond the pool's).

        On GPUs: the GPUs not ``reserved`` for scoring pools running beside it, so generation never
        takes the GPU a scoring pass needs. On CPU: as many fp32 copies as half the cluster's
        memory holds (a 7B model is 28 GB a copy).
        """
        per = self.gpus_per_replica(model)
        if per > 0:
            free = max(self.gpus - gpus_reserved, 0.0)
            return max(1, int(math.floor(free / per + 1e-9)))
        billions = model_billions(model)
        if model.backend == "hf" and billions is not None and self.memory > 0:
            return max(1, int(self.memory * 0.5 // (billions * 4e9)))
        return None

    def overlap_generation_and_scoring(self, models: list[ModelSpec], scoring_gpus: list[float]) -> bool:
        """Whether a model's responses can be scored while the next model generates.

        Only when both fit at once: with GPUs in play, one generation replica of every model plus
        every scoring pass (one actor each). Otherwise a scoring pool would wait for the whole
        generation, and Ray Data's no-progress guard would end the job after every model had
        generated; the passes then run one after the other.
        """
        gen = max((self.gpus_per_replica(m) for m in models), default=0.0)
        need = sum(scoring_gpus)
        if gen <= 0 and need <= 0:
            return True
        return gen + need <= self.gpus + 1e-9


# models at or above this size are refused on CPU unless options.allow_cpu
CPU_REFUSE_BILLIONS = 3.0
_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


def model_billions(model: ModelSpec) -> float | None:
    """Parameters in billions: ``options.params_b``, else read from the model's id or path
    (``llama-2-7b-chat`` → 7, ``SmolLM2-135M`` → 0.135); None when neither says."""
    given = model.options.get("params_b")
    if given is not None:
        return float(given)
    for text in (model.id, model.path or ""):
        for m in _SIZE.finditer(text.replace("_", "-")):
            value = float(m.group(1))
            return value if m.group(2).lower() == "b" else value / 1000.0
    return None
