"""Where generations live: one directory per (model, dataset, topic, mode), parquet parts inside.

Layout under a run's root (local path now; any ``pyarrow.fs`` URI such as ``s3://`` later)::

    generations/<safe model id>/<dataset>/<topic slug>-<hash8>/<mode>/part-<hash16>.parquet

* Shard directories are a pure function of (model, dataset, topic, mode); rows also carry those
  values in full, so readers never parse directory names.
* Parts are published through the run directory (:class:`affalign.rundir.RunDir`): written
  under ``_tmp/`` and moved into place, so a killed process leaves at most a temp file (removed
  by the next run), never half a part. A part's name is a hash of its plan ids: writing the same
  batch twice replaces the file.
* A part that cannot be read is deleted (with a warning), so its rows count as not done and are
  generated again.
* Rows with an ``error`` are kept for the record but do not count as done.

One writer per root at a time.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from affalign.rundir import RunDir
from affalign.schema import GENERATIONS_SCHEMA

log = logging.getLogger("affalign")

GENERATIONS = "generations"
SHARD_KEYS: tuple[str, ...] = ("model", "dataset", "topic", "mode")
# the store's own temp directory: cleaning it at the start of a generation pass cannot touch a
# part another writer (the scoring of the previous model, in the background) is publishing
TMP_DIR = "_tmp/generations"


def safe_id(model_id: str) -> str:
    """A model id as one path component: ``org/name`` -> ``org--name``; other odd characters -> ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id.replace("/", "--")).strip(".") or "_"


def topic_slug(topic: str) -> str:
    """Readable and collision-free: lowercase words joined by ``-``, then 8 hex of the exact topic's hash."""
    words = re.sub(r"[^a-z0-9]+", "-", topic.lower()).strip("-")[:60].strip("-")
    digest = hashlib.sha256(topic.encode("utf-8")).hexdigest()[:8]
    return f"{words}-{digest}" if words else digest


def shard_dir(model: str, dataset: str, topic: str, mode: str) -> str:
    """The shard directory of (model, dataset, topic, mode), relative to the root."""
    # plain names, not hive-style key=value: the files carry these columns, and a reader that
    # infers hive partitions (pyarrow, pandas) would clash with them
    return posixpath.join(GENERATIONS, safe_id(model), safe_id(dataset), topic_slug(topic), safe_id(mode))


class GenerationStore:
    """The generations of one run directory (a :class:`RunDir`, or a root path/URI and filesystem)."""

    def __init__(self, run: RunDir | str, fs: pafs.FileSystem | None = None):
        self.run = run if isinstance(run, RunDir) else RunDir.on(run, fs)

    def part_files(self) -> list[str]:
        return self.run.list_files(GENERATIONS)

    def clean_temp(self) -> int:
        """Remove temp files left by a killed writer; returns how many."""
        return self.run.clean_temp(TMP_DIR)

    def write_batch(self, batch: pa.Table) -> list[str]:
        """Write a batch of finished rows: one part per shard it touches. Returns the part paths."""
        if batch.num_rows == 0:
            return []
        keys = list(zip(*(batch.column(k).to_pylist() for k in SHARD_KEYS), strict=True))
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        paths = []
        for key, rows in groups.items():
            part = batch.take(pa.array(rows, pa.int64())) if len(groups) > 1 else batch
            paths.append(self.run.write_part(shard_dir(*key), part, ("plan_id",), TMP_DIR))
        return paths

    def read_parts(self, columns: list[str] | None = None) -> list[pa.Table]:
        """Every readable part (unreadable ones are deleted, so their rows get generated again)."""
        return self.run.read_parts(GENERATIONS, columns, what="generation part")

    def done_ids(self) -> pa.Array:
        """Plan ids with a successful generation (no error), deduplicated."""
        tables = [t for t in self.read_parts(["plan_id", "error"]) if t.num_rows]
        if not tables:
            return pa.array([], pa.string())
        t = pa.concat_tables(tables)
        return pc.unique(t.filter(pc.is_null(t.column("error"))).column("plan_id").combine_chunks())

    def read(self) -> pa.Table:
        """One row per plan id: a successful row when there is one, else one of its error rows."""
        tables = [t for t in self.read_parts() if t.num_rows]
        if not tables:
            return GENERATIONS_SCHEMA.empty_table()
        t = pa.concat_tables(tables, promote_options="default")
        bad = pc.is_valid(t.column("error")).cast(pa.int8())
        t = t.append_column("_bad", bad)
        t = t.take(pc.sort_indices(t, [("plan_id", "ascending"), ("_bad", "ascending")]))
        ids = np.asarray(t.column("plan_id").to_pylist(), dtype=object)
        first = np.ones(len(ids), dtype=bool)
        first[1:] = ids[1:] != ids[:-1]
        return t.filter(pa.array(first)).drop_columns(["_bad"])


def remaining(plan: pa.Table, run: RunDir | str, fs: pafs.FileSystem | None = None) -> pa.Table:
    """The plan rows without a successful generation in ``run`` (matched by ``plan_id``)."""
    done = GenerationStore(run, fs).done_ids()
    if len(done) == 0:
        return plan
    return plan.filter(pc.invert(pc.is_in(plan.column("plan_id"), value_set=done)))


def read_generations(run: RunDir | str, fs: pafs.FileSystem | None = None) -> pa.Table:
    """All generations of ``run``: plan columns plus outputs, one row per ``plan_id``."""
    return GenerationStore(run, fs).read()
