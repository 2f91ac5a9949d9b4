"""The only Ray Data adapter: a stage's declared resources become ``map_batches`` arguments.

Pools are sized from the cluster's resources, and every actor pool of one dataset is sized
together, so read tasks always keep a CPU on a small machine.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pyarrow as pa

from affalign.stages.base import Resources, Stage


class _ActorAdapter:
    """Ray actor class wrapping a stage instance (constructed once per actor, then set up)."""

    def __init__(self, stage: Stage):
        self.stage = stage
        _quiet_worker()
        if not stage.resources.num_gpus:
            _hide_gpus()
        self.stage.setup()
        self.stage._ready = True

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.stage(batch)


def _quiet_worker() -> None:
    """No library progress bars inside actors (weights loading, GGUF conversion): Ray forwards a
    worker's stderr to the driver's console, where a bar from a background process is noise.

    The job sets the same switches as environment variables for every worker (runtime.init_ray);
    this also covers an actor started on a cluster whose workers were started without them.
    """
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import sys

        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetics must never fail an actor
        pass


def _hide_gpus() -> None:
    """An actor that reserved no GPU sees none (before any library initialises CUDA).

    Ray 2.60 no longer sets ``CUDA_VISIBLE_DEVICES`` for actors that ask for no GPU, so a scorer
    with ``num_gpus: 0`` and ``device: auto`` (or an LM judge's HF model) would put its model on
    ``cuda:0`` without having reserved it, beside the GPU actors that did.
    """
    import os

    os.environ["CUDA_VISIBLE_DEVICES"] = ""


def _adapter_for(stage: Stage) -> type:
    """An actor class named after the stage, so Ray's operator names and errors say which stage."""
    name = type(stage).__name__
    return type(name, (_ActorAdapter,), {"__doc__": _ActorAdapter.__doc__, "__module__": __name__, "__qualname__": name})


def pool_size(res: Resources, cluster: dict[str, float], reserve_cpus: float = 1.0, pools: int = 1, gpu_pools: int = 1) -> tuple[int, int]:
    """(min, max) actors for a pool, sized so the pools of one dataset can never take every CPU.

    On a 2-core machine a pool of 1-CPU actors that takes both cores leaves no CPU for read tasks
    and the job hangs; so CPU-only pools leave ``reserve_cpus`` free, GPU pools are bounded by GPUs.
    ``pools`` is the number of actor pools that run at the same time in the dataset: the CPUs
    left after the reserve are split between them (see :func:`actor_cpus` for a pool whose
    share is below one actor's ``num_cpus``). ``gpu_pools``: the GPU pools among them; each is
    capped at its fair share of the GPUs (two 0.5-GPU pools on one GPU: one actor each, not two).
    """
    cpus = cluster.get("CPU", 1.0)
    budget = _pool_cpu_budget(cpus, reserve_cpus, pools)
    upper = max(1, int(math.floor(budget / max(res.num_cpus, 1e-9) + 1e-9)))
    if res.num_gpus > 0:
        gpus = cluster.get("GPU", 0.0) / max(gpu_pools, 1)
        upper = max(1, int(math.floor(gpus / res.num_gpus + 1e-9)))
        # a GPU actor holds CPUs too: bounded by the pool's CPU share only where that is
        # smaller than what the GPUs allow (a small host with a GPU)
        upper = min(upper, max(1, int(math.floor(budget / max(res.num_cpus, 1e-9) + 1e-9))))
    if res.max_actors is not None:
        upper = min(upper, res.max_actors)
    lower = max(1, min(res.min_actors, upper))
    return lower, upper


def _pool_cpu_budget(cpus: float, reserve_cpus: float, pools: int) -> float:
    # never reserve more than half a machine (a 1-CPU Ray still runs: actors get half of it)
    reserve = min(reserve_cpus, cpus / 2.0)
    return max(cpus - reserve, 0.0) / max(pools, 1)


def actor_cpus(res: Resources, cluster: dict[str, float], reserve_cpus: float = 1.0, pools: int = 1) -> float:
    """CPUs each actor of a pool asks Ray for: its ``num_cpus``, or less when the pool's share of
    the CPUs (see :func:`pool_size`) is below that, so that one actor per pool plus a read task
    always fit (two 1-CPU pools on 2 CPUs: 0.5 CPU each, one CPU left for reads). It is a
    scheduling figure: the actor's threads are set by the stage itself."""
    budget = _pool_cpu_budget(cluster.get("CPU", 1.0), reserve_cpus, pools)
    if res.num_cpus <= budget or budget <= 0:
        return res.num_cpus
    return max(math.floor(budget * 1e4) / 1e4, 0.01)  # rounded down: the shares never add up to more


def task_cpus(res: Resources, cluster: dict[str, float], reserve_cpus: float = 1.0) -> float:
    """CPUs a task of a stateless stage asks for: at most the reserve the actor pools leave."""
    cpus = cluster.get("CPU", 1.0)
    return min(res.num_cpus, max(min(reserve_cpus, cpus / 2.0), 0.01)) if res.num_cpus > 0 else res.num_cpus


def map_batches_kwargs(stage: Stage, cluster: dict[str, float], pools: int = 1, reserve_cpus: float = 1.0, gpu_pools: int = 1) -> dict[str, Any]:
    """Ray Data ``map_batches`` arguments for a stage, from its declared resources.

    ``pools``: how many actor pools run in the same dataset (see :func:`count_pools`); they share
    the CPUs left after ``reserve_cpus`` (kept for read and other tasks; 0 for a dataset that has
    none, e.g. generation over an in-memory plan). ``gpu_pools``: GPU pools running at the same
    time (:func:`count_gpu_pools`), which share the GPUs.
    """
    import ray.data

    res = stage.resources
    kwargs: dict[str, Any] = {
        "batch_format": "pyarrow",
        "batch_size": res.batch_size,
        "num_cpus": actor_cpus(res, cluster, reserve_cpus, pools=pools) if res.actor else task_cpus(res, cluster),
    }
    if res.num_gpus:
        kwargs["num_gpus"] = res.num_gpus
    if res.actor:
        lo, hi = pool_size(res, cluster, reserve_cpus, pools=pools, gpu_pools=gpu_pools)
        extra = {"max_tasks_in_flight_per_actor": res.tasks_per_actor} if res.tasks_per_actor else {}
        kwargs["compute"] = ray.data.ActorPoolStrategy(min_size=lo, max_size=hi, **extra)
        kwargs["fn_constructor_args"] = (stage,)
        # an actor that dies (e.g. killed for memory) is restarted and its batch retried
        kwargs["max_restarts"] = res.max_restarts
        kwargs["max_task_retries"] = res.max_retries
    else:
        kwargs["max_retries"] = res.max_retries
    return kwargs


def count_pools(stages: list[Stage]) -> int:
    """Actor pools among ``stages`` (they all run at once in one streaming dataset)."""
    return sum(1 for s in stages if s.resources.actor)


def count_gpu_pools(stages: list[Stage]) -> int:
    """Actor pools among ``stages`` that hold GPUs."""
    return sum(1 for s in stages if s.resources.actor and s.resources.num_gpus > 0)


def apply_stage(ds: Any, stage: Stage, cluster: dict[str, float], pools: int = 1, reserve_cpus: float = 1.0, gpu_pools: int = 1) -> Any:
    """Append a stage to a Ray Dataset; ``pools``: actor pools in the whole dataset (count_pools)."""
    kwargs = map_batches_kwargs(stage, cluster, pools=pools, reserve_cpus=reserve_cpus, gpu_pools=gpu_pools)
    fn = _adapter_for(stage) if stage.resources.actor else stage
    with warnings.catch_warnings():
        # retry limits go as remote args, which Ray deprecates (removal in 2.64; pyproject pins
        # below it) without yet offering named parameters for them
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=DeprecationWarning)
        return ds.map_batches(fn, **kwargs)


def apply_stages(ds: Any, stages: list[Stage], cluster: dict[str, float], extra_pools: int = 0, reserve_cpus: float | None = None, extra_gpu_pools: int = 0) -> Any:
    """Append every stage of one dataset, sizing its actor pools together so reads keep a CPU.

    ``extra_pools``: actor pools of other datasets that run at the same time (they share the CPUs
    too; ``extra_gpu_pools`` of them hold GPUs, which the GPU pools share). ``reserve_cpus``: CPUs
    the pools leave free; default one when the dataset (or a dataset beside it) has task stages or
    other pools, none for a lone pool over in-memory input.
    """
    pools = count_pools(stages) + max(0, extra_pools)
    gpu_pools = max(1, count_gpu_pools(stages) + max(0, extra_gpu_pools))
    if reserve_cpus is None:
        lone = extra_pools <= 0 and all(s.resources.actor for s in stages)
        reserve_cpus = 0.0 if lone else 1.0
    for stage in stages:
        ds = apply_stage(ds, stage, cluster, pools=pools, reserve_cpus=reserve_cpus, gpu_pools=gpu_pools)
    return ds
