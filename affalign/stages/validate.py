"""Row validation: marks bad rows with a reason instead of dropping them.

Retweets are filtered by the input's ``is_retweet`` column. Where a row has no ``is_retweet`` value
(the column is absent from the file, or empty in that row), the text decides instead: a text that
starts with ``RT @user`` (Twitter's retweet prefix; case, spaces and the colon may vary:
``rt @user :``, ``RT@user:``) is filtered as ``retweet`` like a flagged one. Quote tweets have no
such prefix: without ``is_quote`` they cannot be recognised and are kept.
:func:`retweet_fallback_counts` counts both cases for ``run.json``.
"""

from __future__ import annotations

import zlib
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from affalign import schema
from affalign.stages.base import Resources, Stage

# "RT @handle" at the start of a text: how Twitter's API wrote a retweet ("RT @user: ..."), and how
# clients wrote manual ones; RE2 syntax (Arrow's regex engine), matched case-insensitively.
RT_PREFIX = r"^\s*RT\s*@\w+"


def rt_prefix_mask(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """True where a text starts with a retweet prefix ``RT @user`` (null text: null)."""
    return pc.match_substring_regex(text, RT_PREFIX, ignore_case=True)


def retweet_mask(batch: pa.Table) -> pa.Array:
    """``is_retweet`` where it has a value; the text's ``RT @user`` prefix where it has none."""
    flag = batch.column("is_retweet").combine_chunks()
    if flag.null_count == 0:
        return flag
    return pc.if_else(pc.is_null(flag), rt_prefix_mask(batch.column(schema.TEXT).combine_chunks()), flag)


def retweet_fallback_counts(batch: pa.Table) -> dict[str, int]:
    """Counts for ``run.json`` of a validated table: rows without an ``is_retweet`` / ``is_quote``
    value, and rows filtered as ``retweet`` because of their text prefix (no ``is_retweet``)."""
    no_rt = pc.is_null(batch.column("is_retweet"))
    by_prefix = pc.and_(no_rt, pc.fill_null(pc.equal(batch.column(schema.REASON), "retweet"), False))
    return {
        "rows_without_is_retweet": int(pc.sum(no_rt.cast(pa.int64())).as_py() or 0),
        "rows_without_is_quote": int(pc.sum(pc.is_null(batch.column("is_quote")).cast(pa.int64())).as_py() or 0),
        "retweets_by_text_prefix": int(pc.sum(by_prefix.cast(pa.int64())).as_py() or 0),
    }


def sampled_mask(ids: pa.Array, fraction: float) -> pa.Array:
    """Deterministic per-id sample: the same tweet is in or out of the sample in every run."""
    if fraction >= 1.0:
        return pa.array([True] * len(ids), pa.bool_())
    cut = int(fraction * 2**32)
    return pa.array([v is not None and zlib.crc32(v.encode("utf-8", "replace")) < cut for v in ids.to_pylist()], pa.bool_())


class ValidateStage(Stage):
    """Sets ``reason`` on rows that are bad input or outside the analysis (first reason wins)."""

    name = "validate"
    inputs: ClassVar[tuple[str, ...]] = (schema.TWEET_ID, schema.USER_ID, schema.TEXT, schema.GROUP, schema.REASON)
    outputs: ClassVar[tuple[str, ...]] = (schema.REASON,)
    resources = Resources(num_cpus=1, batch_size=None)

    def __init__(
        self,
        groups: list[str] | None = None,
        drop_retweets: bool = True,
        drop_quotes: bool = True,
        max_text_chars: int = 20_000,
        sample_fraction: float = 1.0,
        check_group: bool = True,
    ):
        self.groups = list(groups or [])
        self.drop_retweets = drop_retweets
        self.drop_quotes = drop_quotes
        self.max_text_chars = max_text_chars
        self.sample_fraction = sample_fraction
        # False when groups are inferred later (ideology from shared domains), not read from a column
        self.check_group = check_group

    def process(self, batch: pa.Table) -> pa.Table:
        reason = batch.column(schema.REASON).combine_chunks()
        text = batch.column(schema.TEXT).combine_chunks()
        group = batch.column(schema.GROUP).combine_chunks()
        checks: list[tuple[str, pa.Array]] = [
            ("null_tweet_id", pc.is_null(batch.column(schema.TWEET_ID))),
            ("null_user_id", pc.is_null(batch.column(schema.USER_ID))),
            ("null_text", pc.is_null(text)),
            ("empty_text", pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0)),
            ("text_too_long", pc.greater(pc.utf8_length(text), self.max_text_chars)),
        ]
        if self.check_group:
            checks.append(("missing_group", pc.or_kleene(pc.is_null(group), pc.equal(pc.utf8_length(group), 0))))
        if self.groups and self.check_group:
            checks.append(("unknown_group", pc.invert(pc.is_in(group, pa.array(self.groups, pa.string())))))
        if self.drop_retweets:
            checks.append(("retweet", retweet_mask(batch)))
        if self.drop_quotes:
            checks.append(("quote", batch.column("is_quote")))
        if self.sample_fraction < 1.0:
            ids = batch.column(schema.TWEET_ID).combine_chunks()
            checks.append(("not_sampled", pc.invert(sampled_mask(ids, self.sample_fraction))))
        for name, mask in checks:
            hit = pc.and_(pc.is_null(reason), pc.fill_null(mask, False))
            reason = pc.if_else(hit, pa.scalar(name), reason)
        return batch.set_column(batch.schema.get_field_index(schema.REASON), schema.REASON, reason)


class SampleStage(Stage):
    """Marks tagged rows outside the scoring sample as ``not_sampled`` (topic counts still see them)."""

    name = "sample"
    inputs = (schema.TWEET_ID, schema.REASON)
    outputs = (schema.REASON,)
    resources = Resources(num_cpus=1, batch_size=None)

    def __init__(self, fraction: float):
        self.fraction = fraction

    def process(self, batch: pa.Table) -> pa.Table:
        reason = batch.column(schema.REASON).combine_chunks()
        out = pc.invert(sampled_mask(batch.column(schema.TWEET_ID).combine_chunks(), self.fraction))
        new = pc.if_else(pc.and_(pc.is_null(reason), out), pa.scalar("not_sampled"), reason)
        return batch.set_column(batch.schema.get_field_index(schema.REASON), schema.REASON, new)
