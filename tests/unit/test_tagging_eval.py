"""Topic tagging measured on hand-labelled real tweets (tests/data/tagging_eval/, issue 12).

The figures are precision and recall of keyword tagging — the code path of ``affalign tag`` — on
the **test** split (the dev split was used to repair the keyword lists). Goals: per issue precision
>= 0.90 and recall >= 0.85; per topic precision >= 0.80 for topics with >= 20 labelled test tweets.
Where a goal is not met, ``SHORTFALLS`` states the measured figure and why; the test then holds that
figure as a floor, so a list edit that makes things worse fails.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from affalign.cli import main as cli_main
from affalign.tagging.keywords import KeywordMatcher
from affalign.tagging_quality import evaluate, has_subject_word, load_rows
from affalign.taxonomy import load_taxonomy

EVAL = Path(__file__).resolve().parents[1] / "data" / "tagging_eval"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SEED = 20261130

ISSUE_PRECISION, ISSUE_RECALL, TOPIC_PRECISION, TOPIC_MIN_LABELLED = 0.90, 0.85, 0.80, 20

# (dataset, "issue"|"topic", name, "precision"|"recall") -> (measured on test, reason)
SHORTFALLS: dict[tuple[str, str, str, str], tuple[float, str]] = {
    ("covid", "issue", "Education", "precision"): (
        0.78,
        "20 labelled test tweets; 'school'/'students' name a testing site or grad school as often as the "
        "pandemic's education issue, so they stay context-gated and some off-issue mentions still pass",
    ),
    ("covid", "issue", "Education", "recall"): (
        0.75,
        "20 labelled test tweets; education tweets often name no education-specific term "
        "('school starts tomorrow'), and adding bare 'school' costs more precision than it buys",
    ),
    ("covid", "issue", "Origins", "precision"): (
        0.75,
        "4 tagged test tweets (11 labelled): one error moves the figure 0.25",
    ),
    ("covid", "issue", "Origins", "recall"): (
        0.27,
        "11 labelled test tweets; in these sources origin talk is mostly about research, scientists and "
        "plasma therapy or China in passing, without an origin term; the sources hold almost no lab-leak talk",
    ),
    ("covid", "issue", "Vaccines", "precision"): (
        0.81,
        "generic vaccine words (fallback to 'vaccine administration') also fire on tweets the guidelines "
        "file elsewhere (sick-leave laws listing vaccinations, FDA-certified masks)",
    ),
    ("covid", "topic", "COVID-19 community and personal practices", "precision"): (
        0.78,
        "'stay home', 'quarantine', '#StayHome' are labelled L4 only when the tweet urges or describes the "
        "practice; a case count or an ad carrying the hashtag is tagged too",
    ),
    ("covid", "topic", "COVID-19 mask types and features", "precision"): (
        0.75,
        "N95/'face covering' also appear in tweets about wearing masks or mandates, where the guidelines "
        "give only the usage/mandate topic",
    ),
    ("roe", "issue", "Bodily Autonomy", "recall"): (
        0.75,
        "44 of 198 on-issue test tweets are cut at 140 characters before any abortion word (source "
        "truncation); on tweets that hold a subject word recall is 0.95 (test_recall_where_a_subject_word_is_present)",
    ),
    ("roe", "issue", "Exceptions to Abortion Bans", "recall"): (
        0.84,
        "13 labelled test tweets (11 found): one tweet is 0.08; cases are told in the tweet's own words "
        "('her tube was rupturing') more than with the fixed terms",
    ),
    ("roe", "issue", "Fetal Rights", "recall"): (
        0.57,
        "anti-abortion arguments are phrased freely ('what a baby looks like', 'people die'); fixed phrases "
        "catch the common tropes only; also truncation (0.68 on tweets with a subject word)",
    ),
    ("roe", "issue", "Religion", "recall"): (
        0.50,
        "16 labelled test tweets; 'God', 'pray', 'hell' are left out on purpose (interjections, 'thoughts and "
        "prayers'), so religious tweets that say only 'God' are missed",
    ),
    ("roe", "issue", "Women's Health", "precision"): (
        0.86,
        "40 labelled test tweets; 'pregnant women'/'miscarriage' also occur in tweets the guidelines file "
        "under exceptions or the legal debate only",
    ),
    ("roe", "issue", "Women's Health", "recall"): (
        0.50,
        "'women'/'woman' alone are not a women's-rights frame (they made precision 0.47), so tweets whose "
        "only cue is 'women' are missed; also truncation (0.65 on tweets with a subject word)",
    ),
    ("roe", "topic", "abortion rights and access", "precision"): (
        0.73,
        "'the right to abortion' is also used by the other side ('abortion is not a constitutional right'), "
        "which the guidelines file under the legal debate",
    ),
}


# "on any of the five issues" (test split), measured; roe recall is cut by truncated source tweets
ANY_ISSUE_FLOORS = {"covid": (0.94, 0.91), "roe": (0.98, 0.74)}


@pytest.fixture(scope="module")
def rows():
    return {d: [json.loads(x) for x in (EVAL / f"{d}.jsonl").read_text("utf-8").splitlines()] for d in ("covid", "roe", "negatives")}


@pytest.fixture(scope="module")
def reports():
    out = {}
    for dataset in ("covid", "roe"):
        tax = load_taxonomy(dataset)
        out[dataset] = evaluate(tax, load_rows(EVAL, dataset, "test"), KeywordMatcher(tax).tag, "test")
    return out


# --- the set itself ------------------------------------------------------------------------------


def test_set_size_and_composition(rows):
    assert len(rows["covid"]) >= 600
    assert len(rows["roe"]) >= 400
    assert len(rows["negatives"]) >= 100
    for name, rs in rows.items():
        ids = [r["id"] for r in rs]
        assert len(set(ids)) == len(ids), name
        share = Counter(r["split"] for r in rs)["dev"] / len(rs)
        assert 0.4 < share < 0.6, (name, share)
    # every issue of both tables has labelled tweets (the sample was not drawn by keyword)
    for dataset in ("covid", "roe"):
        tax = load_taxonomy(dataset)
        labelled = Counter(i for r in rows[dataset] for i in r["issues"])
        assert set(tax.issues) <= set(labelled), set(tax.issues) - set(labelled)
    # negatives are off-topic but were read too: a few are about abortion
    assert sum(1 for r in rows["negatives"] if r["topics"]) <= 5


def test_labels_are_names_of_tables_1_and_2(rows):
    taxes = {d: load_taxonomy(d) for d in ("covid", "roe")}
    issue_of = {t.name: t.issue for tax in taxes.values() for t in tax.topics}
    for dataset, tax in taxes.items():
        names = set(tax.topic_names)
        for r in rows[dataset]:
            assert set(r["topics"]) <= names, r["id"]
            assert r["issues"] == sorted({issue_of[t] for t in r["topics"]}), r["id"]
    for r in rows["negatives"]:
        assert set(r["topics"]) <= set(issue_of), r["id"]


def test_split_is_the_seeded_hash_of_the_provenance(rows):
    for rs in rows.values():
        for r in rs:
            h = hashlib.sha256(f"{SEED}:{r['source']}:{r['source_row']}".encode()).digest()
            assert r["split"] == ("dev" if h[0] % 2 == 0 else "test"), r["id"]


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")
def test_texts_are_verbatim_rows_of_their_source(rows):
    cache: dict[str, list[str]] = {}
    for rs in rows.values():
        for r in rs:
            src = r["source"]
            if src not in cache:
                path = SHARED / src
                if path.suffix == ".jsonl":
                    cache[src] = [json.loads(x)["text"] for x in path.read_text("utf-8").splitlines()]
                else:
                    with path.open(encoding="utf-8", newline="") as f:
                        reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
                        cache[src] = [x["Tweet"] if path.suffix == ".tsv" else x["text"] for x in reader]
            assert cache[src][r["source_row"]] == r["text"], r["id"]


# --- the figures ---------------------------------------------------------------------------------


def _check(dataset: str, level: str, name: str, metric: str, value: float | None, goal: float) -> None:
    assert value is not None, (dataset, level, name, metric)
    key = (dataset, level, name, metric)
    if key in SHORTFALLS:
        floor, reason = SHORTFALLS[key]
        assert value >= floor - 1e-9, f"{key}: {value:.3f} fell below the recorded {floor:.2f} ({reason})"
    else:
        assert value >= goal, f"{key}: {value:.3f} < goal {goal:.2f}"


@pytest.mark.parametrize("dataset", ["covid", "roe"])
def test_issue_precision_and_recall_on_the_test_split(reports, dataset):
    report = reports[dataset]
    for issue, score in report.issues.items():
        assert score.labelled >= 10, (dataset, issue, score.labelled)
        _check(dataset, "issue", issue, "precision", score.precision, ISSUE_PRECISION)
        _check(dataset, "issue", issue, "recall", score.recall, ISSUE_RECALL)
    # all five issues together: whether a tweet is on one of the wedge issues at all (measured floors)
    precision, recall = ANY_ISSUE_FLOORS[dataset]
    assert report.any_issue.precision >= precision
    assert report.any_issue.recall >= recall


@pytest.mark.parametrize("dataset", ["covid", "roe"])
def test_topic_precision_where_twenty_tweets_are_labelled(reports, dataset):
    big = {t: s for t, s in reports[dataset].topics.items() if s.labelled >= TOPIC_MIN_LABELLED}
    assert len(big) >= 3, big
    for topic, score in big.items():
        _check(dataset, "topic", topic, "precision", score.precision, TOPIC_PRECISION)


def test_every_shortfall_names_a_real_issue_or_topic():
    taxes = {d: load_taxonomy(d) for d in ("covid", "roe")}
    for dataset, level, name, metric in SHORTFALLS:
        tax = taxes[dataset]
        assert name in (tax.issues if level == "issue" else tax.topic_names), name
        assert metric in ("precision", "recall")


def test_recall_where_a_subject_word_is_present():
    """Keyword tagging needs a subject word; where the tweet has one, the abortion issue is found."""
    tax = load_taxonomy("roe")
    on = [r for r in load_rows(EVAL, "roe", "test") if r["dataset"] == "roe" and r["topics"]]
    with_word = [r for r, ok in zip(on, has_subject_word(tax, [r["text"] for r in on]), strict=True) if ok]
    report = evaluate(tax, with_word, KeywordMatcher(tax).tag, "test")
    assert report.issues["Bodily Autonomy"].recall >= ISSUE_RECALL
    assert report.any_issue.recall >= 0.90


def test_the_cli_tags_like_the_library(capsys):
    """The figures are those of `affalign tag`: the command and the matcher agree on labelled tweets."""
    texts = [r["text"].replace("\n", " ") for r in load_rows(EVAL, "covid", "test")[:40]]
    assert cli_main(["tag", "--dataset", "covid", *texts]) == 0
    printed = [json.loads(line)["topics"] for line in capsys.readouterr().out.splitlines()]
    assert printed == KeywordMatcher(load_taxonomy("covid")).tag(texts)
