"""The stage contract.

A stage is a small class:

* its constructor is cheap and only holds config (it is pickled to every actor);
* ``prefetch()`` runs once on the driver before any replica starts (a model download, or a
  clear error for a missing one), ``setup()`` once per replica (models, automatons);
* ``__call__(batch: pa.Table) -> pa.Table`` transforms one batch; ``inputs`` are checked before
  ``process`` and ``outputs`` after it, so a stage that forgets a column fails at once, naming it;
* ``resources`` is a plain attribute: what one replica needs. A pass's placement
  (:mod:`affalign.runtime.placement`) sets it where the decision depends on the cluster.

Stages are plain Python: unit tests call them on an Arrow table without Ray. The Ray Data
adapter (:mod:`affalign.runtime.adapter`) is the only place that turns a stage into
``map_batches`` arguments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa

from affalign.schema import REASON, STAGE_ERROR

log = logging.getLogger("affalign")

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
    # Actor restarts after a crash. Any value but 0 makes Ray core (2.60) log an error line for every
    # pool actor ("has constructor arguments in the object store and max_restarts > 0"): Ray Data
    # always passes an actor's map transformer by object-store reference and holds it for the life
    # of the pool, so restarts do work (ray-project/ray#57733); the CLI drops that one line.
    max_restarts: int = 3
    max_retries: int = 3  # retries of a task or of an actor's batch after a crash
    # batches queued at one actor at a time (None: Ray Data's default); 1 for long batches
    # (generation), so a batch waits for whichever actor frees up first instead of queueing
    # behind another at one actor while others idle
    tasks_per_actor: int | None = None


class StageContractError(RuntimeError):
    """A stage broke its contract (a declared output column missing): a bug, never quarantined."""


class Stage:
    """Base class of every stage; see the module docstring for the contract."""

    name: ClassVar[str] = "stage"
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: tuple[str, ...] = ()
    resources: Resources = Resources()

    _ready: bool = False

    def prefetch(self) -> None:  # noqa: B027 - optional hook
        """Fetch or check what replicas will load (on the driver, once, before any replica starts)."""

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load expensive state; called once per replica before the first batch."""

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
            out = self.process(batch)
        else:
            out = self._process_or_quarantine(batch)
        absent = [c for c in self.outputs if c not in out.column_names]
        if absent:
            raise StageContractError(f"stage {self.name} ({type(self).__name__}) did not produce its declared output column(s) {absent}")
        return out

    def _process_or_quarantine(self, batch: pa.Table) -> pa.Table:
        try:
            return self.process(batch)
        except (MemoryError, StageContractError):
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
