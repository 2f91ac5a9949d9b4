"""The job over S3 (a loopback moto server): read s3://, write s3://, rerun, resume, missing buckets."""

# ruff: noqa: F811 - moto_s3 is a fixture imported from tests.support.s3, and requested by name

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from affalign.config import config_from_dict
from affalign.errors import InputError
from affalign.job import run_job
from affalign.synth import SynthSpec, synthesize
from tests.support.s3 import moto_s3, subprocess_env, use_fake_aws_env  # noqa: F401 - moto_s3 is a fixture

# Before any test of the session starts Ray: its workers must see the fake credentials.
use_fake_aws_env()

BUCKET = "bucket"
ROWS = 12_000
OUTPUTS = ("distributions.parquet", "alignment.parquet", "summary.csv", "run.json")


def job(corpus: str, endpoint: str) -> dict:
    return {
        "name": "s3",
        "dataset": "covid",
        "input": {"path": corpus, "groups": ["liberal", "conservative"]},
        "min_texts_per_group": 50,
        "scoring": {"emotion": {"scorer": "lexicon"}, "moral": {"scorer": "lexicon"}},
        "reduce": {"mode": "threshold"},
        "storage": {"s3_endpoint": endpoint, "s3_region": "us-east-1"},
        "report": False,
    }


def tables(s3, prefix: str) -> dict[str, pa.Table]:
    return {name: pq.read_table(pa.BufferReader(s3.get(BUCKET, f"{prefix}/{name}"))) for name in ("distributions.parquet", "alignment.parquet")}


def run_doc(s3, prefix: str) -> dict:
    return json.loads(s3.get(BUCKET, f"{prefix}/run.json"))


@pytest.fixture(scope="module")
def s3_corpus(moto_s3, tmp_path_factory):
    # affalign synth cannot be pointed at an S3 endpoint (synthesize() calls io.filesystem(out)
    # without one), so the shards are written locally and uploaded.
    local = tmp_path_factory.mktemp("s3corpus") / "corpus"
    synthesize(SynthSpec(dataset="covid", rows=ROWS, seed=11, bad_fraction=0.02, rows_per_shard=3_000), str(local))
    moto_s3.client.create_bucket(Bucket=BUCKET)
    keys = moto_s3.upload_dir(local, BUCKET, "corpus")
    assert sum(k.endswith(".parquet") for k in keys) == 4
    return local


@pytest.fixture(scope="module")
def s3_run(moto_s3, s3_corpus, ray_local):
    cfg = config_from_dict(job(f"s3://{BUCKET}/corpus", moto_s3.endpoint))
    doc = run_job(cfg, f"s3://{BUCKET}/out")
    return cfg, doc


def test_every_output_object_is_in_the_bucket(moto_s3, s3_run):
    cfg, doc = s3_run
    assert doc["status"] == "complete"
    keys = set(moto_s3.keys(BUCKET, "out/"))
    for name in OUTPUTS:
        assert f"out/{name}" in keys, name
    rejects = [k for k in keys if k.startswith("out/rejects/") and k.endswith(".parquet")]
    assert rejects
    assert [k for k in keys if k.startswith("out/scores/human/") and k.endswith(".parquet")]
    # nothing left half-published: _tmp/ holds at most its directory marker
    assert not [k for k in keys if k.startswith("out/_tmp/") and not k.endswith("/")]
    run = run_doc(moto_s3, "out")
    assert run["status"] == "complete"
    assert run["inputs"][0]["file"].startswith(f"s3://{BUCKET}/corpus/part-")
    assert run["rows"]["in"] == ROWS
    assert run["rows"]["kept"] + run["rows"]["rejected"] + run["rows"]["filtered"] == ROWS
    rej = pa.concat_tables(pq.read_table(pa.BufferReader(moto_s3.get(BUCKET, k))) for k in sorted(rejects))
    assert rej.num_rows == run["rows"]["rejected"] > 0
    summary = moto_s3.get(BUCKET, "out/summary.csv").decode().splitlines()
    assert summary[0].startswith("dataset,dimension,subject,target")
    assert len(summary) > 1
    t = tables(moto_s3, "out")
    assert t["distributions.parquet"].num_rows > 0 and t["alignment.parquet"].num_rows > 0
    # the work table went through ds.write_parquet to S3
    assert [k for k in keys if k.startswith("out/_work/rows-") and k.endswith("_SUCCESS")]


def test_no_aws_credential_in_any_output(moto_s3, s3_run):
    """Every object the run published (tables, run.json, work files) is free of the credentials."""
    from tests.support.s3 import FAKE_AWS_ENV

    secrets = [FAKE_AWS_ENV[k].encode() for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]
    keys = [k for k in moto_s3.keys(BUCKET, "out/") if not k.endswith("/")]
    assert len(keys) > 5
    for key in keys:
        body = moto_s3.get(BUCKET, key)
        if key.endswith(".parquet"):  # compressed pages: look at the decoded values
            body = repr(pq.read_table(pa.BufferReader(body)).to_pylist()).encode()
        for secret in secrets:
            assert secret not in body, (key, secret)


