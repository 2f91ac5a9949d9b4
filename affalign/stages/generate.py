"""LM generation as a stage: plan rows in, the same rows with their generations out."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from typing import Any, ClassVar

import pyarrow as pa

from affalign import devices
from affalign.backends.base import Generation, GenerationBackend, ModelSpec, make_backend
from affalign.schema import GENERATION_OUTPUT_FIELDS
from affalign.stages.base import Resources, Stage

log = logging.getLogger("affalign")

OUTPUT_FIELDS = GENERATION_OUTPUT_FIELDS


_is_oom = devices.is_oom


def batch_rows(model: ModelSpec, gpu: bool) -> int:
    """Rows per batch handed to one replica.

    The spec's ``batch_size``, except for an HF model on a GPU whose batch size the job left to
    the backend (``options.auto_batch_size``, set by ``backends.models``): it gets up to
    :data:`affalign.devices.AUTO_BATCH_CAP` rows, which the backend cuts into batches sized from
    the GPU memory free after loading (``HFBackend.batch_size``).
    """
    rows = max(1, int(model.batch_size))
    if gpu and model.backend == "hf" and model.options.get("auto_batch_size"):
        return max(rows, devices.AUTO_BATCH_CAP)
    return rows


class GenerateStage(Stage):
    """Generates one model's responses for plan rows (``prompt``, ``row_seed``).

    One replica holds one loaded model: an actor with one GPU when the model runs on a GPU (so one
    replica per GPU), else one CPU. A batch that fails gets ``finish_reason="error"`` and the
    error message on every row (a batch that runs out of GPU memory is split in halves first);
    the store does not count error rows as done, so a rerun retries them. A sticky CUDA error
    (illegal memory access, device-side assert: the process's CUDA context is unusable, so every
    later batch would fail too) is not an error row: it ends the actor, and Ray restarts it and
    retries the batch (``Resources.max_restarts`` / ``max_retries``; see :mod:`affalign.devices`).

    Model options read here: ``gpus_per_replica`` (default 1; more for a model sharded with
    ``device_map``), ``max_replicas`` (caps the actor pool), ``batch_delay_s`` (sleep after each
    batch: throttling, and tests of interrupted runs).
    """

    name = "generate"
    inputs: ClassVar[tuple[str, ...]] = ("plan_id", "model", "prompt", "row_seed")
    outputs: ClassVar[tuple[str, ...]] = tuple(f.name for f in OUTPUT_FIELDS)

    def __init__(self, model: ModelSpec, use_gpu: bool = False, batches: int | None = None, max_replicas: int | None = None):
        """``use_gpu``, ``max_replicas``: the pass's placement decided (never decided here)."""
        self.model = model
        self.use_gpu = use_gpu
        # batches to generate: the pool starts that many replicas at once (at most what fits),
        # since every replica is busy for the whole pass; None: Ray Data's autoscaling from one
        self.batches = batches
        caps = [int(c) for c in (model.options.get("max_replicas"), max_replicas) if c]
        max_replicas = min(caps) if caps else None
        if model.backend == "openai":
            # one replica holds the model's budget, so the budget is exact; requests still run
            # concurrently inside it (the backend's `concurrency`)
            max_replicas = 1
        self.resources = Resources(
            num_cpus=1,
            num_gpus=float(model.options.get("gpus_per_replica") or 1) if use_gpu else 0,
            batch_size=batch_rows(model, use_gpu),
            actor=True,
            min_actors=max(1, int(batches or 1)),
            max_actors=int(max_replicas) if max_replicas else None,
            tasks_per_actor=1,
        )
        self._backend: GenerationBackend | None = None
        self._takes_seeds = False

    def prefetch(self) -> None:
        """The model's weights are fetched once on the driver, not inside each GPU actor, where a
        hub download would count against Ray Data's no-progress guard."""
        make_backend(self.model).prefetch()

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
            devices.die_on_sticky_cuda_error(e, f"model {self.model.id}")  # returns only if not sticky
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
