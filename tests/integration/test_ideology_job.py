"""A corpus with no group column: the job infers users' groups from the domains they share."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from affalign.cli import main
from affalign.config import config_from_dict
from affalign.job import run_job
from affalign.synth import SynthSpec, synthesize

LEFT = ["https://www.motherjones.com/politics/a", "http://dailykos.com/story/b", "https://edition.cnn.com/c"]
RIGHT = ["https://www.foxnews.com/us/a", "https://breitbart.com/b?x=1", "https://nypost.com/c"]
NEUTRAL = ["https://www.reuters.com/a", "https://apnews.com/b"]


def _plan(user: str, party: str) -> str:
    """A user's planted leaning: most follow their synth party; some are neutral or share nothing."""
    h = zlib.crc32(user.encode()) % 10
    if h == 0:
        return "neutral"
    if h == 1:
        return "none"  # shares no rated domain: too few domains
    return party


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("ideology")
    synthesize(SynthSpec(dataset="covid", rows=12_000, seed=5, bad_fraction=0.01, rows_per_shard=4_000), str(base / "synth"))
    (base / "corpus").mkdir()
    truth: dict[str, str] = {}
    for path in sorted((base / "synth").glob("*.parquet")):
        t = pq.read_table(path)
        users = t.column("user_id").cast(pa.string()).to_pylist()
        parties = t.column("party").to_pylist()
        urls = []
        for i, (u, p) in enumerate(zip(users, parties, strict=True)):
            if u is None or p not in ("liberal", "conservative"):
                urls.append(None)
                continue
            plan = truth.setdefault(u, _plan(u, p))
            pool = {"liberal": LEFT, "conservative": RIGHT, "neutral": NEUTRAL, "none": ["https://example.org/x"]}[plan]
            urls.append([pool[i % len(pool)], "https://t.co/abc"])
        t = t.drop_columns(["party"]).append_column("urls", pa.array(urls, pa.list_(pa.string())))
        pq.write_table(t, base / "corpus" / path.name)
    return base, truth


def _cfg(path: str, **ideology) -> dict:
    return {
        "name": "ideology",
        "dataset": "covid",
        "input": {"path": path, "groups": [], "ideology": {"enabled": True, "min_domains": 3, "cutoff": "threshold", "threshold": 0.3, **ideology}},
        "min_texts_per_group": 50,
        "scoring": {"emotion": {"scorer": "lexicon"}, "moral": {"scorer": "lexicon"}},
        "report": False,
    }


def test_groups_are_inferred_from_shared_domains(corpus, ray_local):
    base, truth = corpus
    out = base / "out"
    doc = run_job(config_from_dict(_cfg(str(base / "corpus"))), str(out))
    assert doc["status"] == "complete"
    assert doc["groups"] == ["liberal", "conservative"]

    users = pq.read_table(out / "ideology" / "users.parquet").to_pandas().set_index("user_id")
    # every user with enough rated shares gets the planted leaning; neutral and no-share users are left out
    for user, row in users.iterrows():
        plan = truth.get(user)
        if plan is None:
            continue
        if plan == "none":
            assert row["status"] == "too_few_domains", user
        elif row["n_domains"] >= 3:
            assert row["status"] == plan, (user, row.to_dict())
        else:
            assert row["status"] == "too_few_domains", user
    counts = doc["ideology"]
    assert counts["liberal"] > 0 and counts["conservative"] > 0 and counts["neutral"] > 0 and counts["too_few_domains"] > 0
    assert counts["labelled"] == counts["liberal"] + counts["conservative"]
    assert counts["users"] == len(users)

    # kept tweets carry their author's inferred group; unlabelled authors' tweets are filtered, counted
    scores = pq.read_table(out / "scores" / "human").to_pandas()
    status = users["status"]
    tweets = pq.read_table(base / "corpus").select(["tweet_id", "user_id"])
    authors: dict[str, set] = {}  # synth plants duplicate tweet ids, some by other users
    for t, u in zip(tweets.column("tweet_id").cast(pa.string()).to_pylist(), tweets.column("user_id").to_pylist(), strict=True):
        authors.setdefault(t, set()).add(u)
    kept_groups = [s.removeprefix("human:") for s in scores["subject"]]
    assert kept_groups
    for t, g in zip(scores["text_id"], kept_groups, strict=True):
        assert g in {status.get(u) for u in authors[t]}, (t, g)
    rows = doc["rows"]
    assert rows["by_reason"]["user_not_labelled"] > 0
    assert rows["kept"] + rows["rejected"] + rows["filtered"] == rows["in"]
    assert sum(rows["kept_by_group"].values()) == rows["kept"]
    align = pq.read_table(out / "alignment.parquet").to_pandas()
    assert set(align["subject"]) | set(align["target"]) == {"human:liberal", "human:conservative"}


