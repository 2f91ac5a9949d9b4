"""Uncertainty of the alignment numbers: bootstrap intervals, permutation tests, precision against n.

Pure numpy (no Ray, no matplotlib). Everything starts from per-text score matrices, one per
(topic, subject): ``(n_texts, n_labels)`` label probabilities of one dimension, as stored in a run's
``scores/`` tables.

**Distributions.** A topic's distribution is ``normalise(mean over texts of f(x))`` where ``f`` is
the identity in ``mean`` mode and ``x >= tau`` in ``threshold`` mode (:mod:`affalign.metrics`), so
one resample of a subject's texts is one weighted mean of per-text feature vectors.

**Bootstrap (stratified by topic).** Each draw resamples, independently, every subject's texts of
every topic with replacement (multinomial counts, ``(draws, n)``, vectorised), recomputes every
distribution and every ``S = 1 - JSD`` (Jensen-Shannon distance, base 2). One draw holds the same
resample of a subject everywhere it appears, so differences (bias, steering, distance to the
baseline) and topic averages (paper eq. 1) are bootstrapped jointly: a topic-averaged statistic's
replicate is the average of its per-topic replicates within the same draw. Intervals are 95%
percentile intervals of the replicates. When a cell has more than ``exact_max`` texts (large human
corpora) the resampled mean is drawn from its normal limit ``N(mean, cov / n)`` instead (the
bootstrap distribution of a mean of that many texts is normal to high accuracy); the nonlinear map
to ``S`` is still applied draw by draw. A text that belongs to several topics is resampled
independently in each (topics are strata, as in eq. 1).

**Permutation test of a bias.** The bias of a model subject ``m`` between groups A and B is the
topic average of ``S(m, A) - S(m, B)``. Null hypothesis: within every topic the texts of A and B
are exchangeable (they come from one affect distribution), so, conditionally on the model's
generations, which group the model is closer to is chance. Each permutation shuffles the A/B labels
of the pooled human texts within every topic (group sizes kept), recomputes both groups'
distributions and the topic-averaged bias against the model's (fixed) distributions. The two-sided
p-value is ``(1 + #{|bias_perm| >= |bias_obs|}) / (1 + permutations)``. Above ``exact_max`` pooled
texts the permuted group mean is drawn from its normal limit (sampling without replacement, with the
finite-population correction).

**Precision against n.** Each model subject's texts of a topic are subsampled (without
replacement) to ``n`` in ``n_grid`` (capped at what exists; with fewer than three grid values
left, a quarter and a half of the largest count are added), and the bootstrap is rerun with
``curve_draws`` draws, giving the interval width of the per-topic and topic-averaged alignment
(and of the bias) a run with ``n_responses = n`` would have; the human side keeps all its texts.

**Caveat: the plug-in S is biased downward.** Sampling noise only ever adds Jensen-Shannon
distance, so S from finite samples underestimates S of the populations, most for nearly identical
distributions (two identical populations give S < 1 in samples), and bootstrap replicates, which
add noise on both sides, lie lower still. A percentile interval of a near-1 S can therefore sit
below its estimate (:meth:`DimensionStats.resampling_shift` measures the shift); ``interval="basic"``
reflects the percentiles about the estimate (a first-order bias correction). Differences between
similar quantities (bias, steering) are much less affected.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from affalign.schema import DIMENSIONS, human_subject

MODES = ("mean", "threshold")
DEFAULT_N_GRID: tuple[int, ...] = (250, 500, 1000, 2000)
LEVEL = 0.95
_LN2 = math.log(2.0)
_CHUNK_ELEMS = 1 << 17  # resample-index elements per chunk: cache-sized buffers reused across chunks

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


def js_alignment(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``1 - JS distance`` (base 2) along the last axis; broadcasts; rows must already sum to 1."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kp = np.where(p > 0, p * np.log(p / m), 0.0)
        kq = np.where(q > 0, q * np.log(q / m), 0.0)
    div = 0.5 * (kp.sum(axis=-1) + kq.sum(axis=-1)) / _LN2
    return 1.0 - np.sqrt(np.clip(div, 0.0, None))


def resample_means(feats: np.ndarray, draws: int, rng: np.random.Generator, exact_max: int = 20_000) -> np.ndarray:
    """``(draws, k)`` means of bootstrap resamples of the rows of ``feats`` (``(n, k)``).

    Exact (multinomial counts from ``(draws, n)`` resample indices) up to ``exact_max`` rows; above
    it, draws from the normal limit ``N(mean, cov / n)`` of the resampled mean.
    """
    f = np.asarray(feats, dtype=np.float64)
    n, k = f.shape
    if n == 0:
        raise ValueError("cannot resample an empty cell")
    if n > exact_max:
        mu = f.mean(axis=0)
        cov = np.atleast_2d(np.cov(f, rowvar=False, ddof=0)) / n
        return mu + rng.standard_normal((draws, k)) @ _sqrt_psd(cov).T
    f32 = f.astype(np.float32)
    out = np.empty((draws, k), dtype=np.float64)
    rows = max(1, min(draws, _CHUNK_ELEMS // n))
    offsets = (np.arange(rows, dtype=np.intp) * n)[:, None]
    flat = np.empty((rows, n), dtype=np.intp)
    small = np.int16 if n <= np.iinfo(np.int16).max else np.int32
    for start in range(0, draws, rows):
        b = min(rows, draws - start)
        # (b, n) resample indices -> per-draw multinomial counts of every text -> weighted sums
        np.add(rng.integers(0, n, size=(b, n), dtype=small), offsets[:b], out=flat[:b])
        counts = np.bincount(flat[:b].ravel(), minlength=b * n).reshape(b, n)
        out[start : start + b] = counts.astype(np.float32) @ f32
    return out / n


def permuted_means(pool: np.ndarray, n_a: int, perms: int, rng: np.random.Generator, exact_max: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Means of the two parts (``n_a`` rows and the rest) of ``perms`` random relabellings of ``pool``."""
    f = np.asarray(pool, dtype=np.float64)
    n, k = f.shape
    n_b = n - n_a
    if n_a <= 0 or n_b <= 0:
        raise ValueError("both parts of a permutation need at least one text")
    total = f.sum(axis=0)
    if n > exact_max:
        mu = total / n
        cov = np.atleast_2d(np.cov(f, rowvar=False, ddof=1)) * (1.0 / n_a - 1.0 / n)
        mean_a = mu + rng.standard_normal((perms, k)) @ _sqrt_psd(cov).T
    else:
        f32 = f.astype(np.float32)
        labels = np.zeros(n, dtype=np.float32)
        labels[:n_a] = 1.0
        mean_a = np.empty((perms, k), dtype=np.float64)
        rows = max(1, min(perms, _CHUNK_ELEMS // n))
        for start in range(0, perms, rows):
            b = min(rows, perms - start)
            mask = rng.permuted(np.broadcast_to(labels, (b, n)), axis=1)
            mean_a[start : start + b] = (mask @ f32) / n_a
    mean_b = (total[None, :] - mean_a * n_a) / n_b
    return mean_a, mean_b


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


def _rng(seed: int, *key: object) -> np.random.Generator:
    """A generator keyed by content, so one cell's draws do not depend on which other cells exist."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(k).encode("utf-8")) for k in key]
    return np.random.default_rng(np.random.SeedSequence(words))


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% percentile bootstrap interval (and a p-value where tested)."""

    estimate: float
    lo: float
    hi: float
    n_topics: int = 1
    std: float = 0.0  # spread of the per-topic point values (the paper's error bars)
    p_value: float | None = None

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
        return {"estimate": self.estimate, "lo": self.lo, "hi": self.hi, "n_topics": self.n_topics, "std": self.std, "p_value": self.p_value}


def split_model_subject(subject: str) -> tuple[str, str] | None:
    """``model:<id>:<mode>`` -> (id, mode); None for any other subject."""
    if not subject.startswith("model:"):
        return None
    model_id, _, mode = subject[len("model:") :].rpartition(":")
    return (model_id, mode) if model_id else None


@dataclass
class DimensionStats:
    """Bootstrap replicates and tests of one (dataset, dimension); topic averages are computed on demand."""

    dimension: str
    groups: list[str]
    topics: list[str]
    subjects: list[str]
    mode: str
    tau: float
    draws: int
    permutations: int
    seed: int
    n_texts: dict[tuple[str, str], int] = field(default_factory=dict)  # (topic, subject) -> texts used
    distributions: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (topic, subject) -> point
    # (subject, target) -> topic -> (point S, (draws,) replicates)
    reps: dict[Key, dict[str, tuple[float, np.ndarray]]] = field(default_factory=dict)
    # (model subject, "human:A|human:B") -> topic -> (permutations,) per-topic bias under the null
    perm: dict[Key, dict[str, np.ndarray]] = field(default_factory=dict)
    # (model subject, target, n) -> topic -> (n used, (curve_draws,) replicates)
    curve_reps: dict[tuple[str, str, int], dict[str, tuple[int, np.ndarray]]] = field(default_factory=dict)
    n_grid: list[int] = field(default_factory=list)
    interval: str = "percentile"  # or "basic" (reflected about the estimate: corrects the plug-in's bias)

    def _ci(self, point: float, reps: np.ndarray) -> tuple[float, float]:
        lo, hi = percentile_interval(reps)
        if self.interval == "basic":
            return 2.0 * point - hi, 2.0 * point - lo
        return lo, hi

    def resampling_shift(self, subject: str, target: str) -> float | None:
        """Mean bootstrap replicate minus the estimate of the topic-averaged S (the plug-in's bias, roughly)."""
        ser = self._series(subject, target)
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
        return bool(self._series(subject, target))

    def _series(self, subject: str, target: str) -> dict[str, tuple[float, np.ndarray]]:
        got = self.reps.get((subject, target))
        if got is None and subject.startswith("human:") and target.startswith("human:"):
            got = self.reps.get((target, subject))
        return got or {}

    # --- generic linear contrasts of per-topic S, averaged over common topics ----------------
    def contrast(self, terms: Sequence[tuple[float, str, str]], topics: Iterable[str] | None = None) -> Interval | None:
        """Topic average of ``sum(coef * S_t(subject, target))`` over the topics all terms share."""
        series = [(c, self._series(s, t)) for c, s, t in terms]
        if not series or any(not ser for _, ser in series):
            return None
        common = set.intersection(*(set(ser) for _, ser in series))
        if topics is not None:
            common &= set(topics)
        use = [t for t in self.topics if t in common]
        if not use:
            return None
        points = np.array([sum(c * ser[t][0] for c, ser in series) for t in use])
        reps = np.mean([sum(c * ser[t][1] for c, ser in series) for t in use], axis=0)
        lo, hi = self._ci(float(points.mean()), reps)
        return Interval(float(points.mean()), lo, hi, len(use), float(points.std()))

    def alignment(self, subject: str, target: str) -> Interval | None:
        """Topic-averaged S (paper eq. 1) with its interval."""
        return self.contrast([(1.0, subject, target)])

    def per_topic(self, subject: str, target: str) -> dict[str, Interval]:
        out = {}
        for t, (point, reps) in self._series(subject, target).items():
            lo, hi = self._ci(point, reps)
            out[t] = Interval(float(point), lo, hi, 1, 0.0)
        return {t: out[t] for t in self.topics if t in out}

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
        return self.contrast([(1.0, subject, group_subject)] + [(-c, s, t) for c, s, t in terms])

    def bias(self, subject: str, a: str, b: str) -> Interval | None:
        """Topic average of S(subject, a) - S(subject, b), with the permutation p-value if computed."""
        iv = self.contrast([(1.0, subject, a), (-1.0, subject, b)])
        if iv is None:
            return None
        perm = self.perm.get((subject, f"{a}|{b}"))
        if perm:
            common = set(self._series(subject, a)) & set(self._series(subject, b)) & set(perm)
            use = [t for t in self.topics if t in common]
            if use:
                null = np.mean([perm[t] for t in use], axis=0)
                obs = np.mean([self._series(subject, a)[t][0] - self._series(subject, b)[t][0] for t in use])
                p = (1.0 + np.count_nonzero(np.abs(null) >= abs(obs) - 1e-12)) / (1.0 + null.size)
                iv = Interval(iv.estimate, iv.lo, iv.hi, iv.n_topics, iv.std, float(p))
        return iv

    def steering(self, subject: str, target: str) -> Interval | None:
        """S of a steered mode minus S of the same model's default mode, with the same target."""
        parts = split_model_subject(subject)
        if parts is None or parts[1] == "default":
            return None
        default = f"model:{parts[0]}:default"
        return self.contrast([(1.0, subject, target), (-1.0, default, target)])

    def mode_contrast(self, model_id: str, target: str, first: str = "liberal", second: str = "conservative") -> Interval | None:
        """S(first-steered, target) - S(second-steered, target): does the model tell the two apart?"""
        return self.contrast([(1.0, f"model:{model_id}:{first}", target), (-1.0, f"model:{model_id}:{second}", target)])

    def bias_change(self, subject: str, a: str, b: str) -> Interval | None:
        """Bias of a steered mode minus the bias of the default mode."""
        parts = split_model_subject(subject)
        if parts is None or parts[1] == "default":
            return None
        default = f"model:{parts[0]}:default"
        return self.contrast([(1.0, subject, a), (-1.0, subject, b), (-1.0, default, a), (1.0, default, b)])

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

Cells = Mapping[tuple[str, str], Mapping[str, np.ndarray]]  # (topic, subject) -> dimension -> raw scores


def analyse(
    cells: Cells,
    groups: Sequence[str],
    *,
    dimensions: Sequence[str] | None = None,
    topics: Sequence[str] | None = None,
    mode: str = "mean",
    tau: float = 0.5,
    draws: int = 1000,
    permutations: int | None = None,
    seed: int = 0,
    n_grid: Sequence[int] | None = DEFAULT_N_GRID,
    curve_draws: int | None = None,
    exact_max: int = 20_000,
    key: str = "",
    interval: str = "percentile",
) -> dict[str, DimensionStats]:
    """Bootstrap, permutation tests and precision curves of one dataset, per dimension.

    ``cells`` maps (topic, subject) to {dimension: raw ``(n, n_labels)`` scores}; subjects are
    ``human:<group>`` and ``model:<id>:<mode>``. The pairs are the reduce's: every pair of groups (in
    ``groups`` order) and every model subject with every group. ``topics`` orders and restricts the
    topics (default: sorted). ``key`` (e.g. the dataset name) enters the seeds. ``interval`` is
    ``percentile`` (default) or ``basic`` (``2 * estimate - percentiles``: first-order correction of
    the plug-in's downward bias near identical distributions, see :meth:`DimensionStats.resampling_shift`).
    """
    if interval not in ("percentile", "basic"):
        raise ValueError(f"unknown interval {interval!r}; expected percentile or basic")
    if mode not in MODES:
        raise ValueError(f"unknown distribution mode {mode!r}; expected one of {MODES}")
    if draws < 2:
        raise ValueError("draws must be at least 2")
    permutations = draws if permutations is None else int(permutations)
    curve_draws = min(draws, 200) if curve_draws is None else int(curve_draws)
    all_topics = sorted({t for t, _ in cells})
    topic_list = [t for t in topics if t in set(all_topics)] if topics is not None else all_topics
    dims = list(dimensions) if dimensions is not None else sorted({d for v in cells.values() for d in v}, key=lambda d: list(DIMENSIONS).index(d) if d in DIMENSIONS else 99)
    subjects_all = sorted({s for _, s in cells})
    humans = [human_subject(g) for g in groups if human_subject(g) in subjects_all]
    models = [s for s in subjects_all if split_model_subject(s)]
    subjects = humans + models
    out = {d: DimensionStats(d, list(groups), topic_list, subjects, mode, tau, draws, permutations, seed, interval=interval) for d in dims}

    # the precision grid: n values capped at the largest model cell
    model_n = [len(features(m, mode, tau)) for (t, s), v in cells.items() if s in models and t in topic_list for m in v.values()]
    grid: list[int] = []
    if n_grid and model_n:
        top = max(model_n)
        grid = sorted({min(int(n), top) for n in n_grid if n > 0})
        if len(grid) < 3:  # fewer generations than the grid: show fractions of what exists
            grid = sorted(set(grid) | {max(2, top // 4), max(2, top // 2), top})
    for st in out.values():
        st.n_grid = grid

    pairs = list(itertools.combinations(humans, 2)) + [(m, h) for m in models for h in humans]
    with _blas_single_thread():
        for topic in topic_list:
            _analyse_topic(topic, cells, out, subjects, humans, models, pairs, dims, grid, mode=mode, tau=tau, draws=draws, permutations=permutations, seed=seed, curve_draws=curve_draws, exact_max=exact_max, key=key)
    return out


def _analyse_topic(
    topic: str,
    cells: Cells,
    out: dict[str, DimensionStats],
    subjects: list[str],
    humans: list[str],
    models: list[str],
    pairs: list[tuple[str, str]],
    dims: list[str],
    grid: list[int],
    *,
    mode: str,
    tau: float,
    draws: int,
    permutations: int,
    seed: int,
    curve_draws: int,
    exact_max: int,
    key: str,
) -> None:
    """Bootstrap, permutations and precision curve of one topic, into ``out``."""
    # per subject: blocks of features resampled together (all dimensions at once when their
    # rows are the same texts), each with its dimensions' column slices
    blocks: dict[str, list[tuple[dict[str, slice], np.ndarray]]] = {}
    for s in subjects:
        if (topic, s) in cells:
            b = _blocks(cells[(topic, s)], dims, mode, tau)
            if b:
                blocks[s] = b
    feats = {(d, s): f[:, sl] for s, bl in blocks.items() for sls, f in bl for d, sl in sls.items()}
    boot: dict[tuple[str, str], np.ndarray] = {}
    for s, bl in blocks.items():
        for sls, f in bl:
            means = resample_means(f, draws, _rng(seed, key, topic, s, "boot", *sls), exact_max)
            for d, sl in sls.items():
                boot[(d, s)] = normalise_rows(means[:, sl])
    for (d, s), f in feats.items():
        out[d].n_texts[(topic, s)] = len(f)
        out[d].distributions[(topic, s)] = normalise_rows(f.mean(axis=0))
    for d in dims:
        st = out[d]
        for s, t in pairs:
            if (d, s) in boot and (d, t) in boot:
                point = float(js_alignment(st.distributions[(topic, s)], st.distributions[(topic, t)]))
                st.reps.setdefault((s, t), {})[topic] = (point, js_alignment(boot[(d, s)], boot[(d, t)]))
    # permutation null of each pair of groups, applied to every model subject's bias
    for a, b in itertools.combinations(humans, 2):
        if a not in blocks or b not in blocks or permutations < 1:
            continue
        for sls, pool, n_a in _pools(blocks[a], blocks[b]):
            ms = [m for m in models if any((d, m) in feats for d in sls)]
            if not ms:
                continue
            ma, mb = permuted_means(pool, n_a, permutations, _rng(seed, key, topic, a, b, "perm", *sls), exact_max)
            for d, sl in sls.items():
                pa_, pb_ = normalise_rows(ma[:, sl]), normalise_rows(mb[:, sl])
                for m in ms:
                    if (d, m) in feats:
                        pm = out[d].distributions[(topic, m)]
                        out[d].perm.setdefault((m, f"{a}|{b}"), {})[topic] = js_alignment(pm, pa_) - js_alignment(pm, pb_)
    # precision against n: subsample each model subject, keep the humans whole
    for m in models:
        if m not in blocks or not grid:
            continue
        for sls, f in blocks[m]:
            order = _rng(seed, key, topic, m, "subsample", *sls).permutation(len(f))
            for n in grid:
                use = min(n, len(f))
                means = resample_means(f[order[:use]], curve_draws, _rng(seed, key, topic, m, "curve", n, *sls), exact_max)
                for d, sl in sls.items():
                    sub = normalise_rows(means[:, sl])
                    hs = [h for h in humans if (d, h) in boot]
                    s_h = {h: js_alignment(sub, boot[(d, h)][:curve_draws]) for h in hs}
                    for h in hs:
                        out[d].curve_reps.setdefault((m, h, n), {})[topic] = (use, s_h[h])
                    for a, b in itertools.combinations(hs, 2):
                        out[d].curve_reps.setdefault((m, f"{a}|{b}", n), {})[topic] = (use, s_h[a] - s_h[b])


def _blocks(cell: Mapping[str, np.ndarray], dims: Sequence[str], mode: str, tau: float) -> list[tuple[dict[str, slice], np.ndarray]]:
    """Feature blocks of one cell: one joint block when every dimension has the same rows and no
    NaN (the usual case), else one block per dimension (NaN rows dropped per dimension)."""
    raw = {d: np.asarray(cell[d], dtype=np.float64) for d in dims if d in cell}
    if not raw:
        return []
    if len({m.shape[0] for m in raw.values()}) == 1 and not any(np.isnan(m).any() for m in raw.values()):
        f = {d: features(m, mode, tau) for d, m in raw.items()}
        if not len(next(iter(f.values()))):
            return []
        cuts = np.cumsum([0] + [m.shape[1] for m in f.values()])
        return [({d: slice(int(cuts[i]), int(cuts[i + 1])) for i, d in enumerate(f)}, np.hstack(list(f.values())))]
    out = []
    for d, m in raw.items():
        f = features(m, mode, tau)
        if len(f):
            out.append(({d: slice(0, f.shape[1])}, f))
    return out


def _pools(a: list[tuple[dict[str, slice], np.ndarray]], b: list[tuple[dict[str, slice], np.ndarray]]) -> list[tuple[dict[str, slice], np.ndarray, int]]:
    """Pooled (A then B) feature blocks for the permutation test: joint when both sides are joint."""
    if len(a) == 1 and len(b) == 1 and a[0][0] == b[0][0]:
        return [(a[0][0], np.vstack([a[0][1], b[0][1]]), len(a[0][1]))]
    fa = {d: f[:, sl] for sls, f in a for d, sl in sls.items()}
    fb = {d: f[:, sl] for sls, f in b for d, sl in sls.items()}
    return [({d: slice(0, fa[d].shape[1])}, np.vstack([fa[d], fb[d]]), len(fa[d])) for d in fa if d in fb]
