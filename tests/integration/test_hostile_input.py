"""Hostile input: each case is a clear exit-2 error naming file and field, or rows rejected with reasons."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

GOOD = "mask mandate in our schools again, the covid pandemic is not over"


def run(tmp_path, corpus, *extra):
    job = tmp_path / "job.yaml"
    job.write_text(
        "dataset: covid\n"
        f"input: {{path: '{corpus}', groups: [liberal, conservative]}}\n"
        "min_texts_per_group: 1\n"
        "scoring: {emotion: {scorer: lexicon}, moral: {scorer: lexicon}}\n"
        "report: false\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "affalign.cli", "run", str(job), "--out", str(tmp_path / "out"), *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )


def good_rows(n, start=0):
    return [{"tweet_id": start + i, "user_id": f"u{i}", "text": GOOD, "party": ["liberal", "conservative"][i % 2]} for i in range(n)]


@pytest.mark.parametrize(
    "name, make, field",
    [
        ("truncated.parquet", lambda p: p.write_bytes(b"PAR1" + b"\x00" * 100), "truncated.parquet"),
        ("wrongtype.parquet", lambda p: pq.write_table(pa.table({"tweet_id": [1], "user_id": ["u"], "text": [3.5]}), p), "'text'"),
        ("nouser.parquet", lambda p: pq.write_table(pa.table({"tweet_id": [1], "text": ["x"]}), p), "user_id"),
        ("notjson.jsonl", lambda p: p.write_bytes(b"\xff\xfe garbage\nmore garbage\n"), "notjson.jsonl"),
    ],
)
def test_file_level_problems_exit_2_naming_file_and_field(tmp_path, name, make, field):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    make(corpus / name)
    r = run(tmp_path, corpus / name)
    assert r.returncode == 2, r.stdout + r.stderr
    assert name in r.stderr and field in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "summary.csv").exists()


def test_row_level_problems_are_rejected_and_counted(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = good_rows(20)
    rows += [
        {"tweet_id": 100, "user_id": "u", "text": "x" * 1_000_000, "party": "liberal"},  # 1 MB text
        {"tweet_id": 101, "user_id": "u", "text": "mask mandate \u0000 nul \u0007 bell covid", "party": "liberal"},
        {"tweet_id": 102, "user_id": "u", "text": "\u202emask mandate covid \u05e9\u05dc\u05d5\u05dd", "party": "conservative"},
        {"tweet_id": 103, "user_id": "u", "text": "\U0001f637\U0001f637\U0001f489", "party": "conservative"},
        {"tweet_id": 104, "user_id": "u", "text": 12345, "party": "liberal"},
        {"tweet_id": 1, "user_id": "u", "text": GOOD, "party": "liberal"},  # duplicate id
        {"tweet_id": 105, "user_id": "u", "text": "RT @cdc: mask mandate covid", "party": "liberal"},  # retweet, no is_retweet column
    ]
    lines = [json.dumps(r).encode() for r in rows]
    lines.insert(3, b'{"tweet_id": 200, "user_id": "u", "text": "bad \xff utf8", "party": "liberal"}')
    lines.insert(5, b"{broken json")
    (corpus / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (corpus / "b.csv").write_bytes(b"tweet_id,user_id,text,party\n300,u,caf\xe9 mask mandate,liberal\n301,u,mask mandate covid,conservative\n")
    (corpus / "c.jsonl").write_bytes(b"")
    r = run(tmp_path, corpus)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((tmp_path / "out" / "run.json").read_text())
    by = doc["rows"]["by_reason"]
    assert doc["rows"]["in"] == len(rows) + 2 + 2
    assert by["text_too_long"] == 1
    assert by["text_not_string"] == 1
    assert by["invalid_utf8"] == 2
    assert by["unparseable_row"] == 1
    assert by["duplicate_tweet_id"] == 1
    assert by.get("no_topic", 0) == 1  # the emoji-only text: valid, but about nothing we tag
    assert doc["rows"]["kept"] == 20 + 2 + 1  # good rows, NUL/RTL texts, the CSV's good row
    rejects = pq.read_table(tmp_path / "out" / "rejects").to_pandas()
    assert len(rejects) == doc["rows"]["rejected"] == 6
    assert set(rejects["reason"]) == {"text_too_long", "text_not_string", "invalid_utf8", "unparseable_row", "duplicate_tweet_id"}
    assert any(i["file"].endswith("c.jsonl") and i["rows"] == 0 for i in doc["inputs"])
    # no is_retweet / is_quote columns anywhere: the "RT @" prefix filtered the retweet, and run.json says so
    assert by["retweet"] == 1
    rt = doc["rows"]["retweet_detection"]
    assert rt["rows_without_is_retweet"] == rt["rows_without_is_quote"] == doc["rows"]["in"]
    assert rt["retweets_by_text_prefix"] == 1 and "RT @user" in rt["method"]
    assert "the input has no is_retweet column" in rt["note"] and "no is_quote column" in rt["note"]
    assert "the input has no is_retweet column" in r.stderr
