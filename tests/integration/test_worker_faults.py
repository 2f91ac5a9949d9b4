"""Worker faults through a whole job: scoring actors killed mid-batch are restarted and their batch
retried; a batch that fails every time is split until its bad rows are quarantined and reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from affalign.synth import SynthSpec, synthesize

REPO = Path(__file__).resolve().parents[2]
POISON = "POISONPILL"

JOB = """
name: faults
dataset: covid
input: {{path: {corpus}, groups: [liberal, conservative]}}
min_texts_per_group: 50
scoring:
  emotion: {scoring}
  moral: {scoring}
reduce: {{mode: threshold}}
report: false
"""


def run_cli(job: Path, out: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH: Ray's workers must import the plugin scorer from tests/support
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "affalign.cli", "run", str(job), "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    synthesize(SynthSpec(dataset="covid", rows=16_000, seed=11, bad_fraction=0.01, rows_per_shard=4_000), str(base / "corpus"))
    # poison 12 texts in two shards
    poisoned: set[str] = set()
    for path in sorted((base / "corpus").glob("*.parquet"))[:2]:
        t = pq.read_table(path)
        texts = t.column("text").to_pylist()
        ids = t.column("tweet_id").cast(pa.string()).to_pylist()
        for i in range(100, 3_000, 500):
            texts[i] = f"{texts[i]} {POISON}"
            poisoned.add(ids[i])
        pq.write_table(t.set_column(t.schema.get_field_index("text"), "text", pa.array(texts, pa.string())), path)

    ref_job = base / "ref.yaml"
    ref_job.write_text(JOB.format(corpus=base / "corpus", scoring="{scorer: lexicon}"))
    die_dir = base / "deaths"
    die_dir.mkdir()
    faulty = f"{{scorer: 'tests.support.faulty_scorer:FaultyScorer', options: {{die_dir: '{die_dir}', deaths: 2, poison: {POISON}}}}}"
    faulty_job = base / "faulty.yaml"
    faulty_job.write_text(JOB.format(corpus=base / "corpus", scoring=faulty))
    ref = run_cli(ref_job, base / "ref")
    assert ref.returncode == 0, ref.stderr[-3000:]
    got = run_cli(faulty_job, base / "faulty")
    return base, poisoned, die_dir, got


def test_killed_actors_are_restarted_and_the_job_completes(runs):
    base, _, die_dir, got = runs
    assert got.returncode == 0, got.stderr[-3000:]
    assert sorted(p.name for p in die_dir.iterdir()) == ["died-0", "died-1"]  # two actors were killed mid-batch
    doc = json.loads((base / "faulty" / "run.json").read_text())
    assert doc["status"] == "complete"


def test_deterministic_failures_are_quarantined_counted_and_nothing_else_is_lost(runs):
    base, poisoned, _, got = runs
    assert got.returncode == 0, got.stderr[-3000:]
    ref_doc = json.loads((base / "ref" / "run.json").read_text())
    doc = json.loads((base / "faulty" / "run.json").read_text())
    ref_scores = pq.read_table(base / "ref" / "scores" / "human")
    ref_ids = ref_scores.column("text_id").to_pylist()
    kept_poisoned = {i for i in ref_ids if i in poisoned}
    assert kept_poisoned, "the fixture should poison some tweets that the analysis keeps"

    rejects = pq.read_table(base / "faulty" / "rejects")
    errors = rejects.filter(pc.starts_with(rejects.column("reason"), "stage_error:"))
    assert set(errors.column("tweet_id").to_pylist()) == kept_poisoned
    assert all(POISON in t for t in errors.column("text").to_pylist())
    assert all(r.startswith("stage_error:score") and "poisoned text" in r for r in errors.column("reason").to_pylist())
    assert doc["rows"]["by_reason"]["stage_error"] == len(kept_poisoned)
    assert doc["rows"]["rejected"] == ref_doc["rows"]["rejected"] + len(kept_poisoned)
    assert doc["rows"]["kept"] == ref_doc["rows"]["kept"] - len(kept_poisoned)
    assert doc["rows"]["in"] == ref_doc["rows"]["in"]

    # every other row is scored exactly as in the run without faults, once
    got_scores = pq.read_table(base / "faulty" / "scores" / "human")
    expect = ref_scores.filter(pc.invert(pc.is_in(ref_scores.column("text_id"), pa.array(sorted(kept_poisoned)))))
    key = ["text_id", "subject"]
    assert got_scores.num_rows == expect.num_rows
    a = expect.sort_by([(k, "ascending") for k in key]).to_pylist()
    b = got_scores.select(expect.column_names).sort_by([(k, "ascending") for k in key]).to_pylist()
    assert a == b
