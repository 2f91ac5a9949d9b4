"""Kill a run midway (SIGKILL of the whole process group) and rerun: same outputs, work reused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from affalign.synth import SynthSpec, synthesize

JOB = """
name: resume
dataset: covid
input: {{path: {corpus}, groups: [liberal, conservative]}}
min_texts_per_group: 50
scoring: {{emotion: {{scorer: lexicon}}, moral: {{scorer: lexicon}}}}
reduce: {{mode: threshold}}
report: false
"""


def run_cli(job: Path, out: Path, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "affalign.cli", "run", str(job), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def tables(out: Path):
    return {name: pq.read_table(out / name) for name in ("distributions.parquet", "alignment.parquet")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    synthesize(SynthSpec(dataset="covid", rows=60_000, seed=3, bad_fraction=0.01, rows_per_shard=1_000), str(base / "corpus"))
    job = base / "job.yaml"
    job.write_text(JOB.format(corpus=base / "corpus"))
    return base, job


def test_killed_run_resumes_to_identical_outputs(corpus):
    base, job = corpus
    ref = run_cli(job, base / "ref")
    ref_out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, ref_out

    out = base / "killed"
    proc = run_cli(job, out)
    deadline = time.time() + 300
    killed = False
    while time.time() < deadline and proc.poll() is None:
        parts = list(out.glob("_work/rows-*/*.parquet"))
        if parts:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    if not killed:
        pytest.skip("the run finished before any part file appeared; nothing to interrupt")
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "running"  # never "complete" for an interrupted run
    assert not (out / "summary.csv").exists()

    again = run_cli(job, out)
    again_out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, again_out
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    assert run.get("resumed"), "the rerun should reuse the rows the killed run wrote"
    for name, t in tables(base / "ref").items():
        assert tables(out)[name].equals(t), name
    assert (base / "ref" / "summary.csv").read_text() == (out / "summary.csv").read_text()
    ref_rows = json.loads((base / "ref" / "run.json").read_text())["rows"]
    assert run["rows"] == ref_rows
