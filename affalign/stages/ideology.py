"""Stages of the ideology pass: users' groups from the news domains they share (Appendix A.1).

``DomainSumsStage`` reads, per read unit, only the user and domains columns and returns each
user's exact partial bias sums (:func:`affalign.ideology.user_bias_sums`); the driver adds them up
and labels users. ``UserGroupStage`` then sets each tweet's group from its author's label in the
human pass; tweets of users left out (neutral, too few domains) are filtered as
``user_not_labelled``, counted, never rejected.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from affalign import schema
from affalign.inputs import InputFile, ReadUnit, read_unit_columns
from affalign.rundir import filesystem
from affalign.stages.base import Resources, Stage

NOT_LABELLED = "user_not_labelled"


class DomainSumsStage(Stage):
    """Read units (one JSON ``unit`` per row) -> per-user partial sums of shared-domain biases."""

    name = "domain_sums"
    inputs: ClassVar[tuple[str, ...]] = ("unit",)
    resources = Resources(num_cpus=1, batch_size=1)
    quarantine: ClassVar[bool] = False  # an unreadable unit fails the pass, naming the file

    def __init__(self, files: list[InputFile], uri: str, domains_column: str, bias_table: str, s3_endpoint: str | None, s3_region: str | None):
        from affalign.ideology import bias_table_name, bias_table_text, parse_bias_table

        self.files = files
        self.uri = uri
        self.domains_column = domains_column
        # the table's text travels with the stage: workers need no copy of the file
        self.table_text = bias_table_text(bias_table)
        self.table_name = bias_table_name(bias_table)
        parse_bias_table(self.table_text, self.table_name)  # a bad table fails here, on the driver
        self.s3 = (s3_endpoint, s3_region)

    def setup(self) -> None:
        from affalign.ideology import parse_bias_table

        self._fs, _ = filesystem(self.uri, *self.s3)
        self._bias = parse_bias_table(self.table_text, self.table_name)

    def process(self, batch: pa.Table) -> pa.Table:
        from affalign.ideology import combine_sums, user_bias_sums

        parts = []
        for raw in batch.column("unit").to_pylist():
            unit = ReadUnit.from_json(raw)
            t = read_unit_columns(unit, self.files[unit.file_index], self._fs, [schema.USER_ID, self.domains_column])
            parts.append(user_bias_sums(t, self._bias, self.domains_column, schema.USER_ID))
        return combine_sums(parts)


class UserGroupStage(Stage):
    """Sets ``group`` from the author's inferred label; unlabelled authors' tweets are filtered."""

    name = "user_group"
    inputs: ClassVar[tuple[str, ...]] = (schema.USER_ID, schema.GROUP, schema.REASON)
    outputs: ClassVar[tuple[str, ...]] = (schema.GROUP, schema.REASON)
    resources = Resources(num_cpus=1, batch_size=None)

    def __init__(self, user_groups: Any):
        # a pa.Table (user_id, group), or an ObjectRef of one on Ray so workers share one copy
        self.user_groups = user_groups

    def setup(self) -> None:
        table = self.user_groups
        if not isinstance(table, pa.Table):
            import ray

            table = ray.get(table)
        self._users = table.column("user_id").combine_chunks()
        self._groups = table.column("group").combine_chunks()

    def process(self, batch: pa.Table) -> pa.Table:
        users = batch.column(schema.USER_ID).combine_chunks()
        idx = pc.index_in(users, value_set=self._users)
        group = pc.take(self._groups, idx)
        reason = batch.column(schema.REASON).combine_chunks()
        reason = pc.if_else(pc.and_(pc.is_null(reason), pc.is_null(group)), pa.scalar(NOT_LABELLED), reason)
        batch = batch.set_column(batch.schema.get_field_index(schema.GROUP), schema.GROUP, group)
        return batch.set_column(batch.schema.get_field_index(schema.REASON), schema.REASON, reason)
