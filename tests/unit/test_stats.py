"""Bootstrap intervals, permutation tests and precision curves of affalign.stats."""

from __future__ import annotations

import math

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


def test_aggregate_sums_texts_by_cluster_and_topic_by_hand():
    # user "u" has two texts in t1 and one in t2 (shared cluster across topics), "v" one text in t1
    agg = stats.aggregate([("t1", np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]), np.array(["u", "v", "u"])), ("t2", np.array([[4.0, 1.0]]), np.array(["u"]))])
    assert agg.topics == ["t1", "t2"] and agg.n_clusters == 2 and agg.n_pairs == 3
    assert agg.codes[0].tolist() == [0, 1] and agg.codes[1].tolist() == [0]  # "u" is code 0 in both topics
    assert agg.counts[0].tolist() == [2.0, 1.0] and agg.sums[0].tolist() == [[3.0, 2.0], [0.0, 1.0]]
    np.testing.assert_allclose(agg.mean(0), [1.0, 1.0])
    # without ids every row is its own cluster
    solo = stats.aggregate([("t1", np.ones((3, 2)), None), ("t2", np.ones((2, 2)), None)])
    assert solo.n_clusters == 5 and solo.n_pairs == 5
    with pytest.raises(ValueError):
        stats.aggregate([("t1", np.ones((1, 2)), np.array(["u"])), ("t2", np.ones((1, 2)), None)])


def test_resampled_means_have_the_bootstrap_variance():
    rng = np.random.default_rng(1)
    x = (rng.random((400, 1)) < 0.3).astype(float)
    agg = stats.aggregate([("t", x, None)])
    for exact_max in (10_000, 10):  # exact (Exp(1) weights), then the normal limit
        (m,) = stats.resample_agg(agg, 4000, np.random.default_rng(2), exact_max=exact_max)
        assert m.shape == (4000, 1)
        assert m.mean() == pytest.approx(x.mean(), abs=0.003)
        assert m.std() == pytest.approx(x.std() / np.sqrt(400), rel=0.08)
    a = stats.resample_agg(agg, 10, np.random.default_rng(5))[0]
    b = stats.resample_agg(agg, 10, np.random.default_rng(5))[0]
    np.testing.assert_array_equal(a, b)


def test_clustered_resampling_widens_for_users_and_links_topics():
    rng = np.random.default_rng(3)
    users = 200
    level = rng.random(users)  # every user repeats their own score 10 times: 200 independent values, not 2000
    x = np.repeat(level, 10)[:, None]
    ids = np.repeat(np.arange(users), 10)
    want = level.std() / np.sqrt(users)
    for exact_max in (10_000, 10):
        (m,) = stats.resample_agg(stats.aggregate([("t", x, ids)]), 3000, np.random.default_rng(4), exact_max=exact_max)
        assert m.std() == pytest.approx(want, rel=0.1)
        (naive,) = stats.resample_agg(stats.aggregate([("t", x, None)]), 3000, np.random.default_rng(4), exact_max=exact_max)
        assert naive.std() == pytest.approx(want / np.sqrt(10), rel=0.1)
    # the same tweets in two topics: one weight per cluster, so the topics' resampled means move together
    y = rng.random((300, 1))
    tid = np.arange(300)
    for exact_max in (10_000, 10):
        m1, m2 = stats.resample_agg(stats.aggregate([("a", y, tid), ("b", y, tid)]), 2000, np.random.default_rng(6), exact_max=exact_max)
        assert np.corrcoef(m1[:, 0], m2[:, 0])[0, 1] > 0.99
        i1, i2 = stats.resample_agg(stats.aggregate([("a", y, None), ("b", y, None)]), 2000, np.random.default_rng(6), exact_max=exact_max)
        assert abs(np.corrcoef(i1[:, 0], i2[:, 0])[0, 1]) < 0.1  # without shared ids: independent


