"""Running a pass: its work directory (parts, done rows, completion marker, stale work) and the
driver loop that drains its dataset, turning a stall into an error that names what it waits for.

A pass never decides on its own whether work is done: a work directory is complete when its
marker is there, and a row is done when a readable part holds its key. Stages know nothing of
resume.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from affalign.errors import AffalignError
from affalign.rundir import RunDir
from affalign.runtime.adapter import count_pools, map_batches_kwargs
from affalign.stages.base import Stage

log = logging.getLogger("affalign")

WORK = "_work"


class PassWork:
    """The work directory of one pass in a run directory, keyed by the content of its inputs.

    ``key_columns`` identify a row (for done-row resume); parts are written by whoever produces
    them (a worker's write stage, or the driver) through :meth:`RunDir.write_part`.
    """

    def __init__(self, run: RunDir, name: str, key: str, key_columns: tuple[str, ...] = ()):
        self.run = run
        self.rel = posixpath.join(WORK, f"{name}-{key}")
        self.key_columns = key_columns

    def complete(self) -> bool:
        return self.run.is_done(self.rel)

    def mark_complete(self) -> None:
        self.run.mark_done(self.rel)

    def done_keys(self) -> pa.Table | None:
        """The key columns of every row in a readable part (unreadable parts are removed first)."""
        parts = [t for t in self.run.read_parts(self.rel, list(self.key_columns), what="partial output") if t.num_rows]
        return pa.concat_tables(parts) if parts else None


def prune_stale_work(run: RunDir, current: list[PassWork], kinds: tuple[str, ...]) -> None:
    """Delete work directories of ``kinds`` that belong to other inputs or configs (never resumable)."""
    keep = {run.path(w.rel) for w in current}
    for stale in run.list_dirs(WORK):
        if stale not in keep and stale.rsplit("/", 1)[-1].startswith(tuple(f"{k}-" for k in kinds)):
            run.fs.delete_dir(stale)


def prefetch(stages: list[Stage]) -> None:
    """Fetch every stage's models once, on the driver, before any replica starts."""
    for stage in stages:
        stage.prefetch()


class NoProgressError(AffalignError):
    """A pass made no progress for ``ray.no_progress_timeout_s``; the message names what it waits for (exit 1)."""


def stall_report(pass_name: str, stages: list[Stage], cluster: dict[str, float], timeout_s: float, detail: str = "") -> str:
    """A clear message for a stalled pass: its stages, what each asks for, what the cluster has free."""
    try:
        import ray

        free = {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU")}
    except Exception:  # noqa: BLE001 - the report must not fail on a dead cluster
        free = {}
    pools = count_pools(stages)
    lines = [
        f"the {pass_name} made no progress for {timeout_s:.0f}s (ray.no_progress_timeout_s) and was stopped.",
        f"Ray cluster: {cluster.get('CPU', 0):g} CPU, {cluster.get('GPU', 0):g} GPU in all; free now: {free.get('CPU', 0):g} CPU, {free.get('GPU', 0):g} GPU.",
        "Its stages and what one replica of each asks for:",
    ]
    waits = []
    kws = [map_batches_kwargs(st, cluster, pools=pools) for st in stages]
    # GPUs this pass's own actors hold at their pools' minimum size: when the GPUs in use are no
    # more than that, a stage "short of a GPU" is most likely waiting on its own actors that are
    # still starting (a model loading), not on another job.
    own_gpus = sum(float(kw.get("num_gpus", 0) or 0) * (kw["compute"].min_size if "compute" in kw else 0) for kw in kws)
    gpus_in_use = float(cluster.get("GPU", 0)) - free.get("GPU", 0)
    for st, kw in zip(stages, kws, strict=True):
        kind = f"actor pool of {kw['compute'].min_size}-{kw['compute'].max_size}" if "compute" in kw else "tasks"
        gpus = float(kw.get("num_gpus", 0) or 0)
        lines.append(f"  - {st.name} ({type(st).__name__}): {kind}, {kw['num_cpus']:g} CPU, {gpus:g} GPU each")
        if gpus > float(cluster.get("GPU", 0)):
            waits.append(f"stage {st.name} waits for a GPU ({gpus:g} per actor) that the cluster does not have")
        elif gpus > free.get("GPU", 0) + 1e-9:
            if free and gpus_in_use <= own_gpus + 1e-9:
                waits.append(f"stage {st.name}: the GPUs in use ({gpus_in_use:g}) are this pass's own actors' ({own_gpus:g}); they may still be starting (loading a model)")
            else:
                waits.append(f"stage {st.name} waits for a free GPU (other work holds {gpus_in_use - own_gpus:g})")
        if kw["num_cpus"] > free.get("CPU", 0) + 1e-9:
            waits.append(f"stage {st.name} waits for {kw['num_cpus']:g} free CPU")
    lines.append("Waiting: " + ("; ".join(waits) if waits else "no stage lacks resources: a replica is stuck or far slower than the timeout (a model loading?)"))
    if detail:
        lines.append("Ray Data: " + detail.strip())
    lines.append("Raise ray.no_progress_timeout_s (or -1 to wait forever) if this pass is expected to be this slow.")
    return "\n".join(lines)


def run_pass(ds: Any, pass_name: str, stages: list[Stage], cluster: dict[str, float], timeout_s: float, on_batch: Callable[[pa.Table], None]) -> None:
    """Drain a pass's dataset on the driver, calling ``on_batch(table)``; a stall fails clearly.

    Ray Data's own guard (``DataContext.execution_no_progress_timeout_s``: no block moved through
    any operator's queues) detects the stall; this turns its error into one naming the stage and
    the resources it waits for.
    """
    from ray.data.exceptions import ExecutionTimeoutError

    ds.context.execution_no_progress_timeout_s = timeout_s if timeout_s and timeout_s > 0 else -1
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            on_batch(batch)
    except ExecutionTimeoutError as exc:
        raise NoProgressError(stall_report(pass_name, stages, cluster, timeout_s, str(exc).split("If this is expected")[0])) from None
