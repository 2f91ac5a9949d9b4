"""Users' ideology from shared domains: synthetic users of known leaning."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from affalign import ideology
from affalign.errors import ConfigError
from affalign.ideology import (
    BiasTable,
    combine_sums,
    domain_of,
    label_users,
    load_bias_table,
    parse_bias_table,
    user_bias_sums,
    user_ideology,
)

BIAS = BiasTable({"leftnews.com": -1.0, "leftish.org": -0.5, "center.com": 0.0, "rightish.com": 0.5, "rightnews.com": 1.0})


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://www.nytimes.com/2021/05/01/us/politics/x.html?smid=tw", "nytimes.com"),
        ("http://WWW.FoxNews.com", "foxnews.com"),
        ("foxnews.com/politics", "foxnews.com"),
        ("https://user:pw@edition.cnn.com:443/x#frag", "edition.cnn.com"),
        ("//www2.breitbart.com/news", "breitbart.com"),
        ("  apnews.com.  ", "apnews.com"),
        ("https://t.co/abc", "t.co"),
        ("not a url", None),
        ("", None),
        (None, None),
    ],
)
def test_domain_of(url, domain):
    assert domain_of(url) == domain


def test_lookup_exact_parent_and_unknown():
    table = BiasTable({"cnn.com": -0.5, "news.example.com": 1.0, "example.com": -1.0})
    assert table.lookup(["https://edition.cnn.com/a", "cnn.com", "https://news.example.com", "a.b.example.com", "example.org", None]) == [-0.5, -0.5, 1.0, -1.0, None, None]


def users_rows() -> list[dict]:
    """Users of known leaning, one row per tweet with a list of URLs (some tweets without)."""
    return [
        # liberal: mean (-1 -1 -0.5) / 3 = -0.83
        {"user_id": "lib", "urls": ["https://www.leftnews.com/a", "http://leftnews.com/b"]},
        {"user_id": "lib", "urls": ["https://leftish.org/c", "https://t.co/xyz"]},  # t.co: not in the table
        {"user_id": "lib", "urls": []},
        # conservative: (1 + 0.5 + 0.5 + 0) / 4 = 0.5
        {"user_id": "con", "urls": ["https://rightnews.com/a", "https://m.rightish.com/b"]},
        {"user_id": "con", "urls": ["rightish.com", "https://center.com/x"]},
        # mixed: left and right cancel -> neutral (-1 + 1 + 0.5 - 0.5) / 4 = 0
        {"user_id": "mixed", "urls": ["leftnews.com", "rightnews.com", "rightish.com", "leftish.org"]},
        # slightly left but inside the neutral zone: (-0.5 + 0 + 0) / 3 = -0.17
        {"user_id": "mild", "urls": ["leftish.org", "center.com", "center.com"]},
        # too few matched domains: two matched of five shared
        {"user_id": "few", "urls": ["leftnews.com", "leftnews.com", "unknown.net", "t.co/a", "example.org"]},
        # shares nothing
        {"user_id": "silent", "urls": None},
    ]


def test_users_of_known_leaning():
    res = user_ideology(users_rows(), BIAS, threshold=0.2, min_domains=3)
    status = dict(zip(res.users.column("user_id").to_pylist(), res.users.column("status").to_pylist(), strict=True))
    assert status == {"lib": "liberal", "con": "conservative", "mixed": "neutral", "mild": "neutral", "few": "too_few_domains", "silent": "too_few_domains"}
    assert res.group_of() == {"con": "conservative", "lib": "liberal"}
    assert res.groups.column_names == ["user_id", "group"]
    users = {r["user_id"]: r for r in res.users.to_pylist()}
    assert users["lib"]["mean_bias"] == pytest.approx(-2.5 / 3) and users["lib"]["n_domains"] == 3 and users["lib"]["n_shared"] == 4
    assert users["con"]["mean_bias"] == pytest.approx(0.5) and users["con"]["n_domains"] == 4
    assert users["mixed"]["mean_bias"] == 0.0
    assert users["few"]["n_domains"] == 2 and users["few"]["n_shared"] == 5
    assert users["silent"]["mean_bias"] is None and users["silent"]["n_domains"] == 0
    assert res.counts == {
        "users": 6,
        "liberal": 1,
        "conservative": 1,
        "neutral": 2,
        "too_few_domains": 2,
        "labelled": 2,
        "shares": 20,
        "shares_matched": 16,
        "cutoff": {"method": "threshold", "threshold": 0.2, "liberal_at_or_below": -0.2, "conservative_at_or_above": 0.2},
    }


def test_thresholds_are_configurable_and_inclusive():
    rows = users_rows()
    # a wider neutral zone leaves out the conservative (mean exactly 0.5 is still labelled at 0.5)
    res = user_ideology(rows, BIAS, threshold=0.5, min_domains=3)
    assert res.group_of() == {"con": "conservative", "lib": "liberal"}
    res = user_ideology(rows, BIAS, threshold=0.6, min_domains=3)
    assert res.group_of() == {"lib": "liberal"}
    # a narrow one takes in the mildly left user; fewer required domains takes in "few"
    res = user_ideology(rows, BIAS, threshold=0.1, min_domains=2)
    assert res.group_of() == {"con": "conservative", "few": "liberal", "lib": "liberal", "mild": "liberal"}
    assert res.counts["neutral"] == 1 and res.counts["too_few_domains"] == 1
    res = user_ideology(rows, BIAS, threshold=0.1, min_domains=2, labels=("D", "R"))
    assert set(res.groups.column("group").to_pylist()) == {"D", "R"}


def test_one_url_per_row_and_domains_column():
    rows = pa.table(
        {
            "user": ["a", "a", "a", "b", "b", "b", "c"],
            "domain": ["leftnews.com", "leftish.org", None, "rightnews.com", "rightnews.com", "rightish.com", "center.com"],
        }
    )
    res = user_ideology(rows, BIAS, domains_column="domain", user_column="user", threshold=0.2, min_domains=2)
    assert res.group_of() == {"a": "liberal", "b": "conservative"}
    assert res.counts["too_few_domains"] == 1 and res.counts["shares"] == 6


def test_partial_sums_combine_exactly_in_any_order():
    rng = random.Random(3)
    domains = ["leftnews.com", "leftish.org", "center.com", "rightish.com", "rightnews.com", "other.net"]
    rows = [{"user_id": f"u{rng.randrange(40)}", "urls": [rng.choice(domains) for _ in range(rng.randrange(4))]} for _ in range(2000)]
    whole = user_bias_sums(rows, BIAS).sort_by("user_id")
    parts = [user_bias_sums(rows[i : i + 137], BIAS) for i in range(0, len(rows), 137)]
    rng.shuffle(parts)
    combined = combine_sums(parts).sort_by("user_id")
    assert combined.equals(whole)
    # the default (tails) and the fixed threshold both label from the exact sums alone
    tails = label_users(combined)
    assert tails.counts["cutoff"]["method"] == "tails" and tails.counts["labelled"] > 0
    assert tails.users.equals(label_users(whole).users)
    assert label_users(combined, 0.2).users.equals(label_users(whole, 0.2).users)


def test_missing_column_and_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="'urls'"):
        user_ideology([{"user_id": "a", "links": ["x.com"]}], BIAS)
    with pytest.raises(ConfigError, match="ideology.threshold"):
        user_ideology(users_rows(), BIAS, threshold=0.0)
    with pytest.raises(ConfigError, match="ideology.min_domains"):
        user_ideology(users_rows(), BIAS, min_domains=0)


def test_shipped_example_table():
    table = load_bias_table()
    assert 35 <= len(table) <= 60
    assert all(-1.0 <= b <= 1.0 for b in table.bias.values())
    assert table.bias["foxnews.com"] > 0 > table.bias["nytimes.com"]
    assert table.lookup(["https://www.nytimes.com/x", "https://edition.cnn.com/y", "https://www.breitbart.com/z"]) == [-0.5, -0.5, 1.0]
    text = (ideology.resources.files("affalign.data") / "domain_bias_example.csv").read_text()
    assert "hand-assigned" in text.lower() and "Media Bias/Fact Check" in text


def test_bias_table_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bias.csv"
    p.write_text("# comment\ndomain,bias\nfoo.com,0.5\nbar.com,1.5\n")
    with pytest.raises(ConfigError, match=r"bias\.csv: line 4: bias 1.5 of bar.com is outside"):
        load_bias_table(p)
    p.write_text("domain,bias\nfoo.com,0.5\nhttps://www.foo.com/,0.1\n")
    with pytest.raises(ConfigError, match=r"line 3: foo.com is listed twice \(first on line 2\)"):
        load_bias_table(p)
    p.write_text("domain,bias\nfoo.com,left\n")
    with pytest.raises(ConfigError, match="line 2: bias 'left' is not a number"):
        load_bias_table(p)
    p.write_text("site,score\nfoo.com,0.5\n")
    with pytest.raises(ConfigError, match="header"):
        load_bias_table(p)
    with pytest.raises(ConfigError, match="missing.csv"):
        load_bias_table(tmp_path / "missing.csv")
    assert parse_bias_table("bias,domain\n-1,Left.COM\n").bias == {"left.com": -1.0}


# ---------------------------------------------------------------------------------------------
# Tails of the user-score distribution (the default cut-off, Rao et al. 2021)


def sums_of(means: list[float], n_domains: list[int] | None = None) -> pa.Table:
    """Combined sums of synthetic users u0000.. with the given mean biases (exact in fixed point)."""
    n = n_domains or [5] * len(means)
    fixed = [round(m * ideology._SCALE) * k for m, k in zip(means, n, strict=True)]
    return pa.table({"user_id": [f"u{i:04d}" for i in range(len(means))], "bias_sum": fixed, "n_domains": n, "n_shared": n}, schema=ideology.SUMS_SCHEMA)


def status_of(res) -> list[str]:
    return res.users.sort_by("user_id").column("status").to_pylist()


def test_tails_label_the_bottom_and_top_30_percent_of_a_known_distribution():
    rng = random.Random(11)
    # 1,000 users with distinct means leaning right on average (a relative cut-off still takes 30% each side)
    means = [max(-1.0, min(1.0, rng.gauss(0.3, 0.25))) for _ in range(1000)]
    means = [round(m, 6) + i * 1e-9 for i, m in enumerate(means)]  # distinct
    # and 200 users below min_domains, who are not part of the distribution
    means_few = [rng.uniform(-1, 1) for _ in range(200)]
    sums = sums_of(means + means_few, [5] * 1000 + [2] * 200)
    res = label_users(sums, min_domains=3)
    st = status_of(res)
    assert res.counts["liberal"] == 300 and res.counts["conservative"] == 300
    assert res.counts["neutral"] == 400 and res.counts["too_few_domains"] == 200
    order = sorted(range(1000), key=lambda i: means[i])
    assert {i for i in range(1000) if st[i] == "liberal"} == set(order[:300])
    assert {i for i in range(1000) if st[i] == "conservative"} == set(order[-300:])
    assert all(s == "too_few_domains" for s in st[1000:])
    cut = res.counts["cutoff"]
    assert cut["method"] == "tails" and cut["tails"] == [0.3, 0.3] and cut["eligible_users"] == 1000
    assert cut["liberal_at_or_below"] == pytest.approx(means[order[299]], abs=1e-7)
    assert cut["conservative_at_or_above"] == pytest.approx(means[order[700]], abs=1e-7)
    # right-leaning corpus: the "liberal" tail is relative, and the recorded cut-off shows it
    assert cut["liberal_at_or_below"] > -0.2


def test_tails_are_configurable_and_asymmetric():
    means = [i / 100 - 0.5 for i in range(100)]  # 100 distinct means
    res = label_users(sums_of(means), cutoff="tails", tails=(0.1, 0.25))
    st = status_of(res)
    assert st[:10] == ["liberal"] * 10 and st[10] == "neutral"
    assert st[-25:] == ["conservative"] * 25 and st[-26] == "neutral"
    # a share * n that is an integer only up to rounding (0.29 * 100 = 28.999999999999996) loses no user
    assert label_users(sums_of(means), tails=(0.29, 0.29)).counts["liberal"] == 29


def test_tails_ties_get_one_label_and_meeting_cutoffs_are_neutral():
    # 10 users, k = 3 per tail; the 3rd smallest mean (-1) is shared by 4 users: all 4 are liberal
    means = [-1, -1, -1, -1, 0, 0, 0.5, 0.5, 0.5, 1]
    st = status_of(label_users(sums_of(means)))
    assert st == ["liberal"] * 4 + ["neutral"] * 2 + ["conservative"] * 4
    # equal means from different share counts (1 x -0.5 vs 2 x -0.5) tie exactly
    res = label_users(sums_of([-0.5, -0.5, 0.0, 0.2, 0.9], [3, 6, 3, 3, 3]), tails=(0.2, 0.2))
    assert status_of(res) == ["liberal", "liberal", "neutral", "neutral", "conservative"]
    # everyone on the same mean: both cut-offs meet there, nobody can be told apart
    res = label_users(sums_of([0.1] * 10))
    assert res.counts["labelled"] == 0 and res.counts["neutral"] == 10
    assert res.counts["cutoff"]["liberal_at_or_below"] == res.counts["cutoff"]["conservative_at_or_above"] == pytest.approx(0.1)


def test_tails_small_n():
    # 3 eligible users: floor(0.3 * 3) = 0, so no tail has a user
    res = label_users(sums_of([-0.9, 0.0, 0.9]))
    assert res.counts["labelled"] == 0
    assert res.counts["cutoff"]["liberal_at_or_below"] is None and res.counts["cutoff"]["conservative_at_or_above"] is None
    # 4 users: one each side
    assert status_of(label_users(sums_of([-0.9, 0.0, 0.1, 0.9]))) == ["liberal", "neutral", "neutral", "conservative"]
    # no eligible user at all, and no user at all
    assert label_users(sums_of([0.5], [1])).counts["too_few_domains"] == 1
    assert label_users(ideology.SUMS_SCHEMA.empty_table()).counts["users"] == 0


def test_cutoff_settings_are_checked():
    with pytest.raises(ConfigError, match="ideology.cutoff"):
        label_users(sums_of([0.0]), cutoff="median")
    with pytest.raises(ConfigError, match="ideology.tails"):
        label_users(sums_of([0.0]), tails=(0.6, 0.3))
    with pytest.raises(ConfigError, match="ideology.threshold"):
        label_users(sums_of([0.0]), 0.2, cutoff="tails")
    from affalign.config import config_from_dict

    base = {"dataset": "covid", "input": {"path": "x", "ideology": {"enabled": True}}}
    cfg = config_from_dict(base)
    assert cfg.input.ideology.cutoff == "tails" and cfg.input.ideology.tails == [0.3, 0.3] and cfg.input.ideology.threshold is None
    with pytest.raises(ConfigError, match="input.ideology.threshold.*cutoff: threshold"):
        config_from_dict({**base, "input": {"path": "x", "ideology": {"enabled": True, "threshold": 0.3}}})
    with pytest.raises(ConfigError, match="input.ideology.tails"):
        config_from_dict({**base, "input": {"path": "x", "ideology": {"enabled": True, "tails": [0.3]}}})
    fixed = config_from_dict({**base, "input": {"path": "x", "ideology": {"enabled": True, "cutoff": "threshold", "threshold": 0.3}}})
    assert fixed.input.ideology.threshold == 0.3
