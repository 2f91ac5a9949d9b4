"""LM generation as a stage: plan rows in, the same rows with their generations out."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from typing import Any, ClassVar

import pyarrow as pa

from affalign.backends.base import Generation, GenerationBackend, ModelSpec, make_backend
from affalign.stages.base import Resources, Stage

log = logging.getLogger("affalign")

OUTPUT_FIELDS: tuple[pa.Field, ...] = (
    pa.field("text", pa.string()),
    pa.field("finish_reason", pa.string()),
    pa.field("prompt_tokens", pa.int32()),
    pa.field("completion_tokens", pa.int32()),
    pa.field("error", pa.string()),
)


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class GenerateStage(Stage):
    """Generates one model's responses for plan rows (``prompt``, ``row_seed``).

    One replica holds one loaded model: an actor with one GPU when the model runs on a GPU (so one
    replica per GPU), else one CPU. A batch that fails gets ``finish_reason="error"`` and the
    error message on every row (a batch that runs out of GPU memory is split in halves first);
    the store does not count error rows as done, so a rerun retries them.

    Model options read here: ``gpus_per_replica`` (default 1; more for a model sharded with
    ``device_map``), ``max_replicas`` (caps the actor pool), ``batch_delay_s`` (sleep after each
    batch: throttling, and tests of interrupted runs).
    """

    name = "generate"
    inputs: ClassVar[tuple[str, ...]] = ("plan_id", "model", "prompt", "row_seed")
    outputs: ClassVar[tuple[str, ...]] = tuple(f.name for f in OUTPUT_FIELDS)

    def __init__(self, model: ModelSpec, use_gpu: bool | None = None, batches: int | None = None):
        self.model = model
        self.use_gpu = use_gpu
        # batches to generate: the pool starts that many replicas at once (at most what fits),
        # since every replica is busy for the whole pass; None: Ray Data's autoscaling from one
        self.batches = batches
        self._backend: GenerationBackend | None = None
        self._takes_seeds = False

    def _gpu(self) -> bool:
        if self.use_gpu is None:
            self.use_gpu = make_backend(self.model).uses_gpu()
        return bool(self.use_gpu)

    def resources(self) -> Resources:
        max_replicas = self.model.options.get("max_replicas")
        if self.model.backend == "openai":
            # one replica holds the model's budget, so the budget is exact; requests still run
            # concurrently inside it (the backend's `concurrency`)
            max_replicas = 1
        return Resources(
            num_cpus=1,
            num_gpus=float(self.model.options.get("gpus_per_replica") or 1) if self._gpu() else 0,
            batch_size=self.model.batch_size,
            actor=True,
            min_actors=max(1, int(self.batches or 1)),
            max_actors=int(max_replicas) if max_replicas else None,
            tasks_per_actor=1,
        )

    def setup(self) -> None:
        model = self.model
        if self.use_gpu is False and model.backend == "hf" and str(model.options.get("device") or "auto") == "auto":
            model = dataclasses.replace(model, options={**model.options, "device": "cpu"})
        self._backend = make_backend(model)
        self._backend.setup()
        self._takes_seeds = "seeds" in inspect.signature(self._backend.generate).parameters

    def _generate(self, prompts: list[str], seeds: list[int]) -> list[Generation]:
        assert self._backend is not None
        try:
            if self._takes_seeds:
                return self._backend.generate(prompts, self.model.params, seeds=seeds)  # type: ignore[call-arg]
            return self._backend.generate(prompts, self.model.params)
        except Exception as e:  # noqa: BLE001 - a failed batch becomes error rows, the run goes on
            if _is_oom(e) and len(prompts) > 1:
                try:
                    import torch

                    torch.cuda.empty_cache()
                except Exception:  # noqa: BLE001
                    pass
                half = len(prompts) // 2
                log.warning("model %s: out of memory on %d rows, retrying in halves", self.model.id, len(prompts))
                return self._generate(prompts[:half], seeds[:half]) + self._generate(prompts[half:], seeds[half:])
            log.warning("model %s: batch of %d rows failed: %s: %s", self.model.id, len(prompts), type(e).__name__, e)
            msg = f"{type(e).__name__}: {e}"[:2000]
            return [Generation(text=None, finish_reason="error", error=msg) for _ in prompts]

    def process(self, batch: pa.Table) -> pa.Table:
        others = set(batch.column("model").to_pylist()) - {self.model.id}
        if others:
            raise ValueError(f"stage generate for model {self.model.id!r} got rows of {sorted(others)}")
        prompts = batch.column("prompt").to_pylist()
        seeds = [int(s) for s in batch.column("row_seed").to_pylist()]
        gens = self._generate(prompts, seeds) if prompts else []
        if len(gens) != len(prompts):
            raise RuntimeError(f"model {self.model.id!r}: backend returned {len(gens)} generations for {len(prompts)} prompts")
        delay = float(self.model.options.get("batch_delay_s") or 0)
        if delay:
            time.sleep(delay)
        values: dict[str, list[Any]] = {
            "text": [g.text for g in gens],
            "finish_reason": [g.finish_reason for g in gens],
            "prompt_tokens": [g.prompt_tokens for g in gens],
            "completion_tokens": [g.completion_tokens for g in gens],
            "error": [g.error for g in gens],
        }
        drop = [c for c in self.outputs if c in batch.column_names]
        if drop:
            batch = batch.drop_columns(drop)
        for f in OUTPUT_FIELDS:
            batch = batch.append_column(f, pa.array(values[f.name], f.type))
        return batch
