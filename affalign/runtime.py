"""Starting or joining Ray, and sizing work from the cluster's resources."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("affalign")


def init_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> dict[str, float]:
    """Embedded local Ray by default (the machine's resources), or join ``address``; returns resources."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Ray Data's per-operator progress bars are useful on a terminal, noise in CI logs.
    import ray
    import ray.data

    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "ignore_reinit_error": True, "log_to_driver": True}
        if address:
            kwargs["address"] = address
        else:
            if num_cpus:
                kwargs["num_cpus"] = num_cpus
            if num_gpus is not None:
                kwargs["num_gpus"] = num_gpus
        ray.init(**kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = os.isatty(2) and not os.environ.get("CI")
    ctx.verbose_stats_logs = False
    resources = dict(ray.cluster_resources())
    log.info("ray: %s CPU, %s GPU", resources.get("CPU", 0), resources.get("GPU", 0))
    return resources