def test_s3_run_matches_a_local_run(moto_s3, s3_run, s3_corpus, tmp_path):
    """Same corpus, same config, local paths: the same tables (nothing S3-specific changes a row)."""
    cfg, _ = s3_run
    local = job(str(s3_corpus), moto_s3.endpoint)
    local["storage"] = {}
    run_job(config_from_dict(local), str(tmp_path / "out"))
    s3_tables = tables(moto_s3, "out")
    for name, t in s3_tables.items():
        assert pq.read_table(tmp_path / "out" / name).equals(t), name


def test_rerun_over_the_same_prefix_reuses_the_work_and_gives_identical_tables(moto_s3, s3_run, ray_local):
    cfg, _ = s3_run
    before = tables(moto_s3, "out")
    doc = run_job(cfg, f"s3://{BUCKET}/out")
    assert doc["status"] == "complete"
    assert doc["resumed"] == "human pass reused"
    assert run_doc(moto_s3, "out")["status"] == "complete"
    after = tables(moto_s3, "out")
    for name in before:
        assert after[name].equals(before[name]), name


def test_interrupted_work_table_on_s3_is_resumed_to_identical_tables(moto_s3, s3_run, ray_local):
    """As after a crash: no _SUCCESS marker, half the rows written, one part file cut off mid-write."""
    cfg, first = s3_run
    before = tables(moto_s3, "out")
    work = [k for k in moto_s3.keys(BUCKET, "out/_work/") if "/rows-" in k and not k.endswith("/")]
    parts = [k for k in work if k.endswith(".parquet")]
    assert parts
    client = moto_s3.client
    client.delete_object(Bucket=BUCKET, Key=next(k for k in work if k.endswith("_SUCCESS")))
    rows = pa.concat_tables(pq.read_table(pa.BufferReader(moto_s3.get(BUCKET, k))) for k in parts)
    for k in parts:
        client.delete_object(Bucket=BUCKET, Key=k)
    kept_rows = rows.num_rows // 2
    sink = pa.BufferOutputStream()
    pq.write_table(rows.slice(0, kept_rows), sink)
    whole = sink.getvalue().to_pybytes()
    rows_dir = parts[0].rsplit("/", 1)[0]
    client.put_object(Bucket=BUCKET, Key=f"{rows_dir}/done-part.parquet", Body=whole)
    client.put_object(Bucket=BUCKET, Key=f"{rows_dir}/half-written.parquet", Body=whole[: len(whole) // 3])
    doc = run_job(cfg, f"s3://{BUCKET}/out")
    assert doc["status"] == "complete"
    assert doc["resumed"].startswith(f"{kept_rows} rows reused"), doc["resumed"]
    keys = moto_s3.keys(BUCKET, f"{rows_dir}/")
    assert f"{rows_dir}/half-written.parquet" not in keys and f"{rows_dir}/_SUCCESS" in keys
    after = tables(moto_s3, "out")
    for name in before:
        assert after[name].equals(before[name]), name
    assert doc["rows"] == first["rows"] == run_doc(moto_s3, "out")["rows"]


def test_missing_input_bucket_is_an_input_error_naming_the_uri(moto_s3, tmp_path):
    cfg = config_from_dict(job("s3://no-such-bucket/corpus", moto_s3.endpoint))
    with pytest.raises(InputError, match="s3://no-such-bucket/corpus"):
        run_job(cfg, str(tmp_path / "out"))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "affalign.cli", *args], capture_output=True, text=True, timeout=300, env=subprocess_env())


@pytest.fixture(scope="module")
def job_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("s3job") / "job.yaml"
    path.write_text("name: s3\ndataset: covid\nreport: false\nscoring: {enabled: false}\n")
    return path


def test_cli_missing_input_bucket_exits_2_naming_the_uri(moto_s3, job_file, tmp_path):
    r = cli("run", str(job_file), "--out", str(tmp_path / "out"), "--set", "input.path=s3://no-such-bucket/corpus", "--set", f"storage.s3_endpoint={moto_s3.endpoint}")
    assert r.returncode == 2, r.stderr
    assert "s3://no-such-bucket/corpus" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_missing_output_bucket_exits_2_naming_the_uri(moto_s3, s3_corpus, job_file):
    r = cli("run", str(job_file), "--out", "s3://no-such-bucket/out", "--set", f"input.path=s3://{BUCKET}/corpus", "--set", f"storage.s3_endpoint={moto_s3.endpoint}")
    assert r.returncode == 2, r.stderr
    assert "s3://no-such-bucket/out" in r.stderr
    assert "Traceback" not in r.stderr
