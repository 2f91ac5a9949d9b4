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
    assert label_users(combined).users.equals(label_users(whole).users)


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