def test_default_tails_cutoff_labels_by_recorded_cutoffs_and_a_rerun_reuses(corpus, ray_local):
    base, _ = corpus
    out = base / "out2"
    cfg = _cfg(str(base / "corpus"), cutoff="tails", threshold=None)
    del cfg["input"]["ideology"]["cutoff"], cfg["input"]["ideology"]["threshold"]  # the defaults: tails 30% / 30%
    doc = run_job(config_from_dict(cfg), str(out))
    counts = doc["ideology"]
    cut = counts["cutoff"]
    assert cut["method"] == "tails" and cut["tails"] == [0.3, 0.3]
    users = pq.read_table(out / "ideology" / "users.parquet").to_pandas()
    eligible = users[users["n_domains"] >= 3]
    assert cut["eligible_users"] == len(eligible) > 20
    # the labels follow the recorded cut-offs exactly; tied users share a label, so a tail holds at least 30%
    lib = eligible["mean_bias"] <= cut["liberal_at_or_below"]
    con = eligible["mean_bias"] >= cut["conservative_at_or_above"]
    assert cut["liberal_at_or_below"] < cut["conservative_at_or_above"]
    assert (eligible["status"] == "liberal").eq(lib).all() and (eligible["status"] == "conservative").eq(con).all()
    assert counts["liberal"] == lib.sum() >= int(0.3 * len(eligible))
    assert counts["conservative"] == con.sum() >= int(0.3 * len(eligible))
    assert (users[users["n_domains"] < 3]["status"] == "too_few_domains").all()
    again = run_job(config_from_dict(cfg), str(out))
    assert again["ideology"] == counts
    assert again["resumed"] == "human pass reused"
    a = pq.read_table(out / "distributions.parquet").to_pandas()
    assert np.isfinite(a["value"]).all()


def test_missing_domains_column_is_exit_2_naming_file_and_key(corpus, tmp_path, capsys):
    base, _ = corpus
    one = sorted((base / "corpus").glob("*.parquet"))[0]
    t = pq.read_table(one).drop_columns(["urls"])
    pq.write_table(t, tmp_path / "no_urls.parquet")
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps(_cfg(str(tmp_path / "no_urls.parquet"))))
    rc = main(["run", str(job), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no_urls.parquet" in err and "'urls'" in err and "input.ideology.domains_column" in err


def test_user_group_stage_on_a_batch():
    from affalign.stages.ideology import UserGroupStage

    stage = UserGroupStage(pa.table({"user_id": ["a", "b"], "group": ["liberal", "conservative"]}))
    batch = pa.table({"user_id": ["b", "c", "a", None], "group": pa.nulls(4, pa.string()), "reason": [None, None, "empty_text", None]})
    out = stage(batch)
    assert out.column("group").to_pylist() == ["conservative", None, "liberal", None]
    assert out.column("reason").to_pylist() == [None, "user_not_labelled", "empty_text", "user_not_labelled"]
    assert pc.sum(pc.is_null(out.column("reason"))).as_py() == 1