def test_bias_correction_and_p_value_by_hand():
    # D_hat = (1 - 0.9)^2 = 0.01; replicates at S 0.8 and 0.9: D* 0.04 and 0.01, mean 0.025, so b = 0.015;
    # corrected D = max(0.01 - 0.015, 0) = 0 -> S 1; replicates D* - 0.03 -> (0.01, 0) -> S (0.9, 1.0)
    est, reps = stats.bias_corrected(0.9, np.array([0.8, 0.9]), stages=1)
    assert est == pytest.approx(1.0)
    np.testing.assert_allclose(reps, [0.9, 1.0])
    for stages in (1, 2):
        est, reps = stats.bias_corrected(0.8, np.array([0.8, 0.8]), stages=stages)  # no spread: nothing to correct
        assert est == pytest.approx(0.8) and np.allclose(reps, 0.8)
    # two-sided test inversion: 1 of 4 replicates <= 0 -> p = 2 (1 + 1) / (1 + 4)
    assert stats.inversion_p_value(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(0.8)
    assert stats.inversion_p_value(np.array([1.0, 2.0, 3.0])) == pytest.approx(0.5)
    assert stats.inversion_p_value(np.zeros(9)) == 1.0


def test_two_stage_bias_correction_by_hand():
    # S_hat 0.9 (D_hat 0.01); replicates with D* = 0.009, 0.011, 0.013, 0.015: mean 0.012, so b = 0.002.
    # Stage 1: S_1 = 1 - sqrt(0.008); replicates 1 - sqrt(D* - 0.004).
    # Stage 2: j = mean(1 - sqrt(D* - 0.002)) - (1 - sqrt(0.01)); estimate S_1 - j; replicates moved to mean S_1 - j.
    d = np.array([0.009, 0.011, 0.013, 0.015])
    s1 = 1 - math.sqrt(0.008)
    r1 = np.array([1 - math.sqrt(x - 0.004) for x in d])
    j = np.mean([1 - math.sqrt(x - 0.002) for x in d]) - 0.9
    est, reps = stats.bias_corrected(0.9, 1 - np.sqrt(d))
    assert j > 0  # the square root's bias is upward in S: stage 2 lowers the estimate
    assert est == pytest.approx(s1 - j, abs=1e-12)
    np.testing.assert_allclose(reps, r1 - r1.mean() + s1 - j, atol=1e-12)
    assert reps.mean() == pytest.approx(est, abs=1e-12)
    est1, reps1 = stats.bias_corrected(0.9, 1 - np.sqrt(d), stages=1)
    assert est1 == pytest.approx(s1, abs=1e-12) and np.allclose(reps1, r1)
    # capped at 1: identical samples give S 1 and replicates at 1
    est, reps = stats.bias_corrected(1.0, np.ones(5))
    assert est == 1.0 and np.all(reps == 1.0)
    with pytest.raises(ValueError):
        stats.bias_corrected(0.9, 1 - np.sqrt(d), stages=3)


def test_two_stage_correction_removes_the_square_roots_bias():
    # Sample means of two fixed distributions (S = 0.97 apart) with Gaussian noise, and a parametric
    # bootstrap of each sample: over 3000 samples the one-stage estimate of S stays biased upward by
    # about var(S) / (2 sqrt(D)) (Jensen), the two-stage estimate is unbiased within Monte Carlo error.
    rng = np.random.default_rng(3)
    k, n_rep, n_draw, sd = 6, 3000, 400, 0.004
    p = rng.dirichlet(np.ones(k) * 5)
    q = p.copy()
    q[0] += 0.05
    q /= q.sum()
    truth = float(stats.js_alignment(p, q))
    est = {1: [], 2: []}
    for _ in range(n_rep):
        ph, qh = stats.normalise_rows(p + sd * rng.standard_normal(k)), stats.normalise_rows(q + sd * rng.standard_normal(k))
        point = float(stats.js_alignment(ph, qh))
        reps = stats.js_alignment(stats.normalise_rows(ph + sd * rng.standard_normal((n_draw, k))), stats.normalise_rows(qh + sd * rng.standard_normal((n_draw, k))))
        for stages in (1, 2):
            est[stages].append(stats.bias_corrected(point, reps, stages)[0])
    bias = {s: float(np.mean(v)) - truth for s, v in est.items()}
    se = {s: float(np.std(v)) / math.sqrt(n_rep) for s, v in est.items()}
    assert bias[1] > 3 * se[1]  # one stage: still biased upward
    assert abs(bias[2]) < 2 * se[2]  # two stages: no bias left that 3000 samples can see
    assert abs(bias[2]) < abs(bias[1]) / 3


def test_cluster_covariance_equals_the_dense_product():
    # sum_u z_u z_u' over clusters in several topics, against the dense (clusters x topics*labels) product
    rng = np.random.default_rng(4)
    n_clusters, T, k = 40, 4, 3
    codes = [np.sort(rng.choice(n_clusters, size=rng.integers(5, 30), replace=False)) for _ in range(T)]
    zs = [rng.standard_normal((len(c), k)) for c in codes]
    dense = np.zeros((n_clusters, T * k))
    for i, (c, z) in enumerate(zip(codes, zs, strict=True)):
        dense[c, i * k : (i + 1) * k] = z
    np.testing.assert_allclose(stats._cluster_cov(codes, zs), dense.T @ dense, atol=1e-12)


def test_bias_corrected_interval_contains_its_estimate_near_one():
    # two groups from one population: the plug-in S < 1 and its percentile interval lies below it;
    # the bias-corrected estimate moves up and sits inside its own interval
    rng = np.random.default_rng(8)
    mu = rng.uniform(0.1, 0.6, 11)
    cells = {(f"t{t}", g): {"emotion": beta_scores(rng, mu, 150)} for t in range(6) for g in (A, B)}
    pct = stats.analyse(cells, GROUPS, draws=400, seed=0, n_grid=None, interval="percentile")["emotion"].alignment(A, B)
    bc = stats.analyse(cells, GROUPS, draws=400, seed=0, n_grid=None)["emotion"].alignment(A, B)
    assert pct.hi < pct.estimate  # the old failure: an interval that excludes its own estimate
    assert bc.plugin == pytest.approx(pct.estimate) and bc.estimate > bc.plugin
    assert bc.lo <= bc.estimate <= bc.hi
    assert bc.hi > 0.99  # the populations are identical: S = 1 is not excluded


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
    assert bias.plugin == pytest.approx(0.0, abs=1e-12)  # the same texts on both sides
    assert bias.estimate == pytest.approx(0.0, abs=bias.width / 4)  # only the two bias estimates' bootstrap noise differs
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


def test_bias_test_holds_its_level_for_an_equidistant_model():
    # A and B from one population, so every model is equidistant from them; unequal group sizes
    rejections = 0
    for rep in range(24):
        rng = np.random.default_rng(100 + rep)
        mu = rng.uniform(0.1, 0.6, 5)
        cells = {("t", A): {"e": beta_scores(rng, mu, 240)}, ("t", B): {"e": beta_scores(rng, mu, 60)}, ("t", "model:m:default"): {"e": beta_scores(rng, rng.uniform(0.1, 0.6, 5), 60)}}
        st = stats.analyse(cells, GROUPS, draws=200, seed=rep, n_grid=None)["e"]
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
    assert r1.alignment(A, B).plugin == r3.alignment(A, B).plugin  # the bias-corrected estimate uses the draws; the plug-in does not
    assert r1.alignment(A, B).estimate == pytest.approx(r3.alignment(A, B).estimate, abs=0.25 * r1.alignment(A, B).width)
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
        assert st.per_topic("model:m:liberal", A)[t].plugin == pytest.approx(metrics.alignment(p, q), abs=1e-12)
    steer = st.steering("model:m:liberal", A)
    assert steer.estimate == pytest.approx(st.alignment("model:m:liberal", A).estimate - st.alignment("model:m:default", A).estimate)
    diff = st.mode_contrast("m", A)
    assert diff.estimate == pytest.approx(st.alignment("model:m:liberal", A).estimate - st.alignment("model:m:conservative", A).estimate)
    change = st.bias_change("model:m:conservative", A, B)
    assert change.estimate == pytest.approx(st.bias("model:m:conservative", A, B).estimate - st.bias("model:m:default", A, B).estimate)
    assert st.steering("model:m:default", A) is None
    basic = stats.analyse(cells, GROUPS, draws=150, seed=1, n_grid=None, interval="basic")["emotion"].alignment(A, B)
    pct = stats.analyse(cells, GROUPS, draws=150, seed=1, n_grid=None, interval="percentile")["emotion"].alignment(A, B)
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
        stats.analyse({}, GROUPS, interval="bca")
    with pytest.raises(ValueError):
        stats.aggregate([("t", np.zeros((0, 3)), None)])
