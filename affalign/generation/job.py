"""Resumable generation: the plan rows not yet in the store, through Ray Data, into the store.

For each model, its remaining rows (sorted by dataset, topic, mode and index, so a batch mostly
falls in one shard) are cut into blocks of the model's batch size and run through
:class:`~affalign.stages.generate.GenerateStage` on an actor pool (one replica per GPU, or CPU
replicas). The driver iterates the output stream and writes each finished batch at once as part
files of its shards (temp name, then rename). A run killed at any point therefore loses at most
the batches in flight; the next run reads the store, skips every ``plan_id`` already generated
and generates the rest. Rows whose generation failed are stored with their error and retried by
the next run.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from affalign.backends.base import ModelSpec
from affalign.errors import ConfigError
from affalign.generation.store import GenerationStore, read_generations, remaining

__all__ = ["read_generations", "remaining", "run_generation", "stage_uses_gpu"]

log = logging.getLogger("affalign")


def stage_uses_gpu(model: ModelSpec, cluster_resources: dict[str, float]) -> bool:
    """Whether a model's replicas ask Ray for a GPU: decided from the cluster, not the driver's machine."""
    if model.backend != "hf":
        return False
    if model.options.get("device_map"):
        return True
    device = str(model.options.get("device") or "auto").lower()
    if device == "auto":
        return cluster_resources.get("GPU", 0) > 0
    return device.startswith("cuda")


def preflight(model: ModelSpec) -> None:
    """Fail before starting any actor when an HF model's local path does not exist."""
    if model.backend != "hf" or not model.path:
        return
    path = model.path
    local = path.startswith(("/", "./", "../", "~")) or path.lower().endswith(".gguf")
    if local and not os.path.exists(os.path.expanduser(path)):
        from affalign.backends.hf import ModelLoadError

        raise ModelLoadError(f"model {model.id!r}: {path!r} does not exist")


def _load_error(exc: BaseException) -> str | None:
    """The ModelLoadError message inside a Ray error from an actor that could not load its model."""
    m = re.search(r"ModelLoadError: (.+)", str(exc))
    return m.group(1).strip() if m else None


def run_generation(
    plan: pa.Table,
    models: list[ModelSpec],
    root: str,
    cluster_resources: dict[str, float],
    progress: bool = True,
    fs: pafs.FileSystem | None = None,
    other_pools: int = 0,
    no_progress_timeout_s: float | None = None,
) -> dict[str, Any]:
    """Generate the plan rows not yet stored under ``root``; returns counts.

    ``root`` is a local path or a URI (``pyarrow.fs.FileSystem.from_uri``); with ``fs`` given it
    is a path in that filesystem (e.g. ``OutputDir.fs`` and ``OutputDir.root``).

    ``other_pools``: actor pools of other datasets running beside this one (they share the CPUs);
    ``no_progress_timeout_s``: fail a stalled pass with a clear message (see pipeline.consume).

    Counts: ``planned`` (plan rows), ``already_done`` (rows found in the store at the start),
    ``generated`` (rows generated now without error), ``errors`` (rows that failed now; retried
    by the next run).
    """
    specs = {m.id: m for m in models}
    unknown = sorted(set(plan.column("model").to_pylist()) - set(specs)) if plan.num_rows else []
    if unknown:
        raise ConfigError(f"the plan has rows of model(s) {unknown} that are not in the models given")
    store = GenerationStore(root, fs)
    stale = store.clean_temp()
    if stale:
        log.info("generation: removed %d temp file(s) of an interrupted run", stale)
    todo = remaining(plan, root, fs)
    counts: dict[str, Any] = {"planned": plan.num_rows, "already_done": plan.num_rows - todo.num_rows, "generated": 0, "errors": 0}
    if todo.num_rows == 0:
        return counts
    for model in models:
        preflight(model)

    import ray.data

    from affalign.pipeline import consume
    from affalign.progress import Progress
    from affalign.stages.base import apply_stages
    from affalign.stages.generate import GenerateStage

    started = time.monotonic()
    for model in models:
        rows = todo.filter(pc.equal(todo.column("model"), model.id))
        if rows.num_rows == 0:
            continue
        rows = rows.sort_by([("dataset", "ascending"), ("topic", "ascending"), ("mode", "ascending"), ("index", "ascending")])
        bs = max(1, int(model.batch_size))
        blocks = [rows.slice(i, bs) for i in range(0, rows.num_rows, bs)]
        stage = GenerateStage(model, use_gpu=stage_uses_gpu(model, cluster_resources), batches=len(blocks))
        ds = apply_stages(ray.data.from_arrow(blocks), [stage], cluster_resources, extra_pools=other_pools)
        if progress:
            log.info("generation: model %s: %d rows to generate in %d batches", model.id, rows.num_rows, len(blocks))
        bar = Progress(f"generation {model.id}", rows.num_rows)
        bar.quiet = bar.quiet or not progress

        def take(batch: pa.Table, model_id: str = model.id, bar: Progress = bar) -> None:
            store.write_batch(batch)
            failed = batch.num_rows - batch.column("error").null_count
            counts["errors"] += failed
            counts["generated"] += batch.num_rows - failed
            if failed:
                log.warning("generation: model %s: %d rows of a batch failed (retried by the next run)", model_id, failed)
            bar.update(batch.num_rows)

        try:
            with bar:
                consume(ds, f"generation pass of {model.id}", [stage], cluster_resources, no_progress_timeout_s if no_progress_timeout_s is not None else -1, take)
        except Exception as e:
            message = _load_error(e)
            if message is None:
                raise
            from affalign.backends.hf import ModelLoadError

            raise ModelLoadError(message) from e
    counts["seconds"] = round(time.monotonic() - started, 3)
    return counts
