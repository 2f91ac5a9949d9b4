"""Uncertainty of the alignment numbers: clustered bootstrap, bias-corrected intervals, precision against n.

Pure numpy/scipy (no Ray, no matplotlib). Everything starts from per-text score matrices, one per
(topic, subject): ``(n_texts, n_labels)`` label probabilities of one dimension, as stored in a run's
``scores/`` tables, optionally with each text's cluster (its author's ``user_id``) under the cell
key :data:`CLUSTER`.

**Distributions.** A topic's distribution is ``normalise(mean over texts of f(x))`` where ``f`` is
the identity in ``mean`` mode and ``x >= tau`` in ``threshold`` mode (:mod:`affalign.metrics`).
Texts are first summed by (cluster, topic): a subject's data are, per topic, the clusters present
with their text counts and feature sums (:class:`Agg`), and a resample is a weighted ratio of those.

**Clustered bootstrap, one set of weights across topics.** Each draw gives every cluster of a
subject one Exp(1) weight (the Bayesian bootstrap, Rubin 1981: mean 1 and variance 1 like the
Poisson(1) counts of the ordinary bootstrap, but never all zero in a small topic), shared by all
the topics that cluster has texts in, and every topic's resampled mean is ``sum w_u F_ut / sum w_u n_ut``. Clusters are users on
the human side (tweets of one user are not independent) and single texts on the model side; a
tweet in several topics belongs to one cluster, so its topics move together in a draw and topic
averages get the variance their correlation implies. Without user ids every text is its own
cluster, still shared across the topics it is in. Subjects are resampled independently of each
other; one draw holds the same resample of a subject everywhere it appears, so differences (bias,
steering, distance to the baseline) and topic averages (paper eq. 1) are bootstrapped jointly. When a
subject has more than ``exact_max`` (cluster, topic) pairs, the draws come from the normal limit of
the weighted means (first-order linearisation ``mean_t + sum_u (w_u - 1) z_ut`` with
``z_ut = (F_ut - n_ut mean_t) / N_t``, joint over topics, covariance ``sum_u z_u z_u'``); the
nonlinear map to ``S`` is still applied draw by draw.

**Bias-corrected intervals (default ``interval="bc"``).** The plug-in ``S = 1 - sqrt(D)`` (``D``
the Jensen-Shannon divergence, base 2) is biased downward: sampling noise only adds divergence, by
about ``b = E[D_hat] - D`` (of order labels / n), and more for the smaller sample. The correction
has two stages, both estimated from the bootstrap replicates of each topic and pair.
Stage 1, on the divergence scale, where ``D`` is smooth in the two distributions and the bootstrap
estimates that bias well: ``b_hat = mean(D*) - D_hat``, ``S_1 = 1 - sqrt(max(D_hat - b_hat, 0))``,
and the replicates are moved the same way and once more (``D* - 2 b_hat``, centred on
``D_hat - b_hat``) and mapped back to S. Stage 2, on the S scale: an unbiased divergence still
gives an S biased upward, because the square root is concave (Jensen; about ``var(S) / (2
sqrt(D))``, which grows as S nears 1 and with the smaller sample). In the bootstrap world the true
divergence is ``D_hat`` and the stage-1 estimator's replicates are ``D* - b_hat``, so that bias is
estimated as ``j = mean(1 - sqrt(D* - b_hat)) - (1 - sqrt(D_hat))`` (an iterated bootstrap bias
correction, Hall & Martin 1988, with the inner bias estimate reused rather than re-bootstrapped);
the estimate is ``S_1 - j`` and the stage-1 replicates are moved to have it as their mean (both
capped at 1). Contrasts (differences, topic averages) are formed from those replicates and the
interval is their 2.5% and 97.5% percentiles; contrasts average S over pairs and topics, so any
bias left in each S adds up, which is why the second stage matters most for the below-baseline
and bias calls at 26 topics and S near 1. A two-sided p-value of a contrast's null value 0 is the
test inversion of that interval: ``2 min(#{r <= 0}, #{r >= 0}) / draws`` (plus one in numerator and
denominator), so p < 0.05 exactly when the 95% interval excludes 0 (up to the draws' resolution).
The false-call rates of every call the report makes, and the one-sided miss rates of the printed S
intervals, were measured under these intervals on simulations with planted truth
(:mod:`affalign.calibration`, ``benchmarks/bench_calibration.py``, table in
``benchmarks/RESULTS.md``). ``interval="bc1"`` (stage 1 only, the default until then),
``"percentile"`` (the uncorrected percentile bootstrap) and ``"basic"`` (percentiles reflected
about the plug-in estimate) remain for comparison; the percentile interval calls models that sit
exactly on the human baseline "above" it far more often than 2.5%.

**Precision against n.** Each model subject's texts of a topic are subsampled (without
replacement) to ``n`` in ``n_grid`` (capped at what exists; with fewer than three grid values
left, a quarter and a half of the largest count are added), and the bootstrap is rerun with
``curve_draws`` draws, giving the interval width of the per-topic and topic-averaged alignment
(and of the bias) a run with ``n_responses = n`` would have; the human side keeps all its texts.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from affalign import metrics, schema
from affalign.schema import DIMENSIONS, human_subject

MODES = metrics.MODES  # the distribution modes, defined once
INTERVALS = ("bc", "bc1", "percentile", "basic")
DEFAULT_INTERVAL = "bc"
DEFAULT_N_GRID: tuple[int, ...] = (250, 500, 1000, 2000)
LEVEL = 0.95
CLUSTER = "_cluster"  # optional key of a cell: (n,) cluster ids (the authors' user ids), row-aligned with the scores
_LN2 = math.log(2.0)
_CHUNK_ELEMS = 1 << 18  # weight-matrix elements per chunk: cache-sized buffers

Key = tuple[str, str]  # (subject, target)


# ---------------------------------------------------------------------------------------------
# Vectorised primitives
# ---------------------------------------------------------------------------------------------


def features(scores: np.ndarray, mode: str = "mean", tau: float = 0.5) -> np.ndarray:
    """Per-text vectors whose mean, normalised, is the distribution of the mode (NaN rows dropped)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError("scores must be a 2-D (texts x labels) matrix")
    s = s[~np.isnan(s).any(axis=1)]
    return _features_of(s, mode, tau)


