"""The ideology pass: label users liberal or conservative from the news domains they share."""

from __future__ import annotations

import json
import logging
from typing import Any

import pyarrow as pa

from affalign import __version__
from affalign.config import JobConfig
from affalign.inputs import InputFile, ReadUnit
from affalign.progress import Progress
from affalign.rundir import RunDir
from affalign.runtime.adapter import apply_stages
from affalign.runtime.executor import PassWork, run_pass
from affalign.runtime.placement import Placement

log = logging.getLogger("affalign")


def bias_table_digest(cfg: JobConfig) -> str | None:
    """Content hash of the domain-bias table in use (part of the work keys), None without ideology."""
    import hashlib

    from affalign.ideology import bias_table_text

    if not cfg.input.ideology.enabled:
        return None
    return hashlib.sha256(bias_table_text(cfg.input.ideology.bias_table).encode()).hexdigest()


def ideology_key(cfg: JobConfig, files: list[InputFile]) -> str:
    """Content key of the ideology pass: inputs, its settings and the bias table's content."""
    import hashlib

    blob = json.dumps(
        {"version": __version__, "files": [(f.uri, f.size, f.format) for f in files], "ideology": cfg.to_dict()["input"]["ideology"], "table": bias_table_digest(cfg)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ideology_pass(cfg: JobConfig, files: list[InputFile], units: list[ReadUnit], out: RunDir, placement: Placement, work: PassWork) -> tuple[pa.Table, dict[str, Any]]:
    """Label users from the domains they share (one streaming pass); returns (user_id, group) and counts.

    Per-user sums are exact integers, so partial sums from any split of the corpus add up to the
    same labels. The result is kept in ``work`` (``_work/ideology-<key>/``, see
    :func:`ideology_key`) and reused by a rerun; every
    user's mean bias and status is published as ``ideology/users.parquet``.
    """
    import ray.data

    from affalign.ideology import combine_sums, label_users, labelled_groups
    from affalign.stages.ideology import DomainSumsStage

    ideo = cfg.input.ideology
    if work.complete():
        log.info("ideology pass already complete in %s; reusing it", work.rel)
        users = out.read_table(f"{work.rel}/users.parquet")
        counts = json.loads(out.read_bytes(f"{work.rel}/counts.json"))
    else:
        items = [{"unit": u.to_json()} for u in units]
        sums = combine_sums([])
        if items:
            ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
            stage = DomainSumsStage(files, cfg.input.path, ideo.domains_column, ideo.bias_table, cfg.storage.s3_endpoint, cfg.storage.s3_region)
            ds = apply_stages(ds, [stage], placement.resources)
            pending: list[pa.Table] = [sums]
            def take(part: pa.Table) -> None:
                nonlocal pending
                pending.append(part)
                if len(pending) >= 16:  # bound the driver's memory: fold partials as they arrive
                    pending = [combine_sums(pending)]
                bar.update(1)  # one partial per read unit (batch_size 1)

            with Progress("ideology pass", len(items), unit="read units") as bar:
                run_pass(ds, "ideology pass", [stage], placement.resources, cfg.ray.no_progress_timeout_s, take)
            sums = combine_sums(pending)
        result = label_users(sums, ideo.threshold, ideo.min_domains, tuple(ideo.labels), ideo.cutoff, tuple(ideo.tails))
        users, counts = result.users, result.counts
        out.publish_table(f"{work.rel}/users.parquet", users)
        out.publish_bytes(f"{work.rel}/counts.json", json.dumps(counts).encode())
        work.mark_complete()
    out.publish_table("ideology/users.parquet", users)
    return labelled_groups(users, ideo.labels), counts
