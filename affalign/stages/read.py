"""The read stage: read units (slices of input files) in, canonical tweet rows out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from affalign import schema
from affalign.inputs import InputFile, ReadUnit, read_unit
from affalign.rundir import filesystem
from affalign.stages.base import Resources, Stage


class ReadStage(Stage):
    """Reads the read units named in a batch into the canonical table."""

    name = "read"
    inputs = ("unit",)
    resources = Resources(num_cpus=1, batch_size=1)

    def __init__(self, files: list[InputFile], uri: str, group_column: str | None, s3_endpoint: str | None, s3_region: str | None, done_rows: Any = None):
        self.files = files
        self.uri = uri
        self.group_column = group_column
        self.s3 = (s3_endpoint, s3_region)
        # rows a previous, interrupted attempt already wrote: {file index: sorted row array}
        # (an ObjectRef on Ray, so actors do not each get a pickled copy)
        self.done_rows = done_rows

    def setup(self) -> None:
        self._fs, _ = filesystem(self.uri, *self.s3)
        done = self.done_rows
        if done is not None and not isinstance(done, dict):
            import ray

            done = ray.get(done)
        self._done: dict[int, np.ndarray] = done or {}

    def process(self, batch: pa.Table) -> pa.Table:
        tables = []
        for raw in batch.column("unit").to_pylist():
            unit = ReadUnit.from_json(raw)
            t = read_unit(unit, self.files[unit.file_index], self._fs, self.group_column)
            done = self._done.get(unit.file_index)
            if done is not None and len(done):
                rows = t.column(schema.SOURCE_ROW).to_numpy()
                t = t.filter(pa.array(~np.isin(rows, done)))
            tables.append(t)
        return pa.concat_tables(tables)
