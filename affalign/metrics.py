"""Pure math of the reduce: affect distributions and Jensen-Shannon alignment (numpy/scipy, no Ray).

Distribution modes (paper §3.2: "the model returns a score that gives the confidence that a tweet
expresses an emotion; we average scores over all tweets"):

* ``mean``: the mean probability of each label over the texts, normalised to sum to 1.
* ``threshold``: the share of texts whose probability of a label is >= ``tau``, normalised to sum
  to 1 (a label-frequency distribution).

Alignment between two distributions is ``1 - JSD(p, q)`` with the Jensen-Shannon *distance*
(square root of the divergence) in base 2, so it lies in [0, 1].
"""

from __future__ import annotations

import numpy as np

MODES = ("mean", "threshold")


def normalise(values: np.ndarray) -> np.ndarray:
    """Scale non-negative values to sum to 1; an all-zero vector becomes uniform."""
    v = np.asarray(values, dtype=np.float64)
    if np.any(v < 0) or not np.all(np.isfinite(v)):
        raise ValueError("distribution values must be finite and non-negative")
    total = v.sum()
    if total <= 0:
        return np.full_like(v, 1.0 / v.size)
    return v / total


def distribution_from_sums(
    score_sum: np.ndarray, above_count: np.ndarray, n_texts: int, mode: str = "mean"
) -> np.ndarray:
    """A distribution from partial aggregates: per-label sums of scores and counts >= tau."""
    if n_texts <= 0:
        raise ValueError("a distribution needs at least one text")
    if mode == "mean":
        return normalise(np.asarray(score_sum, dtype=np.float64) / n_texts)
    if mode == "threshold":
        return normalise(np.asarray(above_count, dtype=np.float64) / n_texts)
    raise ValueError(f"unknown distribution mode {mode!r}; expected one of {MODES}")


def distribution(scores: np.ndarray, mode: str = "mean", tau: float = 0.5) -> np.ndarray:
    """Distribution over labels of a ``(n_texts, n_labels)`` score matrix (rows with NaN skipped)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError("scores must be a 2-D (texts x labels) matrix")
    s = s[~np.isnan(s).any(axis=1)]
    return distribution_from_sums(s.sum(axis=0), (s >= tau).sum(axis=0), s.shape[0], mode)


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance in base 2 (in [0, 1])."""
    p = normalise(p)
    q = normalise(q)
    m = 0.5 * (p + q)

    def _kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    div = 0.5 * _kl(p, m) + 0.5 * _kl(q, m)
    return float(np.sqrt(max(div, 0.0)))


def alignment(p: np.ndarray, q: np.ndarray) -> float:
    """Affective alignment S = 1 - Jensen-Shannon distance (base 2) between two distributions."""
    # scipy's jensenshannon takes the square root of a divergence that rounding can leave a hair
    # below zero (NaN for two identical distributions); js_distance clamps it at zero
    return 1.0 - js_distance(p, q)


def summarise(scores: list[float]) -> tuple[float, float, int]:
    """Mean, standard deviation (population, as a spread over topics) and count of per-topic scores."""
    a = np.asarray(scores, dtype=np.float64)
    if a.size == 0:
        return float("nan"), float("nan"), 0
    return float(a.mean()), float(a.std()), int(a.size)
