"""Bootstrap intervals, permutation tests and precision curves of affalign.stats."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from affalign import metrics, stats

A, B = "human:liberal", "human:conservative"
GROUPS = ["liberal", "conservative"]


def beta_scores(rng, mu, n, k=12.0):
    mu = np.clip(np.asarray(mu, dtype=float), 0.02, 0.98)
    return rng.beta(k * mu, k * (1 - mu), size=(n, mu.size))


def test_vectorised_alignment_matches_scipy_and_metrics():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(11), 20)
    q = rng.dirichlet(np.ones(11), 20)
    q[0] = p[0]
    p[1, :3] = 0
    p[1] /= p[1].sum()
    got = stats.js_alignment(p, q)
    want = [1 - jensenshannon(a, b, base=2) for a, b in zip(p, q, strict=True)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[0] == 1.0
    assert stats.js_alignment(p[2], q[2]) == pytest.approx(metrics.alignment(p[2], q[2]), abs=1e-12)
    np.testing.assert_allclose(stats.normalise_rows(np.array([[0.0, 0.0], [1.0, 3.0]])), [[0.5, 0.5], [0.25, 0.75]])


def test_hand_checkable_small_case():
    # A always says label 0, B always label 1, the model splits evenly: S(A, B) = 0 and
    # S(model, A) = S(model, B) = 1 - sqrt(0.5 (KL(p|m) + KL(q|m))) with m = (0.75, 0.25)
    kl_p = 0.5 * np.log2(0.5 / 0.75) + 0.5 * np.log2(0.5 / 0.25)
    kl_q = np.log2(1 / 0.75)
    s_model = 1 - np.sqrt(0.5 * (kl_p + kl_q))
    assert s_model == pytest.approx(0.44208, abs=1e-5)
    cells = {
        ("t", A): {"toy": np.array([[1.0, 0.0]] * 4)},
        ("t", B): {"toy": np.array([[0.0, 1.0]] * 3)},
        ("t", "model:m:default"): {"toy": np.array([[0.5, 0.5]] * 5)},
    }
    st = stats.analyse(cells, GROUPS, draws=50, seed=0, n_grid=None)["toy"]
    base = st.alignment(A, B)
    assert (base.estimate, base.lo, base.hi) == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)
    for g in (A, B):
        iv = st.alignment("model:m:default", g)
        # every text of a cell is identical, so every resample gives the same distributions
        assert (iv.estimate, iv.lo, iv.hi) == pytest.approx((s_model, s_model, s_model), abs=1e-9)
    bias = st.bias("model:m:default", A, B)
    assert (bias.estimate, bias.lo, bias.hi) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)
    assert bias.p_value == 1.0  # |permuted bias| >= 0 always


def test_threshold_mode_distribution_by_hand():
    scores = np.array([[0.6, 0.1, 0.9], [0.2, 0.7, 0.5], [np.nan, 0.0, 0.0]])
    f = stats.features(scores, "threshold", 0.5)
    assert f.tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]  # NaN row dropped, >= tau counts
    np.testing.assert_allclose(stats.normalise_rows(f.mean(axis=0)), metrics.distribution(scores[:2], "threshold", 0.5))
    np.testing.assert_allclose(stats.normalise_rows(stats.features(scores, "mean").mean(axis=0)), metrics.distribution(scores, "mean"))


def test_resampled_means_have_the_bootstrap_variance():
    rng = np.random.default_rng(1)
    x = (rng.random((400, 1)) < 0.3).astype(float)
    for exact_max in (10_000, 10):  # exact multinomial resampling, then its normal limit
        m = stats.resample_means(x, 4000, np.random.default_rng(2), exact_max=exact_max)
        assert m.shape == (4000, 1)
        assert m.mean() == pytest.approx(x.mean(), abs=0.003)
        assert m.std() == pytest.approx(x.std() / np.sqrt(400), rel=0.08)
    a = stats.resample_means(x, 10, np.random.default_rng(5))
    b = stats.resample_means(x, 10, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_permuted_means_keep_the_pool():
    rng = np.random.default_rng(3)
    pool = rng.random((30, 4))
    for exact_max in (10_000, 5):
        ma, mb = stats.permuted_means(pool, 12, 200, np.random.default_rng(4), exact_max=exact_max)
        np.testing.assert_allclose(12 * ma + 18 * mb, np.broadcast_to(pool.sum(axis=0), (200, 4)), atol=1e-4)
        assert ma.mean(axis=0) == pytest.approx(pool.mean(axis=0), abs=0.02)
    # an exact permutation's mean is the mean of n_a distinct rows: with rows 2**i, the sum has n_a bits set
    powers = (2.0 ** np.arange(20))[:, None]
    ma, mb = stats.permuted_means(powers, 12, 50, np.random.default_rng(6))
    for sum_a in np.rint(ma[:, 0] * 12).astype(np.int64):
        assert bin(int(sum_a)).count("1") == 12
    assert len({tuple(r) for r in ma}) > 40


def _planted(rng, topics=3, n_h=300, n_m=300, gap=0.15, model_at="A"):
    cells = {}
    for t in range(topics):
        mu_a = rng.uniform(0.1, 0.6, 11)
        mu_b = np.clip(mu_a + rng.choice([-gap, gap], 11), 0.03, 0.95) if gap else mu_a
        cells[(f"t{t}", A)] = {"emotion": beta_scores(rng, mu_a, n_h)}
        cells[(f"t{t}", B)] = {"emotion": beta_scores(rng, mu_b, n_h)}
        cells[(f"t{t}", "model:m:default")] = {"emotion": beta_scores(rng, mu_a if model_at == "A" else mu_b, n_m)}
    return cells


def test_identical_groups_give_s_one_and_a_bias_interval_containing_zero():
    rng = np.random.default_rng(7)
    cells = {}
    for t in ("t1", "t2"):
        same = beta_scores(rng, rng.uniform(0.1, 0.6, 11), 200)
        cells[(t, A)] = {"emotion": same}
        cells[(t, B)] = {"emotion": same.copy()}
        cells[(t, "model:m:default")] = {"emotion": beta_scores(rng, rng.uniform(0.1, 0.6, 11), 150)}
    st = stats.analyse(cells, GROUPS, draws=300, seed=0, n_grid=None)["emotion"]
    assert st.alignment(A, B).estimate == 1.0
    assert all(iv.estimate == 1.0 for iv in st.per_topic(A, B).values())
    bias = st.bias("model:m:default", A, B)
    assert bias.estimate == pytest.approx(0.0, abs=1e-12)
    assert bias.lo < 0 < bias.hi and bias.sign == 0
    assert bias.p_value > 0.5


def test_planted_difference_between_groups_is_detected():
    st = stats.analyse(_planted(np.random.default_rng(11)), GROUPS, draws=400, seed=0, n_grid=None)["emotion"]
    bias = st.bias("model:m:default", A, B)
    assert bias.sign == 1 and bias.lo > 0  # the model was drawn from group A's distribution
    assert bias.p_value < 0.05
    assert st.vs_baseline("model:m:default", A).sign == 1  # as close to A as A is to itself: above the A-B baseline
    assert st.vs_baseline("model:m:default", B).sign == 0  # as far from B as A is
    st_b = stats.analyse(_planted(np.random.default_rng(11), model_at="B"), GROUPS, draws=400, seed=0, n_grid=None)["emotion"]
    assert st_b.bias("model:m:default", A, B).sign == -1


def test_permutation_test_holds_its_level_under_the_null():
    rejections = 0
    for rep in range(24):
        rng = np.random.default_rng(100 + rep)
        mu = rng.uniform(0.1, 0.6, 5)
        cells = {("t", A): {"e": beta_scores(rng, mu, 60)}, ("t", B): {"e": beta_scores(rng, mu, 60)}, ("t", "model:m:default"): {"e": beta_scores(rng, rng.uniform(0.1, 0.6, 5), 60)}}
        st = stats.analyse(cells, GROUPS, draws=20, permutations=199, seed=rep, n_grid=None)["e"]
        rejections += st.bias("model:m:default", A, B).p_value < 0.05
    assert rejections <= 4  # nominal 5% of 24 is 1.2


def test_interval_width_shrinks_with_n():
    rng = np.random.default_rng(5)
    cells = _planted(rng, topics=2, n_h=2000, n_m=800)
    st = stats.analyse(cells, GROUPS, draws=200, seed=0, n_grid=(50, 200, 800, 5000))["emotion"]
    assert st.n_grid == [50, 200, 800]  # capped at what exists
    rows = st.precision_summary()
    widths = [r["topic_width_median"] for r in rows]
    assert [r["n"] for r in rows] == [50, 200, 800]
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] > 2.0  # ~ sqrt(16) = 4 for the model's share of the noise
    assert rows[0]["average_width_median"] < rows[0]["topic_width_median"]
    assert rows[-1]["n_used_mean"] == 800
    # fewer generations than the grid: fractions of what exists are shown
    small = stats.analyse(_planted(rng, topics=1, n_h=100, n_m=120), GROUPS, draws=50, seed=0)["emotion"]
    assert small.n_grid == [30, 60, 120]


def test_seeded_determinism_and_content_keyed_streams():
    cells = _planted(np.random.default_rng(9), topics=2, n_h=150, n_m=100)
    r1 = stats.analyse(cells, GROUPS, draws=100, seed=42, n_grid=None)["emotion"]
    r2 = stats.analyse(cells, GROUPS, draws=100, seed=42, n_grid=None)["emotion"]
    r3 = stats.analyse(cells, GROUPS, draws=100, seed=43, n_grid=None)["emotion"]
    assert r1.bias("model:m:default", A, B) == r2.bias("model:m:default", A, B)
    assert r1.alignment(A, B) == r2.alignment(A, B)
    assert r1.alignment(A, B).lo != r3.alignment(A, B).lo
    assert r1.alignment(A, B).estimate == r3.alignment(A, B).estimate
    # adding a subject does not change the draws of the others
    more = dict(cells)
    more[("t0", "model:other:default")] = {"emotion": beta_scores(np.random.default_rng(1), np.full(11, 0.3), 80)}
    r4 = stats.analyse(more, GROUPS, draws=100, seed=42, n_grid=None)["emotion"]
    assert r4.alignment("model:m:default", A) == r1.alignment("model:m:default", A)


def test_contrasts_steering_and_point_estimates_match_the_reduce():
    rng = np.random.default_rng(21)
    cells = _planted(rng, topics=2, n_h=200, n_m=150)
    for t in ("t0", "t1"):
        cells[(t, "model:m:liberal")] = {"emotion": beta_scores(rng, np.full(11, 0.4), 150)}
        cells[(t, "model:m:conservative")] = {"emotion": beta_scores(rng, np.full(11, 0.2), 150)}
    st = stats.analyse(cells, GROUPS, draws=150, seed=1, n_grid=None)["emotion"]
    for t in ("t0", "t1"):
        p = metrics.distribution(cells[(t, "model:m:liberal")]["emotion"])
        q = metrics.distribution(cells[(t, A)]["emotion"])
        assert st.per_topic("model:m:liberal", A)[t].estimate == pytest.approx(metrics.alignment(p, q), abs=1e-12)
    steer = st.steering("model:m:liberal", A)
    assert steer.estimate == pytest.approx(st.alignment("model:m:liberal", A).estimate - st.alignment("model:m:default", A).estimate)
    diff = st.mode_contrast("m", A)
    assert diff.estimate == pytest.approx(st.alignment("model:m:liberal", A).estimate - st.alignment("model:m:conservative", A).estimate)
    change = st.bias_change("model:m:conservative", A, B)
    assert change.estimate == pytest.approx(st.bias("model:m:conservative", A, B).estimate - st.bias("model:m:default", A, B).estimate)
    assert st.steering("model:m:default", A) is None
    basic = stats.analyse(cells, GROUPS, draws=150, seed=1, n_grid=None, interval="basic")["emotion"].alignment(A, B)
    pct = st.alignment(A, B)
    assert basic.estimate == pct.estimate
    assert basic.lo == pytest.approx(2 * pct.estimate - pct.hi) and basic.hi == pytest.approx(2 * pct.estimate - pct.lo)


def test_joint_dimensions_and_nan_rows():
    rng = np.random.default_rng(2)
    emo = beta_scores(rng, np.full(11, 0.3), 50)
    mor = beta_scores(rng, np.full(10, 0.3), 50)
    mor_nan = mor.copy()
    mor_nan[:5] = np.nan
    cells = {("t", A): {"emotion": emo, "moral": mor}, ("t", B): {"emotion": emo[::-1].copy(), "moral": mor_nan}}
    res = stats.analyse(cells, GROUPS, draws=40, seed=0, n_grid=None)
    assert set(res) == {"emotion", "moral"}
    assert res["moral"].n_texts[("t", B)] == 45 and res["emotion"].n_texts[("t", B)] == 50
    assert res["emotion"].alignment(A, B).estimate == pytest.approx(1.0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        stats.analyse({}, GROUPS, mode="median")
    with pytest.raises(ValueError):
        stats.analyse({}, GROUPS, draws=1)
    with pytest.raises(ValueError):
        stats.resample_means(np.zeros((0, 3)), 5, np.random.default_rng(0))
