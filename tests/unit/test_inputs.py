import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from affalign import inputs, schema
from affalign.errors import InputError
from affalign.rundir import RunDir, filesystem
from affalign.stages.validate import ValidateStage


def good_table(n=3, **over):
    cols = {
        "tweet_id": pa.array(range(1, n + 1), pa.int64()),
        "user_id": pa.array([f"u{i}" for i in range(n)]),
        "text": pa.array([f"text {i}" for i in range(n)]),
        "party": pa.array(["liberal"] * n),
    }
    cols.update(over)
    return pa.table(cols)


def plan(path, fmt="auto", group="party"):
    files = inputs.resolve_inputs(str(path), fmt)
    fs, _ = filesystem(str(path))
    units, infos = inputs.preflight(files, fs, group)
    return files, fs, units, infos


def read_all(path, fmt="auto", group="party"):
    files, fs, units, _ = plan(path, fmt, group)
    return pa.concat_tables([inputs.read_unit(u, files[u.file_index], fs, group) for u in units])


def test_resolve_file_dir_and_glob(tmp_path):
    for i in range(3):
        pq.write_table(good_table(), tmp_path / f"p{i}.parquet")
    (tmp_path / "_truth.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("x")
    assert [f.path.rsplit("/", 1)[1] for f in inputs.resolve_inputs(str(tmp_path))] == ["p0.parquet", "p1.parquet", "p2.parquet"]
    assert len(inputs.resolve_inputs(str(tmp_path / "p[01].parquet"))) == 2
    assert len(inputs.resolve_inputs(str(tmp_path / "p1.parquet"))) == 1
    with pytest.raises(InputError, match="no such file"):
        inputs.resolve_inputs(str(tmp_path / "missing.parquet"))
    with pytest.raises(InputError, match="unknown file format"):
        inputs.resolve_inputs(str(tmp_path / "notes.txt"))


def test_missing_required_column_names_file_and_column(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(good_table().drop_columns(["user_id"]), path)
    with pytest.raises(InputError, match=r"bad\.parquet.*'user_id'"):
        plan(path)
    jl = tmp_path / "bad.jsonl"
    jl.write_text(json.dumps({"tweet_id": 1, "user_id": "u"}) + "\n")
    with pytest.raises(InputError, match=r"bad\.jsonl.*'text'"):
        plan(jl)
    csv = tmp_path / "bad.csv"
    csv.write_text("tweet_id,text\n1,hello\n")
    with pytest.raises(InputError, match=r"bad\.csv.*'user_id'"):
        plan(csv)


def test_wrong_text_type_and_corrupt_parquet_are_input_errors(tmp_path):
    pq.write_table(good_table(text=pa.array([1, 2, 3])), tmp_path / "ints.parquet")
    with pytest.raises(InputError, match=r"ints\.parquet: column 'text' has type int64"):
        plan(tmp_path / "ints.parquet")
    pq.write_table(good_table(), tmp_path / "ok.parquet")
    data = (tmp_path / "ok.parquet").read_bytes()
    (tmp_path / "trunc.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"trunc\.parquet: unreadable parquet"):
        plan(tmp_path / "trunc.parquet")


def test_empty_file_is_listed_with_zero_rows(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    _, _, units, infos = plan(tmp_path / "empty.jsonl")
    assert units == [] and infos[0]["rows"] == 0


def test_parquet_canonical_types_and_positions(tmp_path):
    pq.write_table(good_table(5), tmp_path / "a.parquet", row_group_size=2)
    t = read_all(tmp_path / "a.parquet")
    assert t.schema == inputs.CANONICAL_SCHEMA
    assert t.column("tweet_id").to_pylist() == ["1", "2", "3", "4", "5"]
    assert t.column(schema.SOURCE_ROW).to_pylist() == [0, 1, 2, 3, 4]
    assert t.column(schema.GROUP).to_pylist() == ["liberal"] * 5
    assert t.column("is_retweet").null_count == 5


def test_float_ids_print_as_integers():
    arr = inputs._to_string(pa.array([1.0, 2.5, None]))
    assert arr.to_pylist() == ["1", "2.5", None]


def test_jsonl_bad_lines_become_rejected_rows(tmp_path):
    lines = [
        json.dumps({"tweet_id": 1, "user_id": "u", "text": "fine", "party": "liberal"}).encode(),
        b"{not json",
        json.dumps({"tweet_id": 2, "user_id": "u", "text": 12345, "party": "liberal"}).encode(),
        b'{"tweet_id": 3, "user_id": "u", "text": "bad \xff byte", "party": "liberal"}',
        b"[1, 2]",
        json.dumps({"tweet_id": 4, "user_id": "u", "text": "rtl \u202e and emoji \U0001f600 and nul \u0000", "party": "liberal"}).encode(),
    ]
    (tmp_path / "x.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    t = read_all(tmp_path / "x.jsonl")
    assert t.num_rows == 6
    assert t.column(schema.REASON).to_pylist() == [None, "unparseable_row", "text_not_string", "invalid_utf8", "unparseable_row", None]
    assert t.column("text").to_pylist()[2] == "12345"  # kept, as data, for the rejects table


def test_csv_with_invalid_utf8_and_extra_fields(tmp_path):
    data = b"tweet_id,user_id,text,party\n1,u1,hello,liberal\n2,u2,caf\xe9,liberal\n3,u3,a,b,c\n4,u4,\"multi\nline\",conservative\n"
    (tmp_path / "x.csv").write_bytes(data)
    t = read_all(tmp_path / "x.csv")
    assert t.column(schema.REASON).to_pylist() == [None, "invalid_utf8", "unparseable_row", None]
    assert t.column("text").to_pylist()[3] == "multi\nline"
    assert t.column("tweet_id").to_pylist() == ["1", "2", "3", "4"]


def test_validate_marks_every_reason_once():
    t = pa.table(
        {
            "tweet_id": ["1", None, "3", "4", "5", "6", "7", "8", "9"],
            "user_id": ["u", "u", None, "u", "u", "u", "u", "u", "u"],
            "text": ["ok", "x", "x", None, "  ", "x", "x", "x", "x"],
            "group": ["liberal", "liberal", "liberal", "liberal", "liberal", None, "green", "liberal", "liberal"],
            "is_retweet": [False, False, False, False, False, False, False, True, None],
            "is_quote": [False, False, False, False, False, False, False, True, True],
            "reason": pa.nulls(9, pa.string()),
        }
    )
    out = ValidateStage(groups=["liberal", "conservative"])(t)
    assert out.column("reason").to_pylist() == [
        None,
        "null_tweet_id",
        "null_user_id",
        "null_text",
        "empty_text",
        "missing_group",
        "unknown_group",
        "retweet",
        "quote",
    ]
    kept = ValidateStage(groups=[], drop_retweets=False, drop_quotes=False)(t)
    assert kept.column("reason").to_pylist()[6:] == [None, None, None]


def test_validate_keeps_an_earlier_reason_and_rejects_huge_texts():
    t = pa.table(
        {
            "tweet_id": ["1", "2"],
            "user_id": ["u", "u"],
            "text": ["x" * 50, "y"],
            "group": ["a", "a"],
            "is_retweet": [False, False],
            "is_quote": [False, False],
            "reason": ["invalid_utf8", None],
        }
    )
    out = ValidateStage(max_text_chars=10)(t.slice(0, 1))
    assert out.column("reason").to_pylist() == ["invalid_utf8"]
    t2 = t.set_column(6, "reason", pa.nulls(2, pa.string()))
    assert ValidateStage(max_text_chars=10)(t2).column("reason").to_pylist() == ["text_too_long", None]


def test_output_dir_publishes_atomically(tmp_path):
    out = RunDir(str(tmp_path / "o"))
    out.publish_bytes("run.json", b"{}")
    out.publish_table("t/a.parquet", pa.table({"x": [1]}))
    assert out.read_bytes("run.json") == b"{}"
    assert out.read_table("t/a.parquet").num_rows == 1
    assert list((tmp_path / "o" / "_tmp").iterdir()) == []


def test_run_dir_parts_are_content_named_and_unreadable_ones_removed(tmp_path):
    run = RunDir(str(tmp_path / "o"))
    t = pa.table({"_file": [0, 0], "_row": [1, 2], "x": ["a", "b"]})
    first = run.write_part("w", t, ("_file", "_row"))
    again = run.write_part("w", t, ("_file", "_row"))  # a retried batch replaces its own file
    assert first == again and len(run.list_files("w")) == 1
    (tmp_path / "o" / "w" / "part-broken.parquet").write_bytes(b"not parquet")
    parts = run.read_parts("w")
    assert [p.num_rows for p in parts] == [2]
    assert len(run.list_files("w")) == 1  # the unreadable part is gone: its rows count as not done
    assert not run.is_done("w")
    run.mark_done("w")
    assert run.is_done("w")
