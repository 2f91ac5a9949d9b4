"""Retweets in input without is_retweet / is_quote columns: the text's "RT @user" prefix decides."""

from __future__ import annotations

import pyarrow as pa

from affalign import schema
from affalign.inputs import canonicalize
from affalign.stages.validate import ValidateStage, retweet_fallback_counts, rt_prefix_mask

PREFIXED = ["RT @user: mask mandate", "rt @User_1 : mask mandate", "  RT  @cdc: vaccines", "RT@x: lockdown", "Rt @someone vaccines work"]
NOT_PREFIXED = ["Art @x is nice", "RT: no handle", "mask mandates RT @x: quoted later", "RTL @x", "I love RT @news", "plain tweet"]


def _raw(texts: list[str], **extra: list) -> pa.Table:
    n = len(texts)
    return pa.table({"tweet_id": [str(i) for i in range(n)], "user_id": ["u"] * n, "text": texts, "party": ["liberal"] * n, **extra})


def test_prefix_pattern_variants():
    got = rt_prefix_mask(pa.array(PREFIXED + NOT_PREFIXED + [None])).to_pylist()
    assert got == [True] * len(PREFIXED) + [False] * len(NOT_PREFIXED) + [None]


def test_no_columns_prefixed_texts_are_filtered_as_retweets():
    # as read from a file without is_retweet / is_quote: canonicalize leaves those columns null
    batch = canonicalize(_raw(PREFIXED + NOT_PREFIXED), 0, 0, "party")
    assert batch.column("is_retweet").null_count == batch.num_rows
    out = ValidateStage(groups=["liberal", "conservative"])(batch)
    assert out.column(schema.REASON).to_pylist() == ["retweet"] * len(PREFIXED) + [None] * len(NOT_PREFIXED)
    assert retweet_fallback_counts(out) == {
        "rows_without_is_retweet": len(PREFIXED) + len(NOT_PREFIXED),
        "rows_without_is_quote": len(PREFIXED) + len(NOT_PREFIXED),
        "retweets_by_text_prefix": len(PREFIXED),
    }
    # drop_retweets: false keeps them (and nothing is looked for)
    kept = ValidateStage(groups=["liberal"], drop_retweets=False)(batch)
    assert kept.column(schema.REASON).null_count == kept.num_rows


def test_column_present_wins_over_prefix_and_fills_only_missing_rows():
    texts = ["RT @a: x", "RT @b: y", "original", "RT @c: z"]
    batch = canonicalize(_raw(texts, is_retweet=[False, True, True, None], is_quote=[False, False, False, False]), 0, 0, "party")
    out = ValidateStage()(batch)
    # row 0: the column says original (kept though prefixed); row 2: the column says retweet;
    # row 3: no value in this row, the prefix decides
    assert out.column(schema.REASON).to_pylist() == [None, "retweet", "retweet", "retweet"]
    assert retweet_fallback_counts(out) == {"rows_without_is_retweet": 1, "rows_without_is_quote": 0, "retweets_by_text_prefix": 1}


def test_an_earlier_reason_wins_and_is_not_counted_as_prefix_retweet():
    batch = canonicalize(_raw(["RT @a: x", "RT @b: y"]), 0, 0, "party")
    batch = batch.set_column(batch.schema.get_field_index(schema.GROUP), schema.GROUP, pa.array(["liberal", "green"]))
    out = ValidateStage(groups=["liberal"])(batch)
    assert out.column(schema.REASON).to_pylist() == ["retweet", "unknown_group"]
    assert retweet_fallback_counts(out)["retweets_by_text_prefix"] == 1


def test_run_json_note_says_whether_columns_are_absent_or_partly_empty():
    from affalign.config import config_from_dict
    from affalign.passes.human import _retweet_note

    cfg = config_from_dict({"dataset": "covid", "input": {"path": "x"}})
    counts = {"rows_without_is_retweet": 10, "rows_without_is_quote": 10, "retweets_by_text_prefix": 3}
    note = _retweet_note(cfg, counts, 10)
    assert note["retweets_by_text_prefix"] == 3 and note["method"] == "text prefix 'RT @user'"
    assert "the input has no is_retweet column" in note["note"] and "3 filtered as retweet" in note["note"]
    assert "the input has no is_quote column: quote tweets there cannot be recognised and were kept" in note["note"]
    partly = _retweet_note(cfg, {**counts, "rows_without_is_quote": 0}, 40)["note"]
    assert "10 of 40 rows have no is_retweet value" in partly and "is_quote" not in partly
    off = config_from_dict({"dataset": "covid", "input": {"path": "x", "drop_retweets": False}})
    assert "not looked for" in _retweet_note(off, counts, 10)["note"]
