"""The write stage: a batch of finished rows becomes one part file of the pass's work table."""

from __future__ import annotations

import pyarrow as pa

from affalign import schema
from affalign.rundir import RunDir
from affalign.stages.base import Resources, Stage


class WriteStage(Stage):
    """Writes each batch of the human pass as one part file of the work table; returns its row count.

    The driver consumes only these counts (the progress display, on embedded Ray and on a
    cluster alike), never the rows. A part file is named by a hash of its rows' (file, row)
    keys, so a batch retried after a crash overwrites its own file instead of adding a copy;
    it is published atomically (temp name, then move), so a resumed run reads only whole parts.
    """

    name = "write"
    inputs = (schema.SOURCE_FILE, schema.SOURCE_ROW)
    outputs = ("rows",)
    resources = Resources(num_cpus=1, batch_size=None)
    quarantine = False  # a failed write fails the batch (retried); rows are never marked for it

    def __init__(self, uri: str, rows_dir: str, s3_endpoint: str | None, s3_region: str | None):
        self.uri = uri
        self.rows_dir = rows_dir
        self.s3 = (s3_endpoint, s3_region)

    def setup(self) -> None:
        self._out = RunDir(self.uri, *self.s3)

    def process(self, batch: pa.Table) -> pa.Table:
        if batch.num_rows:
            self._out.write_part(self.rows_dir, batch, (schema.SOURCE_FILE, schema.SOURCE_ROW))
        return pa.table({"rows": pa.array([batch.num_rows], pa.int64())})
