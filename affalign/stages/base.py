"""The stage contract and the one adapter from a stage's declared resources to ``map_batches``.

A stage is a small class:

* its constructor is cheap and only holds config (it is pickled to every actor);
* ``setup()`` loads what is expensive (models, automatons) once per process or actor;
* ``__call__(batch: pa.Table) -> pa.Table`` transforms one batch;
* ``inputs``/``outputs`` declare the columns it reads and adds;
* ``resources()`` declares what one replica needs.

Stages are plain Python: unit tests call them on an Arrow table without Ray. ``apply_stage`` is
the only place that turns a stage into Ray Data arguments.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

log = logging.getLogger("affalign")

REASON = "reason"
STAGE_ERROR = "stage_error"


@dataclass(frozen=True)
class Resources:
    """What one replica of a stage needs, and how batches reach it."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int | None = 4096
    # Stateful stages (models) run as an actor pool; stateless ones as tasks.
    actor: bool = False
    min_actors: int = 1
    max_actors: int | None = None  # None: sized from the cluster
    max_restarts: int = 3  # actor restarts after a crash
    max_retries: int = 3  # retries of a task or of an actor's batch after a crash


class Stage:
    """Base class of every stage; see the module docstring for the contract."""

    name: ClassVar[str] = "stage"
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()

    _ready: bool = False

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load expensive state; called once per replica before the first batch."""

    def resources(self) -> Resources:
        return Resources()

    def process(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    # Rows a stage fails on deterministically are quarantined (reason "stage_error:...") instead of
    # failing the job forever; only stages whose batches carry a reason column can do so.
    quarantine: ClassVar[bool] = True

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not self._ready:
            self.setup()
            self._ready = True
        missing = [c for c in self.inputs if c not in batch.column_names]
        if missing:
            raise KeyError(f"stage {self.name}: batch lacks column(s) {missing}")
        if not self.quarantine or REASON not in batch.column_names:
            return self.process(batch)
        return self._process_or_quarantine(batch)

    def _process_or_quarantine(self, batch: pa.Table) -> pa.Table:
        try:
            return self.process(batch)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the rows that fail
            if batch.num_rows <= 1:
                return self._quarantined(batch, exc)
            log.warning("stage %s failed on a batch of %d rows (%s); isolating the failing rows", self.name, batch.num_rows, exc)
            half = batch.num_rows // 2
            return pa.concat_tables(
                [self._process_or_quarantine(batch.slice(0, half)), self._process_or_quarantine(batch.slice(half))],
                promote_options="default",
            )

    def _quarantined(self, row: pa.Table, exc: Exception) -> pa.Table:
        message = f"{STAGE_ERROR}:{self.name}:{type(exc).__name__}: {exc}"[:300]
        log.warning("quarantined a row: %s", message)
        idx = row.schema.get_field_index(REASON)
        marked = row.set_column(idx, REASON, pa.array([message], pa.string()))
        # stages skip rows that already have a reason, so this produces the declared columns
        return self.process(marked)


class _ActorAdapter:
    """Ray actor class wrapping a stage instance (constructed once per actor, then set up)."""

    def __init__(self, stage: Stage):
        self.stage = stage
        self.stage.setup()
        self.stage._ready = True

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.stage(batch)


def pool_size(res: Resources, cluster: dict[str, float], reserve_cpus: float = 1.0) -> tuple[int, int]:
    """(min, max) actors for a pool, sized so the pool can never take every CPU.

    On a 2-core machine a pool of 1-CPU actors that takes both cores leaves no CPU for read tasks
    and the job hangs; so CPU-only pools leave ``reserve_cpus`` free, GPU pools are bounded by GPUs.
    """
    if res.num_gpus > 0:
        gpus = cluster.get("GPU", 0.0)
        upper = max(1, int(math.floor(gpus / res.num_gpus + 1e-9)))
    else:
        cpus = cluster.get("CPU", 1.0)
        upper = max(1, int(math.floor((cpus - reserve_cpus) / max(res.num_cpus, 1e-9) + 1e-9)))
    if res.max_actors is not None:
        upper = min(upper, res.max_actors)
    lower = max(1, min(res.min_actors, upper))
    return lower, upper


def map_batches_kwargs(stage: Stage, cluster: dict[str, float]) -> dict[str, Any]:
    """Ray Data ``map_batches`` arguments for a stage, from its declared resources."""
    import ray.data

    res = stage.resources()
    kwargs: dict[str, Any] = {
        "batch_format": "pyarrow",
        "batch_size": res.batch_size,
        "num_cpus": res.num_cpus,
    }
    if res.num_gpus:
        kwargs["num_gpus"] = res.num_gpus
    if res.actor:
        lo, hi = pool_size(res, cluster)
        kwargs["compute"] = ray.data.ActorPoolStrategy(min_size=lo, max_size=hi)
        kwargs["fn_constructor_args"] = (stage,)
        # an actor that dies (e.g. killed for memory) is restarted and its batch retried
        kwargs["max_restarts"] = res.max_restarts
        kwargs["max_task_retries"] = res.max_retries
    else:
        kwargs["max_retries"] = res.max_retries
    return kwargs


def apply_stage(ds: Any, stage: Stage, cluster: dict[str, float]) -> Any:
    """Append a stage to a Ray Dataset."""
    kwargs = map_batches_kwargs(stage, cluster)
    fn = _ActorAdapter if stage.resources().actor else stage
    with warnings.catch_warnings():
        # retry limits go as remote args, which Ray deprecates (removal in 2.64; pyproject pins
        # below it) without yet offering named parameters for them
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=DeprecationWarning)
        return ds.map_batches(fn, **kwargs)
