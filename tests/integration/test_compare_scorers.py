"""`affalign compare-scorers`: per-label agreement of two scorers on a finished run's texts."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from affalign.cli import main
from affalign.compare import compare_scorers, correlations, sample_texts
from affalign.config import config_from_dict
from affalign.errors import InputError
from affalign.job import run_job
from affalign.scorers.base import ScorerSpec
from affalign.synth import SynthSpec, synthesize


def test_correlations_by_hand():
    a = np.array([[0.1, 0.5], [0.2, 0.5], [0.3, 0.5], [np.nan, 0.5]])
    b = np.array([[0.2, 0.1], [0.4, 0.2], [0.6, np.nan], [0.9, 0.4]])
    rows = correlations(a, b, ("x", "y"), "emotion")
    x, y = rows
    assert x["n"] == 3 and x["failed_a"] == 1 and x["failed_b"] == 0 and x["sample"] == 4
    assert math.isclose(x["pearson"], 1.0) and math.isclose(x["spearman"], 1.0)
    assert math.isclose(x["mean_a"], 0.2) and math.isclose(x["mean_b"], 0.4)
    assert y["failed_b"] == 1 and math.isnan(y["pearson"])  # a constant column has no correlation


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, ray_local):
    base = tmp_path_factory.mktemp("compare")
    synthesize(SynthSpec(dataset="covid", rows=6_000, seed=4, rows_per_shard=2_000), str(base / "corpus"))
    cfg = config_from_dict(
        {
            "name": "compare",
            "dataset": "covid",
            "input": {"path": str(base / "corpus"), "groups": ["liberal", "conservative"]},
            "min_texts_per_group": 20,
            "scoring": {"emotion": {"scorer": "lexicon"}, "moral": {"scorer": "lexicon"}},
            "report": False,
        }
    )
    run_job(cfg, str(base / "out"))
    return str(base / "out")


def test_the_sample_is_deterministic_and_of_kept_rows(run_dir):
    a, b = sample_texts(run_dir, 200, seed=1), sample_texts(run_dir, 200, seed=1)
    assert a.num_rows == 200 and a.column("tweet_id").to_pylist() == b.column("tweet_id").to_pylist()
    assert a.column("reason").null_count == 200
    assert sample_texts(run_dir, 200, seed=2).column("tweet_id").to_pylist() != a.column("tweet_id").to_pylist()


def test_a_scorer_agrees_with_its_own_stored_scores(run_dir):
    rows = compare_scorers(run_dir, ScorerSpec(scorer="lexicon"), n=400)
    assert len(rows) == 21
    varied = [r for r in rows if not math.isnan(r["pearson"])]
    assert len(varied) >= 15
    assert all(math.isclose(r["pearson"], 1.0) and r["failed_b"] == 0 for r in varied)


def test_failures_of_the_second_scorer_are_counted_not_zeros(run_dir, tmp_path, capsys):
    rows = compare_scorers(run_dir, ScorerSpec(scorer="tests.support.faulty_scorer:HalfFailingScorer"), n=400)
    assert all(r["failed_b"] == 200 and r["n"] == 200 for r in rows)
    varied = [r for r in rows if not math.isnan(r["pearson"])]
    assert varied and all(math.isclose(r["pearson"], 1.0) for r in varied)
    # the CLI prints the table, says how many failed and writes scorer_agreement.csv
    assert main(["compare-scorers", run_dir, "--b", "tests.support.faulty_scorer:HalfFailingScorer", "--sample", "100"]) == 0
    printed = capsys.readouterr().out
    assert "could not score 50 of 100 texts" in printed
    with open(f"{run_dir}/scorer_agreement.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 21 and {"label", "pearson", "spearman", "failed_b"} <= set(table[0])


def test_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not a finished affalign run"):
        sample_texts(str(tmp_path), 10)
