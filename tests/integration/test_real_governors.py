"""Real partisan tweets through the whole human side: a sample of US governors' COVID-19 tweets (party known).

1,500 rows of ``../shared/data/real-tweets/governors_covid_2020_2021.jsonl`` through tagging, offline
scoring, reduce and report (generation off). min_texts_per_group is 30 for the sample (the full run in
``benchmarks/bench_real_governors.py`` uses 100; the paper's 1,000 is for 9M tweets).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, SHARED

GOVERNORS = SHARED / "data" / "real-tweets" / "governors_covid_2020_2021.jsonl"
SAMPLE = 1500
MIN_TEXTS = 30

pytestmark = pytest.mark.skipif(
    not GOVERNORS.is_file(), reason=f"the shared real-tweets data is absent ({GOVERNORS}); it lives in ../shared relative to the repo root"
)


@pytest.fixture(scope="module")
def governors_run(tmp_path_factory, ray_local):
    sys.path.insert(0, str(REPO))
    from affalign.config import config_from_dict
    from affalign.job import run_job
    from benchmarks.bench_real_governors import job_config, sample_corpus

    base = tmp_path_factory.mktemp("governors")
    corpus = base / "corpus" / "governors.jsonl"
    n = sample_corpus(GOVERNORS, corpus, SAMPLE)
    cfg = config_from_dict(job_config(corpus, MIN_TEXTS), "test_real_governors")
    doc = run_job(cfg, str(base / "out"))
    return base / "out", n, doc


def test_rows_and_groups_add_up(governors_run):
    out, n, doc = governors_run
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and n == SAMPLE
    rows = run["rows"]
    assert rows["in"] == SAMPLE
    assert rows["kept"] + rows["filtered"] + rows["rejected"] == SAMPLE
    # governors' tweets are about COVID but many are about none of the topics (case counts, briefings)
    assert 0.2 * SAMPLE < rows["kept"] < 0.8 * SAMPLE
    assert rows["by_reason"].get("no_topic", 0) > 0


def test_topics_kept_have_both_parties_above_the_threshold(governors_run):
    out, _, doc = governors_run
    run = json.loads((out / "run.json").read_text())
    kept = run["topics"]["kept"]
    assert len(kept) >= 3
    for t in kept:
        assert t["counts"]["liberal"] >= MIN_TEXTS and t["counts"]["conservative"] >= MIN_TEXTS
    for t in run["topics"]["dropped"]:
        assert min(t["counts"].get("liberal", 0), t["counts"].get("conservative", 0)) < MIN_TEXTS
    d = pq.read_table(out / "distributions.parquet").to_pandas()
    assert set(d["subject"]) == {"human:liberal", "human:conservative"}
    assert set(d["topic"]) == {t["topic"] for t in kept}


def test_baseline_alignment_per_dimension_and_report(governors_run):
    out, _, _ = governors_run
    with open(out / "summary.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    base = {r["dimension"]: float(r["score_mean"]) for r in rows if r["subject"] == "human:liberal" and r["target"] == "human:conservative"}
    assert set(base) == {"emotion", "moral"}
    # two parties' governors tweeting about the same topics: similar, not identical, distributions
    assert all(0.5 < s < 1.0 for s in base.values()), base
    report = Path(out) / "report"
    assert (report / "report.html").is_file()
    assert list((report / "figures").glob("*.png"))
