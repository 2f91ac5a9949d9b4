"""synth → run on local CPU Ray → every output, planted-truth recovery, rejects that add up."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from affalign import schema
from affalign.config import config_from_dict
from affalign.job import run_job
from affalign.synth import SynthSpec, synthesize

ROWS = 40_000


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory, ray_local):
    base = tmp_path_factory.mktemp("planted")
    truth = synthesize(SynthSpec(dataset="covid", rows=ROWS, seed=7, bad_fraction=0.02, rows_per_shard=8_000), str(base / "corpus"))
    cfg = config_from_dict(
        {
            "name": "planted",
            "dataset": "covid",
            "input": {"path": str(base / "corpus"), "groups": ["liberal", "conservative"]},
            "min_texts_per_group": 200,
            "scoring": {"emotion": {"scorer": "lexicon"}, "moral": {"scorer": "lexicon"}},
            "reduce": {"mode": "threshold", "tau": 0.5},
            "report": False,
        }
    )
    doc = run_job(cfg, str(base / "out"))
    return base / "out", truth, doc


def test_every_output_file_and_column(planted_run):
    out, truth, doc = planted_run
    d = pq.read_table(out / "distributions.parquet")
    assert d.schema.names == ["dataset", "dimension", "topic", "subject", "label", "value", "n_texts"]
    a = pq.read_table(out / "alignment.parquet")
    assert a.schema.names == ["dataset", "dimension", "topic", "subject", "target", "score"]
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(schema.SUMMARY_COLUMNS) <= set(rows[0])
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    for key in ("inputs", "rows", "topics", "config_hash", "versions", "timings"):
        assert key in run
    assert {"preflight", "human_pass", "finalize", "reduce"} <= set(run["timings"])
    assert (out / "rejects").is_dir() and list((out / "rejects").glob("*.parquet"))
    # distributions sum to 1 per (dimension, topic, subject)
    df = d.to_pandas()
    sums = df.groupby(["dimension", "topic", "subject"])["value"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-9)
    assert set(df["subject"]) == {"human:liberal", "human:conservative"}
    assert set(df["dimension"]) == {"emotion", "moral"}
    # the human baseline is always there
    assert {(r["subject"], r["target"]) for r in rows} == {("human:liberal", "human:conservative")}
    assert all(0 <= float(r["score_mean"]) <= 1 for r in rows)


def test_rejects_add_up(planted_run):
    out, truth, doc = planted_run
    counts = truth["counts"]
    run = json.loads((out / "run.json").read_text())
    by_reason = run["rows"]["by_reason"]
    for reason in ("null_text", "empty_text", "null_tweet_id", "null_user_id", "duplicate_tweet_id", "unknown_group"):
        assert by_reason.get(reason, 0) == counts[reason], reason
    rejects = pq.read_table(out / "rejects").to_pandas()
    assert len(rejects) == run["rows"]["rejected"] == sum(counts[r] for r in ("null_text", "empty_text", "null_tweet_id", "null_user_id", "duplicate_tweet_id", "unknown_group"))
    assert rejects["reason"].notna().all()
    assert by_reason["retweet"] == counts["retweet"] and by_reason["quote"] == counts["quote"]
    assert run["rows"]["in"] == ROWS
    assert run["rows"]["kept"] + run["rows"]["rejected"] + run["rows"]["filtered"] == ROWS


def test_planted_truth_is_recovered(planted_run):
    out, truth, doc = planted_run
    df = pq.read_table(out / "distributions.parquet").to_pandas()
    kept = {t["topic"] for t in doc["topics"]["kept"]}
    assert len(kept) >= 20
    worst = 0.0
    checked = 0
    for e in truth["expected_threshold_distributions"]:
        if e["topic"] not in kept:
            continue
        sel = df[(df.topic == e["topic"]) & (df.subject == f"human:{e['group']}") & (df.dimension == e["dimension"])]
        got = sel.set_index("label").loc[e["labels"], "value"].to_numpy()
        worst = max(worst, float(np.abs(got - np.array(e["values"])).max()))
        checked += 1
    assert checked >= 80
    # ~600 texts per (topic, group): sampling noise on each normalised share is ~0.01
    assert worst < 0.04, worst


def test_topics_dropped_below_threshold_are_listed(planted_run):
    out, truth, doc = planted_run
    run = json.loads((out / "run.json").read_text())
    for t in run["topics"]["dropped"]:
        assert min(t["counts"].values()) < 200
    for t in run["topics"]["kept"]:
        assert min(t["counts"].values()) >= 200


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "affalign.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_exit_codes_for_bad_input_and_config(tmp_path):
    import pyarrow as pa

    pq.write_table(pa.table({"tweet_id": [1], "text": ["x"]}), tmp_path / "nouser.parquet")
    job = tmp_path / "job.yaml"
    job.write_text(f"dataset: covid\ninput: {{path: {tmp_path / 'nouser.parquet'}}}\n")
    r = cli("run", str(job), "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert "nouser.parquet" in r.stderr and "user_id" in r.stderr
    assert not (tmp_path / "out" / "summary.csv").exists()
    r = cli("run", str(job), "--out", str(tmp_path / "out"), "--set", "input.bogus=1")
    assert r.returncode == 2 and "input.bogus" in r.stderr
    r = cli("run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and "missing.yaml" in r.stderr


def test_cli_tag_prints_json_lines(tmp_path):
    r = cli("tag", "--dataset", "covid", "Mask mandates are back in our county #MaskUp", "I love pancakes")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0]["text"].startswith("Mask mandates")
    assert "COVID-19 mask mandates and policies" in lines[0]["topics"]
    assert lines[1]["topics"] == []