def _features_of(s: np.ndarray, mode: str, tau: float | np.ndarray) -> np.ndarray:
    if mode == "mean":
        return s
    if mode == "threshold":
        return (s >= tau).astype(np.float64)
    raise ValueError(f"unknown distribution mode {mode!r}; expected one of {MODES}")


def normalise_rows(v: np.ndarray) -> np.ndarray:
    """Each row (last axis) clipped at 0 and scaled to sum to 1; an all-zero row becomes uniform."""
    v = np.clip(np.asarray(v, dtype=np.float64), 0.0, None)
    total = v.sum(axis=-1, keepdims=True)
    uniform = np.full_like(v, 1.0 / v.shape[-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, v / np.where(total > 0, total, 1.0), uniform)


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, in [0, 1]) along the last axis; broadcasts; rows sum to 1."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kp = np.where(p > 0, p * np.log(p / m), 0.0)
        kq = np.where(q > 0, q * np.log(q / m), 0.0)
    return np.clip(0.5 * (kp.sum(axis=-1) + kq.sum(axis=-1)) / _LN2, 0.0, None)


def js_alignment(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``1 - JS distance`` (base 2) along the last axis; broadcasts; rows must already sum to 1."""
    return 1.0 - np.sqrt(js_divergence(p, q))


@dataclass
class Agg:
    """One subject's texts of one dimension, summed by (cluster, topic).

    ``codes[i]``, ``counts[i]`` and ``sums[i]`` belong to ``topics[i]``: the clusters (codes in
    ``0..n_clusters-1``, shared across topics) with texts in that topic, their text counts and
    their feature sums ``(m_i, k)``.
    """

    topics: list[str]
    codes: list[np.ndarray]
    counts: list[np.ndarray]
    sums: list[np.ndarray]
    n_clusters: int

    @property
    def n_pairs(self) -> int:
        return int(sum(len(c) for c in self.codes))

    def n_texts(self, i: int) -> int:
        return int(self.counts[i].sum())

    def mean(self, i: int) -> np.ndarray:
        return self.sums[i].sum(axis=0) / self.counts[i].sum()


def aggregate(parts: Sequence[tuple[str, np.ndarray, np.ndarray | None]]) -> Agg:
    """Sum per-text features by (cluster, topic). ``parts``: (topic, features ``(n, k)``, cluster ids
    ``(n,)`` or None). Without ids every row is its own cluster (not shared with other topics)."""
    keep = [(t, np.asarray(f, dtype=np.float64), ids) for t, f, ids in parts if len(f)]
    if not keep:
        raise ValueError("cannot aggregate a subject without texts")
    if all(ids is not None for _, _, ids in keep):
        uniq, inv = np.unique(np.concatenate([np.asarray(ids) for _, _, ids in keep]), return_inverse=True)
        n_clusters = len(uniq)
        bounds = np.cumsum([0] + [len(f) for _, f, _ in keep])
        row_codes = [inv[bounds[i] : bounds[i + 1]] for i in range(len(keep))]
    else:
        if any(ids is not None for _, _, ids in keep):
            raise ValueError("cluster ids must be given for every topic of a subject or for none")
        bounds = np.cumsum([0] + [len(f) for _, f, _ in keep])
        n_clusters = int(bounds[-1])
        row_codes = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(keep))]
    codes, counts, sums = [], [], []
    for (_, f, _), rc in zip(keep, row_codes, strict=True):
        uc, inv = np.unique(rc, return_inverse=True)
        codes.append(uc.astype(np.intp))
        counts.append(np.bincount(inv, minlength=len(uc)).astype(np.float64))
        sums.append(np.stack([np.bincount(inv, weights=f[:, j], minlength=len(uc)) for j in range(f.shape[1])], axis=1))
    return Agg([t for t, _, _ in keep], codes, counts, sums, n_clusters)


def resample_agg(agg: Agg, draws: int, rng: np.random.Generator, exact_max: int = 20_000) -> list[np.ndarray]:
    """Per topic of ``agg``, ``(draws, k)`` means of the clustered Bayesian bootstrap (one Exp(1)
    weight per cluster per draw, shared across topics); the normal limit above ``exact_max``
    (cluster, topic) pairs."""
    if agg.n_pairs > exact_max:
        return _resample_normal(agg, draws, rng)
    means = [np.empty((draws, s.shape[1])) for s in agg.sums]
    rows = max(1, min(draws, _CHUNK_ELEMS // max(agg.n_clusters, 1)))
    for start in range(0, draws, rows):
        b = min(rows, draws - start)
        w = rng.standard_exponential(size=(b, agg.n_clusters))
        for i, codes in enumerate(agg.codes):
            wt = w[:, codes]
            means[i][start : start + b] = (wt @ agg.sums[i]) / (wt @ agg.counts[i])[:, None]
    return means


def _resample_normal(agg: Agg, draws: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Normal limit of :func:`resample_agg`: joint over topics, covariance sum_u z_u z_u'."""
    k = agg.sums[0].shape[1]
    T = len(agg.topics)
    mus = [agg.mean(i) for i in range(T)]
    zs = [(agg.sums[i] - agg.counts[i][:, None] * mus[i][None, :]) / agg.counts[i].sum() for i in range(T)]
    if agg.n_pairs == agg.n_clusters:  # no cluster in two topics: the covariance is block-diagonal by topic
        return [mus[i] + rng.standard_normal((draws, k)) @ _sqrt_psd(zs[i].T @ zs[i]).T for i in range(T)]
    g = rng.standard_normal((draws, k * T)) @ _sqrt_psd(_cluster_cov(agg.codes, zs)).T
    return [mus[i] + g[:, i * k : (i + 1) * k] for i in range(T)]


def _cluster_cov(codes: Sequence[np.ndarray], zs: Sequence[np.ndarray]) -> np.ndarray:
    """``sum_u z_u z_u'`` over clusters, ``z_u`` the concatenation over topics of cluster u's rows
    (zero where u has no texts): a topic's own block is ``z_t' z_t``; the block of two topics sums
    over the clusters in both, found as neighbours after sorting the (cluster, topic) rows by
    cluster. Same figure as a sparse ``Z' Z``, several times faster for 100k users in 26 topics."""
    T, k = len(zs), zs[0].shape[1]
    cov = np.zeros((T * k, T * k))
    for i, z in enumerate(zs):
        cov[i * k : (i + 1) * k, i * k : (i + 1) * k] = z.T @ z
    user = np.concatenate(codes)
    topic = np.repeat(np.arange(T), [len(c) for c in codes])
    z_all = np.concatenate(zs)
    order = np.lexsort((topic, user))  # by cluster, then topic
    us = user[order]
    first, second = [], []
    for d in range(1, T):  # rows d apart with the same cluster: each within-cluster pair once
        same = np.flatnonzero(us[:-d] == us[d:])
        if not len(same):
            break
        first.append(order[same])
        second.append(order[same + d])
    if first:
        ra, rb = np.concatenate(first), np.concatenate(second)
        blk = topic[ra] * T + topic[rb]  # topic[ra] < topic[rb]
        o = np.argsort(blk, kind="stable")
        ra, rb, blk = ra[o], rb[o], blk[o]
        za, zb = z_all[ra], z_all[rb]
        starts = np.flatnonzero(np.r_[True, blk[1:] != blk[:-1]])
        for s, e in zip(starts, np.r_[starts[1:], len(blk)], strict=True):
            i, j = divmod(int(blk[s]), T)
            b = za[s:e].T @ zb[s:e]
            cov[i * k : (i + 1) * k, j * k : (j + 1) * k] = b
            cov[j * k : (j + 1) * k, i * k : (i + 1) * k] = b.T
    return cov


def _blas_single_thread():
    """One BLAS thread while resampling: the products are small, and idle BLAS threads spinning
    beside the main one cost more than they give (3x slower on a shared 2-core machine). Uses
    threadpoolctl where installed; otherwise a no-op."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return v * np.sqrt(np.clip(w, 0.0, None))


def percentile_interval(reps: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    lo, hi = np.percentile(np.asarray(reps, dtype=np.float64), [100 * a, 100 * (1 - a)])
    return float(lo), float(hi)


def inversion_p_value(reps: np.ndarray) -> float:
    """Two-sided p-value of the null value 0 by inverting percentile intervals of ``reps``."""
    r = np.asarray(reps, dtype=np.float64)
    tail = min(np.count_nonzero(r <= 0.0), np.count_nonzero(r >= 0.0))
    return float(min(1.0, 2.0 * (1.0 + tail) / (1.0 + r.size)))


def bias_corrected(point: float, reps: np.ndarray, stages: int = 2) -> tuple[float, np.ndarray]:
    """Bias-corrected S and its replicates (see the module doc).

    Stage 1, on the divergence scale: ``b = mean(D*) - D_hat``; the estimate ``S_1 = 1 - sqrt(D_hat - b)``
    and the replicates ``S*_1 = 1 - sqrt(D* - 2 b)`` (clipped at ``D = 0``). Stage 2 (``stages=2``, the
    default ``interval="bc"``), on the S scale: ``1 - sqrt`` of a divergence corrected to be unbiased is
    still biased upward, since the square root is concave (Jensen; about ``var(S) / (2 sqrt(D))``). In
    the bootstrap world the true divergence is ``D_hat`` and the stage-1 estimator's replicates are
    ``D* - b``, so that bias is ``j = mean(1 - sqrt(D* - b)) - (1 - sqrt(D_hat))`` (the iterated
    bootstrap bias correction, with the inner bias estimate ``b`` reused). The estimate is ``S_1 - j``
    and the stage-1 replicates are moved to have it as their mean; both are capped at 1.
    ``stages=1`` is the old correction (``interval="bc1"``)."""
    if stages not in (1, 2):
        raise ValueError("stages must be 1 or 2")
    d_hat = (1.0 - point) ** 2
    d_rep = (1.0 - np.asarray(reps, dtype=np.float64)) ** 2
    b = float(d_rep.mean()) - d_hat
    est = 1.0 - math.sqrt(max(d_hat - b, 0.0))
    out = 1.0 - np.sqrt(np.clip(d_rep - 2.0 * b, 0.0, None))
    if stages == 1:
        return est, out
    j = float(np.mean(1.0 - np.sqrt(np.clip(d_rep - b, 0.0, None)))) - (1.0 - math.sqrt(d_hat))
    est2 = min(est - j, 1.0)
    return est2, np.minimum(out + (est2 - float(out.mean())), 1.0)


def _rng(seed: int, *key: object) -> np.random.Generator:
    """A generator keyed by content, so one cell's draws do not depend on which other cells exist."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(k).encode("utf-8")) for k in key]
    return np.random.default_rng(np.random.SeedSequence(words))


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% bootstrap interval (and a p-value of the null value 0 for differences).

    ``estimate`` is the bias-corrected value under ``interval="bc"`` or ``"bc1"`` and the plug-in otherwise;
    ``plugin`` is always the plug-in (the value in ``alignment.parquet``, averaged over topics)."""

    estimate: float
    lo: float
    hi: float
    n_topics: int = 1
    std: float = 0.0  # spread of the per-topic point values (the paper's error bars)
    p_value: float | None = None
    plugin: float | None = None
    p_floor: float = 0.0  # the smallest p-value the draws can give (2 / (draws + 1))

    @property
    def width(self) -> float:
        return self.hi - self.lo

    @property
    def sign(self) -> int:
        """+1 if the interval lies above 0, -1 if below, 0 if it contains 0 (not resolved)."""
        if self.lo > 0:
            return 1
        if self.hi < 0:
            return -1
        return 0

    def as_dict(self) -> dict[str, float | int | None]:
        return {"estimate": self.estimate, "lo": self.lo, "hi": self.hi, "n_topics": self.n_topics, "std": self.std, "p_value": self.p_value, "plugin": self.plugin}


def split_model_subject(subject: str) -> tuple[str, str] | None:
    """``model:<id>:<mode>`` -> (id, mode); None for any other subject."""
    if not subject.startswith(schema.MODEL_PREFIX):
        return None
    model_id, mode = schema.parse_model_subject(subject)
    return (model_id, mode) if model_id else None


@dataclass
class DimensionStats:
    """Bootstrap replicates of one (dataset, dimension); topic averages and contrasts are computed on demand."""

    dimension: str
    groups: list[str]
    topics: list[str]
    subjects: list[str]
    mode: str
    tau: float | np.ndarray | Mapping[str, float | np.ndarray]
    draws: int
    seed: int
    n_texts: dict[tuple[str, str], int] = field(default_factory=dict)  # (topic, subject) -> texts used
    n_clusters: dict[tuple[str, str], int] = field(default_factory=dict)  # (topic, subject) -> clusters (users)
    distributions: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (topic, subject) -> point
    # (subject, target) -> topic -> (plug-in S, (draws,) replicates)
    reps: dict[Key, dict[str, tuple[float, np.ndarray]]] = field(default_factory=dict)
    # (model subject, target, n) -> topic -> (n used, (curve_draws,) replicates)
    curve_reps: dict[tuple[str, str, int], dict[str, tuple[int, np.ndarray]]] = field(default_factory=dict)
    n_grid: list[int] = field(default_factory=list)
    interval: str = DEFAULT_INTERVAL
    clustered: bool = False  # whether any human subject was resampled by user
    _bc: dict[tuple[str, Key], dict[str, tuple[float, np.ndarray]]] = field(default_factory=dict, repr=False)  # (interval, pair) -> corrected series

    def resampling_shift(self, subject: str, target: str) -> float | None:
        """Mean bootstrap replicate minus the plug-in estimate of the topic-averaged S (the plug-in's bias, roughly)."""
        ser = self._series(subject, target, raw=True)
        if not ser:
            return None
        return float(np.mean([ser[t][1].mean() - ser[t][0] for t in ser]))

    # --- subjects ---------------------------------------------------------------------------
    @property
    def humans(self) -> list[str]:
        return [human_subject(g) for g in self.groups if human_subject(g) in self.subjects]

    @property
    def model_subjects(self) -> list[str]:
        return [s for s in self.subjects if split_model_subject(s)]

    def model_ids(self) -> list[str]:
        seen: list[str] = []
        for s in self.model_subjects:
            mid = split_model_subject(s)[0]  # type: ignore[index]
            if mid not in seen:
                seen.append(mid)
        return seen

    def has(self, subject: str, target: str) -> bool:
        return bool(self._series(subject, target, raw=True))

    def _series(self, subject: str, target: str, raw: bool = False) -> dict[str, tuple[float, np.ndarray]]:
        key = (subject, target)
        got = self.reps.get(key)
        if got is None and subject.startswith(schema.HUMAN_PREFIX) and target.startswith(schema.HUMAN_PREFIX):
            key = (target, subject)
            got = self.reps.get(key)
        if not got or raw or self.interval not in ("bc", "bc1"):
            return got or {}
        ck = (self.interval, key)
        if ck not in self._bc:
            stages = 2 if self.interval == "bc" else 1
            self._bc[ck] = {t: bias_corrected(p, r, stages) for t, (p, r) in got.items()}
        return self._bc[ck]

    # --- generic linear contrasts of per-topic S, averaged over common topics ----------------
    def contrast(self, terms: Sequence[tuple[float, str, str]], topics: Iterable[str] | None = None, *, test: bool = False, level: float = LEVEL) -> Interval | None:
        """Topic average of ``sum(coef * S_t(subject, target))`` over the topics all terms share.

        ``test``: attach the two-sided p-value of the null value 0 (for differences)."""
        series = [(c, self._series(s, t)) for c, s, t in terms]
        if not series or any(not ser for _, ser in series):
            return None
        raw = [self._series(s, t, raw=True) for _, s, t in terms]
        common = set.intersection(*(set(ser) for _, ser in series))
        if topics is not None:
            common &= set(topics)
        use = [t for t in self.topics if t in common]
        if not use:
            return None
        points = np.array([sum(c * ser[t][0] for c, ser in series) for t in use])
        plugin = float(np.mean([sum(c * r[t][0] for (c, _), r in zip(series, raw, strict=True)) for t in use]))
        reps = np.mean([sum(c * ser[t][1] for c, ser in series) for t in use], axis=0)
        est = float(points.mean())
        if self.interval == "basic":
            reps = 2.0 * est - reps
        lo, hi = percentile_interval(reps, level)
        p = inversion_p_value(reps) if test else None
        return Interval(est, lo, hi, len(use), float(points.std()), p, plugin, 2.0 / (1.0 + reps.size))

    def alignment(self, subject: str, target: str) -> Interval | None:
        """Topic-averaged S (paper eq. 1) with its interval."""
        return self.contrast([(1.0, subject, target)])

    def per_topic(self, subject: str, target: str) -> dict[str, Interval]:
        ser = self._series(subject, target)
        out = {}
        for t in self.topics:
            if t in ser:
                iv = self.contrast([(1.0, subject, target)], [t])
                if iv is not None:
                    out[t] = iv
        return out

    def _baseline_terms(self, group_subject: str) -> list[tuple[float, str, str]]:
        others = [h for h in self.humans if h != group_subject and self.has(group_subject, h)]
        return [(1.0 / len(others), group_subject, h) for h in others] if others else []

    def baseline(self, group_subject: str, topics: Iterable[str] | None = None) -> Interval | None:
        """The human baseline of a group: S with the other group (mean over the other groups if more)."""
        terms = self._baseline_terms(group_subject)
        return self.contrast(terms, topics) if terms else None

    def vs_baseline(self, subject: str, group_subject: str) -> Interval | None:
        """S(subject, group) minus the group's human baseline, on the topics both have."""
        terms = self._baseline_terms(group_subject)
        if not terms:
            return None
        return self.contrast([(1.0, subject, group_subject)] + [(-c, s, t) for c, s, t in terms], test=True)

    def bias(self, subject: str, a: str, b: str) -> Interval | None:
        """Topic average of S(subject, a) - S(subject, b); p-value of the null "equidistant" (bias 0).

        Both S carry the model's and each group's sampling variation (all resampled), and each is
        bias-corrected for its own sample sizes, so a larger group does not look closer."""
        return self.contrast([(1.0, subject, a), (-1.0, subject, b)], test=True)

    def steering(self, subject: str, target: str) -> Interval | None:
        """S of a steered mode minus S of the same model's default mode, with the same target."""
        parts = split_model_subject(subject)
        if parts is None or parts[1] == "default":
            return None
        default = schema.model_subject(parts[0], "default")
        return self.contrast([(1.0, subject, target), (-1.0, default, target)], test=True)

    def mode_contrast(self, model_id: str, target: str, first: str = "liberal", second: str = "conservative", level: float = LEVEL) -> Interval | None:
        """S(first-steered, target) - S(second-steered, target): does the model tell the two apart?"""
        return self.contrast([(1.0, schema.model_subject(model_id, first), target), (-1.0, schema.model_subject(model_id, second), target)], test=True, level=level)

    def bias_change(self, subject: str, a: str, b: str) -> Interval | None:
        """Bias of a steered mode minus the bias of the default mode."""
        parts = split_model_subject(subject)
        if parts is None or parts[1] == "default":
            return None
        default = schema.model_subject(parts[0], "default")
        return self.contrast([(1.0, subject, a), (-1.0, subject, b), (-1.0, default, a), (1.0, default, b)], test=True)

    def human_pairs(self) -> list[tuple[str, str]]:
        return [(a, b) for a, b in itertools.combinations(self.humans, 2) if self.has(a, b)]

    # --- precision against n -----------------------------------------------------------------
    def precision(self) -> list[dict]:
        """Interval widths a run with ``n`` generations per topic would give (per model subject)."""
        rows = []
        for (subject, target, n), by_topic in sorted(self.curve_reps.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
            use = [t for t in self.topics if t in by_topic]
            if not use:
                continue
            stacked = np.stack([by_topic[t][1] for t in use])
            q = np.percentile(stacked, [2.5, 97.5], axis=1)
            lo, hi = percentile_interval(stacked.mean(axis=0))
            rows.append(
                {
                    "subject": subject,
                    "target": target,
                    "n": n,
                    "n_used_mean": float(np.mean([by_topic[t][0] for t in use])),
                    "n_topics": len(use),
                    "topic_width_median": float(np.median(q[1] - q[0])),
                    "average_width": float(hi - lo),
                }
            )
        return rows

    def precision_summary(self) -> list[dict]:
        """Median over model subjects of the widths at each n: alignment (per topic, averaged) and bias."""
        rows = self.precision()
        out = []
        for n in self.n_grid:
            align = [r for r in rows if r["n"] == n and "|" not in r["target"]]
            bias = [r for r in rows if r["n"] == n and "|" in r["target"]]
            if not align:
                continue
            out.append(
                {
                    "n": n,
                    "n_used_mean": float(np.mean([r["n_used_mean"] for r in align])),
                    "topic_width_median": float(np.median([r["topic_width_median"] for r in align])),
                    "average_width_median": float(np.median([r["average_width"] for r in align])),
                    "bias_width_median": float(np.median([r["average_width"] for r in bias])) if bias else float("nan"),
                }
            )
        return out


# ---------------------------------------------------------------------------------------------
# The analysis
# ---------------------------------------------------------------------------------------------

Cells = Mapping[tuple[str, str], Mapping[str, np.ndarray]]  # (topic, subject) -> dimension (or CLUSTER) -> array


def analyse(
    cells: Cells,
    groups: Sequence[str],
    *,
    dimensions: Sequence[str] | None = None,
    topics: Sequence[str] | None = None,
    mode: str = "mean",
    tau: float | np.ndarray | Mapping[str, float | np.ndarray] = 0.5,
    draws: int = 1000,
    seed: int = 0,
    n_grid: Sequence[int] | None = DEFAULT_N_GRID,
    curve_draws: int | None = None,
    exact_max: int = 20_000,
    key: str = "",
    interval: str = DEFAULT_INTERVAL,
) -> dict[str, DimensionStats]:
    """Clustered bootstrap and precision curves of one dataset, per dimension.

    ``cells`` maps (topic, subject) to {dimension: raw ``(n, n_labels)`` scores}, plus optionally
    ``CLUSTER``: the ``(n,)`` cluster (user) ids of the rows; subjects are ``human:<group>`` and
    ``model:<id>:<mode>``. The pairs are the reduce's: every pair of groups (in ``groups`` order)
    and every model subject with every group. ``topics`` orders and restricts the topics (default:
    sorted). ``tau``: the threshold-mode cut (one value, per-label values, or a mapping dimension ->
    either). ``key`` (e.g. the dataset name) enters the seeds. ``interval``: ``bc`` (default,
    two-stage bias-corrected, see the module doc), ``bc1`` (stage 1 only), ``percentile`` or ``basic``.
    """
    _check(interval, mode, draws)
    all_topics = sorted({t for t, _ in cells})
    topic_list = [t for t in topics if t in set(all_topics)] if topics is not None else all_topics
    found = {d for v in cells.values() for d in v if d != CLUSTER}
    dims = list(dimensions) if dimensions is not None else sorted(found, key=lambda d: list(DIMENSIONS).index(d) if d in DIMENSIONS else 99)
    subjects_all = sorted({s for _, s in cells})
    aggs: dict[tuple[str, str], Agg] = {}
    model_feats: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for d in dims:
        for s in subjects_all:
            parts = []
            for t in topic_list:
                cell = cells.get((t, s))
                if cell is None or d not in cell:
                    continue
                raw = np.asarray(cell[d], dtype=np.float64)
                if raw.ndim != 2:
                    raise ValueError(f"scores of {s!r} on topic {t!r} ({d}) must be a 2-D (texts x labels) matrix")
                ok = ~np.isnan(raw).any(axis=1)
                ids = cell.get(CLUSTER)
                cut = tau.get(d, 0.5) if isinstance(tau, Mapping) else tau
                parts.append((t, _features_of(raw[ok], mode, cut), None if ids is None else np.asarray(ids)[ok]))
            parts = [p for p in parts if len(p[1])]
            if not parts:
                continue
            if any(p[2] is None for p in parts):  # ids for some topics only: treat every text as its own cluster
                parts = [(t, f, None) for t, f, _ in parts]
            aggs[(d, s)] = aggregate(parts)
            if split_model_subject(s):
                model_feats[(d, s)] = {t: f for t, f, _ in parts}
    return analyse_aggregated(aggs, groups, topics=topic_list, dimensions=dims, mode=mode, tau=tau, draws=draws, seed=seed, n_grid=n_grid,
                              curve_draws=curve_draws, exact_max=exact_max, key=key, interval=interval, model_feats=model_feats)


def _check(interval: str, mode: str, draws: int) -> None:
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; expected one of {INTERVALS}")
    if mode not in MODES:
        raise ValueError(f"unknown distribution mode {mode!r}; expected one of {MODES}")
    if draws < 2:
        raise ValueError("draws must be at least 2")


def analyse_aggregated(
    aggs: Mapping[tuple[str, str], Agg],
    groups: Sequence[str],
    *,
    topics: Sequence[str],
    dimensions: Sequence[str],
    mode: str = "mean",
    tau: float | np.ndarray | Mapping[str, float | np.ndarray] = 0.5,
    draws: int = 1000,
    seed: int = 0,
    n_grid: Sequence[int] | None = None,
    curve_draws: int | None = None,
    exact_max: int = 20_000,
    key: str = "",
    interval: str = DEFAULT_INTERVAL,
    model_feats: Mapping[tuple[str, str], Mapping[str, np.ndarray]] | None = None,
) -> dict[str, DimensionStats]:
    """:func:`analyse` from texts already summed by (cluster, topic): ``aggs[(dimension, subject)]``.

    The simulations of :mod:`affalign.calibration` enter here (they generate cluster sums
    directly); :func:`analyse` aggregates per-text scores and calls this. ``model_feats`` (per-text
    features of model subjects by topic) feeds the precision curves; without it there are none."""
    _check(interval, mode, draws)
    curve_draws = min(draws, 200) if curve_draws is None else int(curve_draws)
    model_feats = model_feats or {}
    subjects_all = sorted({s for _, s in aggs})
    humans = [human_subject(g) for g in groups if human_subject(g) in subjects_all]
    models = [s for s in subjects_all if split_model_subject(s)]
    subjects = humans + models
    out = {d: DimensionStats(d, list(groups), list(topics), subjects, mode, tau, draws, seed, interval=interval) for d in dimensions}
    model_n = [len(f) for (d, s), by_t in model_feats.items() for t, f in by_t.items() if s in models and t in set(topics)]
    grid: list[int] = []
    if n_grid and model_n:
        top = max(model_n)
        grid = sorted({min(int(n), top) for n in n_grid if n > 0})
        if len(grid) < 3:  # fewer generations than the grid: show fractions of what exists
            grid = sorted(set(grid) | {max(2, top // 4), max(2, top // 2), top})
    pairs = list(itertools.combinations(humans, 2)) + [(m, h) for m in models for h in humans]
    with _blas_single_thread():
        for d in dimensions:
            st = out[d]
            st.n_grid = grid
            boot: dict[str, dict[str, np.ndarray]] = {}
            for s in subjects:
                agg = aggs.get((d, s))
                if agg is None:
                    continue
                means = resample_agg(agg, draws, _rng(seed, key, s, d, "boot"), exact_max)
                boot[s] = {t: normalise_rows(m) for t, m in zip(agg.topics, means, strict=True)}
                for i, t in enumerate(agg.topics):
                    st.n_texts[(t, s)] = agg.n_texts(i)
                    st.n_clusters[(t, s)] = len(agg.codes[i])
                    st.distributions[(t, s)] = normalise_rows(agg.mean(i))
                if s in humans and any(agg.n_texts(i) > len(agg.codes[i]) for i in range(len(agg.topics))):
                    st.clustered = True
            for s, t2 in pairs:
                if s not in boot or t2 not in boot:
                    continue
                for topic in topics:
                    if topic in boot[s] and topic in boot[t2]:
                        point = float(js_alignment(st.distributions[(topic, s)], st.distributions[(topic, t2)]))
                        st.reps.setdefault((s, t2), {})[topic] = (point, js_alignment(boot[s][topic], boot[t2][topic]))
            _curves(st, d, boot, humans, models, grid, model_feats, seed=seed, key=key, curve_draws=curve_draws, exact_max=exact_max)
    return out


def _curves(st: DimensionStats, d: str, boot: Mapping[str, Mapping[str, np.ndarray]], humans: list[str], models: list[str], grid: list[int],
            model_feats: Mapping[tuple[str, str], Mapping[str, np.ndarray]], *, seed: int, key: str, curve_draws: int, exact_max: int) -> None:
    """Precision against n: subsample each model subject's texts per topic, keep the humans whole."""
    for m in models:
        by_topic = model_feats.get((d, m))
        if not by_topic or not grid:
            continue
        orders = {t: _rng(seed, key, t, m, "subsample", d).permutation(len(f)) for t, f in by_topic.items()}
        for n in grid:
            parts = [(t, f[orders[t][: min(n, len(f))]], None) for t, f in by_topic.items() if t in st.topics]
            if not parts:
                continue
            agg = aggregate(parts)
            means = resample_agg(agg, curve_draws, _rng(seed, key, m, "curve", n, d), exact_max)
            for i, t in enumerate(agg.topics):
                sub = normalise_rows(means[i])
                hs = [h for h in humans if h in boot and t in boot[h]]
                s_h = {h: js_alignment(sub, boot[h][t][:curve_draws]) for h in hs}
                for h in hs:
                    st.curve_reps.setdefault((m, h, n), {})[t] = (agg.n_texts(i), s_h[h])
                for a, b in itertools.combinations(hs, 2):
                    st.curve_reps.setdefault((m, f"{a}|{b}", n), {})[t] = (agg.n_texts(i), s_h[a] - s_h[b])
