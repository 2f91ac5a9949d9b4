import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from affalign import metrics


def test_identical_distributions_align_perfectly():
    p = np.array([0.2, 0.3, 0.5])
    assert metrics.alignment(p, p) == pytest.approx(1.0)
    assert metrics.js_distance(p, p) == pytest.approx(0.0)


def test_disjoint_distributions_have_zero_alignment():
    # JSD (base 2) of disjoint supports is exactly 1 bit, distance 1
    assert metrics.alignment([1, 0], [0, 1]) == pytest.approx(0.0)
    assert metrics.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_hand_computed_value():
    # p=(1/2,1/2), q=(1,0): m=(3/4,1/4)
    # KL(p||m) = 1/2 log2(2/3) + 1/2 log2(2); KL(q||m) = log2(4/3)
    kl_pm = 0.5 * math.log2((0.5) / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_qm = math.log2(1 / 0.75)
    expected = 1 - math.sqrt(0.5 * kl_pm + 0.5 * kl_qm)
    assert metrics.alignment([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(1 - 0.5579230452, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    p, q = rng.random(11), rng.random(11)
    assert metrics.js_distance(p, q) == pytest.approx(jensenshannon(p / p.sum(), q / q.sum(), base=2), abs=1e-12)
    assert metrics.alignment(p, q) == pytest.approx(1 - jensenshannon(p, q, base=2), abs=1e-12)


def test_alignment_is_symmetric_and_bounded():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p, q = rng.random(10), rng.random(10)
        s = metrics.alignment(p, q)
        assert 0.0 <= s <= 1.0
        assert s == pytest.approx(metrics.alignment(q, p))


def test_mean_mode_normalises_mean_scores():
    scores = np.array([[0.9, 0.1, 0.0], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(metrics.distribution(scores, "mean"), np.array([1.4, 0.6, 0.0]) / 2.0)


def test_threshold_mode_counts_scores_at_or_above_tau():
    scores = np.array([[0.9, 0.5, 0.2], [0.6, 0.4, 0.7], [0.1, 0.5, 0.1]])
    # >= 0.5 counts: label0 2, label1 2, label2 1
    np.testing.assert_allclose(metrics.distribution(scores, "threshold", tau=0.5), np.array([2, 2, 1]) / 5)


def test_rows_with_nan_are_skipped():
    scores = np.array([[1.0, 0.0], [np.nan, np.nan], [0.0, 1.0]])
    np.testing.assert_allclose(metrics.distribution(scores), [0.5, 0.5])


def test_all_zero_scores_become_uniform_and_bad_input_is_refused():
    np.testing.assert_allclose(metrics.normalise(np.zeros(4)), np.full(4, 0.25))
    with pytest.raises(ValueError):
        metrics.normalise(np.array([0.5, -0.1]))
    with pytest.raises(ValueError):
        metrics.distribution_from_sums(np.ones(2), np.ones(2), 0)
    with pytest.raises(ValueError):
        metrics.distribution(np.ones((2, 2)), mode="median")


def test_summarise():
    mean, std, n = metrics.summarise([0.8, 0.6])
    assert (mean, std, n) == (pytest.approx(0.7), pytest.approx(0.1), 2)
    assert metrics.summarise([])[2] == 0


def test_alignment_of_identical_distributions_is_exactly_one():
    # a divergence that rounds below zero must not turn into NaN through the square root
    rng = np.random.default_rng(7)
    for _ in range(200):
        p = rng.dirichlet(np.full(11, 0.3))
        assert metrics.alignment(p, p.copy()) == pytest.approx(1.0, abs=1e-7)
        assert not np.isnan(metrics.alignment(p, p * (1 + 1e-12)))
