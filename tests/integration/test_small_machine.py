"""The README's offline override of jobs/covid.yaml on a 2-CPU Ray: it completes (one scoring pass,
no hang), the console is quiet, and a stalled pass fails with a message naming what it waits for
(issue 15 items 0 and 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from affalign.synth import SynthSpec, synthesize

REPO = Path(__file__).resolve().parents[2]
# the README's advice for a machine without a GPU
OFFLINE = ["scoring.emotion.scorer=offline", "scoring.moral.scorer=offline", "generation.enabled=false"]
# what the console showed before issue 15, none of which a default run may print
NOISE = (
    "Token authentication is enabled",
    "constructor arguments in the object store",
    "does not have any available CPUs",
    "Progress bars disabled",
    "Loading weights",
    "it/s]",
    "Started a local Ray instance",
    "Execution plan of Dataset",
)


def run_cli(*args: str, timeout: int = 420) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    env.pop("RAY_AUTH_MODE", None)
    return subprocess.run([sys.executable, "-m", "affalign.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("small")
    synthesize(SynthSpec(dataset="covid", rows=3_000, seed=5, bad_fraction=0.01, rows_per_shard=1_000), str(base / "corpus"))
    return base


def test_covid_job_with_the_offline_override_completes_on_two_cpus_quietly(corpus):
    out = corpus / "out"
    sets = [f"input.path={corpus / 'corpus'}", *OFFLINE, "ray.num_cpus=2", "ray.no_progress_timeout_s=300", "min_texts_per_group=50", "report=false"]
    r = run_cli("run", "jobs/covid.yaml", "--out", str(out), *[a for s in sets for a in ("--set", s)])
    console = r.stdout + r.stderr
    assert r.returncode == 0, console[-4000:]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["rows"]["in"] == 3_000
    # the hf options of the replaced scorers are gone: both dimensions in ONE offline pass
    assert run["config"]["scoring"]["emotion"]["label_map"] is None
    assert "human pass: 1 scoring pass(es): offline [emotion, moral]" in console
    # progress, off a terminal: a log line with done/total, rate and elapsed time
    assert "human pass  3,000/3,000 rows" in console and "rows/s" in console
    for line in NOISE:
        assert line not in console, f"noise on the console: {line!r}"


def test_two_scoring_pools_and_the_reads_share_two_cpus(corpus):
    """Two actor pools in one pass on 2 CPUs (before issue 15: each took a CPU, reads got none)."""
    out = corpus / "two_pools"
    sets = [f"input.path={corpus / 'corpus'}", "scoring.emotion.scorer=lexicon", "scoring.moral.scorer=lexicon", "scoring.moral.batch_size=64"]
    sets += ["generation.enabled=false", "ray.num_cpus=2", "ray.no_progress_timeout_s=120", "min_texts_per_group=50", "report=false"]
    r = run_cli("run", "jobs/covid.yaml", "--out", str(out), *[a for s in sets for a in ("--set", s)], timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "human pass: 2 scoring pass(es): lexicon [emotion]; lexicon [moral]" in r.stderr
    assert json.loads((out / "run.json").read_text())["rows"]["in"] == 3_000


def test_a_stalled_pass_fails_naming_the_stage_and_the_resource(corpus):
    out = corpus / "stalled"
    # a scoring actor that asks for a GPU the cluster lacks waits forever: the guard ends it
    sets = [f"input.path={corpus / 'corpus'}", "scoring.emotion.scorer=lexicon", "scoring.moral.scorer=lexicon", "scoring.emotion.num_gpus=1", "scoring.moral.num_gpus=1"]
    sets += ["generation.enabled=false", "ray.num_cpus=2", "ray.no_progress_timeout_s=20", "report=false"]
    # --quiet (for scripts): no INFO lines and no progress, but the error in full
    r = run_cli("-q", "run", "jobs/covid.yaml", "--out", str(out), *[a for s in sets for a in ("--set", s)], timeout=300)
    assert r.returncode == 1, (r.stdout + r.stderr)[-3000:]
    err = r.stderr
    assert " INFO " not in err and "rows/s" not in err
    assert "affalign: error: the human pass made no progress for 20s" in err
    assert "- score (AffectScoreStage): actor pool" in err and "Waiting: stage score waits for a GPU (1 per actor) that the cluster does not have" in err
    assert "ray.no_progress_timeout_s" in err and err.count("made no progress for 20s") == 1  # in full, once
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
